//! The read-only endpoints on TCP (loopback by default), as aws-node's
//! metrics (61678) and introspection (61679) ports.

use super::socket::SocketError;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;

/// A TCP endpoint, bound and ready to serve.
pub(crate) struct TcpEndpoint {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl TcpEndpoint {
    /// Binds `address` (at start, so a port in use fails the start).
    pub(crate) async fn bind(
        address: SocketAddr,
        router: Router,
    ) -> Result<TcpEndpoint, SocketError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| SocketError::Io {
                context: format!(
                    "listening on {address} (set another address or \"off\" in [agent])"
                ),
                source,
            })?;
        Ok(TcpEndpoint { listener, router })
    }

    /// The bound address (the port, when 0 was asked for).
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes.
    pub(crate) async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let address = self.local_addr();
        if let Err(error) = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(?address, %error, "TCP endpoint stopped with an error");
        }
    }
}
