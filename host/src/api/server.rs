//! The accept loop: one task per connection, bounded connections, header
//! and request deadlines, graceful shutdown.

use super::backend::Backend;
use super::routes::{self, MetricsFn};
use super::socket::{SocketError, SocketFile};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// The API server's settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where to create the socket (mode 0600).
    pub socket: PathBuf,
    /// Longest time a request may take, reading its body included. Keep it
    /// below the plugin's `timeout-ms` (30 s by default) so the plugin gets
    /// the agent's "try again later" rather than a timeout of its own.
    pub request_timeout: Duration,
    /// Longest time a client may take to send its request head.
    pub header_timeout: Duration,
    /// Connections served at once; more are closed at once (the plugin
    /// reports "try again later").
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            socket: PathBuf::from(weft_cni::netconf::DEFAULT_SOCKET),
            request_timeout: Duration::from_secs(25),
            header_timeout: Duration::from_secs(5),
            max_connections: 256,
        }
    }
}

/// The agent API, bound and ready to serve.
pub struct ApiServer {
    socket: SocketFile,
    listener: UnixListener,
    router: axum::Router,
    config: ApiConfig,
}

impl ApiServer {
    /// Creates the socket (see [`SocketFile::bind`]). Must be called inside
    /// a tokio runtime.
    pub fn bind(
        config: ApiConfig,
        backend: Arc<dyn Backend>,
        metrics: MetricsFn,
    ) -> Result<ApiServer, SocketError> {
        let (listener, socket) = SocketFile::bind(&config.socket)?;
        let listener = listener
            .set_nonblocking(true)
            .and_then(|()| UnixListener::from_std(listener))
            .map_err(|source| {
                socket.remove();
                SocketError::Io {
                    context: format!("listening on {}", config.socket.display()),
                    source,
                }
            })?;
        let router = routes::router(backend, metrics, config.request_timeout);
        Ok(ApiServer {
            socket,
            listener,
            router,
            config,
        })
    }

    /// Serves until `shutdown` completes, then stops accepting, removes the
    /// socket, lets requests in flight finish (for at most the request
    /// timeout) and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        let ApiServer {
            socket,
            listener,
            router,
            config,
        } = self;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .keep_alive(false);
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let (stop_tx, stop_rx) = watch::channel(());
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // Usually EMFILE: back off instead of spinning.
                            tracing::warn!(error = %e, socket = %socket.path.display(), "API accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(limit = config.max_connections, "API connection limit reached; closing a new connection");
                        continue;
                    };
                    let connection = http.serve_connection(
                        TokioIo::new(stream),
                        TowerToHyperService::new(router.clone()),
                    );
                    let mut stop = stop_rx.clone();
                    connections.spawn(async move {
                        let _slot = slot;
                        let mut connection = std::pin::pin!(connection);
                        tokio::select! {
                            result = connection.as_mut() => {
                                if let Err(e) = result {
                                    tracing::debug!(error = %e, "API connection ended with an error");
                                }
                            }
                            _ = stop.changed() => {
                                connection.as_mut().graceful_shutdown();
                                let _ = connection.await;
                            }
                        }
                    });
                }
            }
        }
        drop(listener);
        socket.remove();
        drop(stop_tx);
        let drained = tokio::time::timeout(config.request_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("API requests still running at shutdown were abandoned");
            connections.abort_all();
        }
    }
}
