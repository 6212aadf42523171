//! A minimal HTTP/1.1 client for `weftd`'s unix socket: one connection, one
//! request, `Connection: close`, bounded response, and a deadline covering
//! the whole exchange. No async runtime: the plugin makes exactly one call.

use crate::api::{
    self, AddRequest, AddResponse, ApiError, CheckRequest, CheckResponse, DelRequest, DelResponse,
    GcRequest, GcResponse, StatusResponse,
};
use crate::boottime::BootInstant;
use crate::error::CniError;
use crate::plugin::Agent;
use crate::spool::{DelSpool, SpoolError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Largest response head (status line and headers) accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Talks to one `weftd` over its API socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client for the agent at `socket`; each call must finish within `timeout`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Client {
        Client {
            socket: socket.into(),
            timeout,
        }
    }

    /// Sends one request and decodes the answer: the body as `R` on 2xx,
    /// otherwise the agent's [`ApiError`], passed through unchanged.
    pub fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, CniError> {
        let deadline = Instant::now() + self.timeout;
        let request = encode_request(method, path, body)?;
        let mut stream = self.connect(deadline)?;
        set_timeout(&stream, deadline, UnixStream::set_write_timeout)
            .and_then(|()| stream.write_all(&request))
            .map_err(|e| self.io_error(&e))?;
        let response = self.read_response(&mut stream, deadline)?;
        if (200..300).contains(&response.status) {
            serde_json::from_slice(&response.body).map_err(|e| {
                self.protocol_error(format!(
                    "weftd's answer to {method} {path} cannot be decoded: {e}"
                ))
            })
        } else {
            Err(serde_json::from_slice::<ApiError>(&response.body).unwrap_or_else(|_| {
                self.protocol_error(format!(
                    "weftd answered {method} {path} with HTTP {} and a body that is not an error object: {}",
                    response.status,
                    String::from_utf8_lossy(&response.body[..response.body.len().min(200)])
                ))
            }))
        }
    }

    /// Connects before `deadline`. A plain connect blocks for as long as
    /// the agent's accept backlog is full (a stuck agent), so it runs on a
    /// helper thread that is abandoned when the deadline passes (the plugin
    /// exits right after).
    fn connect(&self, deadline: Instant) -> Result<UnixStream, CniError> {
        let (tx, rx) = mpsc::channel();
        let socket = self.socket.clone();
        thread::Builder::new()
            .name("weft-connect".into())
            .spawn(move || {
                let _ = tx.send(UnixStream::connect(socket));
            })
            .map_err(|e| self.io_error(&e))?;
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(connected) => connected.map_err(|e| self.connect_error(&e)),
            Err(_) => Err(self.io_error(&io::ErrorKind::TimedOut.into())),
        }
    }

    fn read_response(
        &self,
        stream: &mut UnixStream,
        deadline: Instant,
    ) -> Result<Response, CniError> {
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        let mut head: Option<Head> = None;
        loop {
            let complete = head.as_ref().is_some_and(|h| {
                h.content_length
                    .is_some_and(|len| buf.len() >= h.body_start + len)
            });
            if complete {
                break;
            }
            set_timeout(stream, deadline, UnixStream::set_read_timeout)
                .map_err(|e| self.io_error(&e))?;
            let n = match stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(&e)),
            };
            if n == 0 {
                match &head {
                    Some(h) if h.content_length.is_none() => break,
                    _ => {
                        return Err(CniError::try_again_later(
                            format!(
                                "weftd closed the connection on {} before answering completely",
                                self.socket.display()
                            ),
                            self.hint(),
                        ));
                    }
                }
            }
            buf.extend_from_slice(&chunk[..n]);
            if head.is_none() {
                head = parse_head(&buf).map_err(|m| self.protocol_error(m))?;
            }
            let limit = head
                .as_ref()
                .map_or(MAX_HEAD_BYTES, |h| h.body_start + api::MAX_BODY_BYTES);
            if buf.len() > limit {
                return Err(self.protocol_error(format!("weftd's answer exceeds {limit} bytes")));
            }
        }
        let head = head.ok_or_else(|| self.protocol_error("weftd sent no HTTP head".into()))?;
        let end = head
            .content_length
            .map_or(buf.len(), |len| head.body_start + len);
        Ok(Response {
            status: head.status,
            body: buf[head.body_start..end].to_vec(),
        })
    }

    fn hint(&self) -> String {
        format!(
            "check that weftd runs on this node (its DaemonSet pod, or `systemctl status weftd`) and answers: \
             curl --unix-socket {} http://weft{}",
            self.socket.display(),
            api::PATH_STATUS
        )
    }

    fn connect_error(&self, e: &io::Error) -> CniError {
        let path = self.socket.display();
        match e.kind() {
            io::ErrorKind::NotFound => CniError::try_again_later(
                format!("weftd's socket {path} does not exist (is weftd running?)"),
                self.hint(),
            ),
            io::ErrorKind::ConnectionRefused => CniError::try_again_later(
                format!("nothing listens on weftd's socket {path} (weftd stopped?)"),
                self.hint(),
            ),
            io::ErrorKind::PermissionDenied => CniError::io(
                format!("permission denied connecting to {path}"),
                "weft must run as root, as container runtimes run CNI plugins; the socket is mode 0600",
            ),
            _ => CniError::try_again_later(
                format!("cannot connect to weftd at {path}: {e}"),
                self.hint(),
            ),
        }
    }

    fn io_error(&self, e: &io::Error) -> CniError {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            CniError::try_again_later(
                format!(
                    "weftd did not answer on {} within {} ms",
                    self.socket.display(),
                    self.timeout.as_millis()
                ),
                format!(
                    "weftd may be overloaded or stuck: check its logs; raise \"timeout-ms\" in the network \
                     configuration if requests legitimately take longer. {}",
                    self.hint()
                ),
            )
        } else {
            CniError::try_again_later(
                format!("talking to weftd on {} failed: {e}", self.socket.display()),
                self.hint(),
            )
        }
    }

    fn protocol_error(&self, msg: String) -> CniError {
        CniError::agent_protocol(
            msg,
            "the weft plugin and weftd on this node are probably different versions: \
             install the plugin shipped with the running weftd image",
        )
    }
}

impl Agent for Client {
    fn add(&self, req: &AddRequest) -> Result<AddResponse, CniError> {
        self.call("POST", api::PATH_ADD, Some(req))
    }

    fn del(&self, req: &DelRequest) -> Result<DelResponse, CniError> {
        self.call("POST", api::PATH_DEL, Some(req))
    }

    fn spool_del(&self, req: &DelRequest) -> Result<(), CniError> {
        let spool = DelSpool::beside(&self.socket);
        BootInstant::now()
            .map_err(|e| SpoolError::Io {
                path: spool.dir().to_owned(),
                source: e,
            })
            .and_then(|now| spool.record(req, now))
            .map(drop)
            .map_err(|e| {
                CniError::io(
                    e.to_string(),
                    "the DEL spool is a 0700 directory of root beside weftd's socket",
                )
            })
    }

    fn check(&self, req: &CheckRequest) -> Result<CheckResponse, CniError> {
        self.call("POST", api::PATH_CHECK, Some(req))
    }

    fn gc(&self, req: &GcRequest) -> Result<GcResponse, CniError> {
        self.call("POST", api::PATH_GC, Some(req))
    }

    fn status(&self) -> Result<StatusResponse, CniError> {
        self.call::<(), _>("GET", api::PATH_STATUS, None)
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

struct Head {
    status: u16,
    content_length: Option<usize>,
    body_start: usize,
}

fn encode_request<B: Serialize>(
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<Vec<u8>, CniError> {
    let body = body.map(serde_json::to_vec).transpose().map_err(|e| {
        CniError::internal(
            format!("cannot encode the request: {e}"),
            "please report this bug",
        )
    })?;
    let mut out = Vec::with_capacity(192 + body.as_ref().map_or(0, Vec::len));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(
        b" HTTP/1.1\r\nHost: weft\r\nUser-Agent: weft-cni\r\nAccept: application/json\r\nConnection: close\r\n",
    );
    if let Some(body) = &body {
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// Parses the status line and headers once they are complete (`Ok(None)`
/// until the blank line has arrived).
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end])
        .map_err(|_| "weftd's HTTP head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("weftd's status line {status_line:?} is not HTTP/1.x"))?;
    let mut content_length = None;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len = value
                .parse::<usize>()
                .map_err(|_| format!("weftd sent an invalid Content-Length {value:?}"))?;
            if len > api::MAX_BODY_BYTES {
                return Err(format!(
                    "weftd's answer of {len} bytes exceeds {} bytes",
                    api::MAX_BODY_BYTES
                ));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(format!(
                "weftd answered with Transfer-Encoding {value:?}, which weft does not read"
            ));
        }
    }
    Ok(Some(Head {
        status,
        content_length,
        body_start: end + 4,
    }))
}

fn set_timeout(
    stream: &UnixStream,
    deadline: Instant,
    set: fn(&UnixStream, Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    set(stream, Some(left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::Path;

    /// A fake agent answering one connection with `reply` after reading the
    /// request head; returns the request it received.
    fn serve_once(reply: Vec<u8>) -> (tempfile::TempDir, PathBuf, thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            let _ = conn.write_all(&reply);
            got
        });
        (dir, path, handle)
    }

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
    }

    fn client(path: &Path) -> Client {
        Client::new(path, Duration::from_secs(10))
    }

    #[test]
    fn sends_one_request_and_decodes_the_answer() {
        let (_dir, path, handle) = serve_once(http("200 OK", r#"{"ready":true}"#));
        let status = client(&path).status().unwrap();
        assert!(status.ready);
        let request = String::from_utf8(handle.join().unwrap()).unwrap();
        assert!(
            request.starts_with("GET /v1/status HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Connection: close"));
    }

    #[test]
    fn posts_json_with_content_length() {
        let (_dir, path, handle) = serve_once(http("200 OK", r#"{"released":[]}"#));
        let req = GcRequest {
            network: "weft".into(),
            valid_attachments: vec![],
        };
        client(&path).gc(&req).unwrap();
        let request = String::from_utf8(handle.join().unwrap()).unwrap();
        let body = serde_json::to_string(&req).unwrap();
        assert!(request.starts_with("POST /v1/cni/gc HTTP/1.1\r\n"));
        assert!(request.contains(&format!("Content-Length: {}\r\n", body.len())));
    }

    #[test]
    fn agent_errors_pass_through_with_their_code() {
        let body = r#"{"code":11,"msg":"no free address","details":"the pool is growing"}"#;
        let (_dir, path, _h) = serve_once(http("503 Service Unavailable", body));
        let err = client(&path).status().unwrap_err();
        assert_eq!(
            err,
            CniError::try_again_later("no free address", "the pool is growing")
        );
    }

    #[test]
    fn body_until_eof_without_content_length() {
        let (_dir, path, _h) = serve_once(b"HTTP/1.1 200 OK\r\n\r\n{\"ready\":false}".to_vec());
        assert!(!client(&path).status().unwrap().ready);
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for reply in [
            b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(),
            http("200 OK", "not json"),
            http("500 Internal Server Error", "oops"),
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n".to_vec(),
        ] {
            let (_dir, path, _h) = serve_once(reply.clone());
            let err = client(&path).status().unwrap_err();
            assert_eq!(
                err.code.0,
                101,
                "{}: {err}",
                String::from_utf8_lossy(&reply)
            );
        }
    }

    #[test]
    fn truncated_answer_is_try_again() {
        let (_dir, path, _h) =
            serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{\"re".to_vec());
        assert_eq!(client(&path).status().unwrap_err().code.0, 11);
    }

    proptest::proptest! {
        #[test]
        fn any_response_head_parses_or_errors(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_head(&bytes);
            let mut with_status = b"HTTP/1.1 ".to_vec();
            with_status.extend_from_slice(&bytes);
            with_status.extend_from_slice(b"\r\n\r\n");
            let _ = parse_head(&with_status);
        }
    }

    #[test]
    fn missing_socket_is_try_again_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.sock");
        let err = client(&path).status().unwrap_err();
        assert_eq!(err.code.0, 11);
        assert!(err.msg.contains(&path.display().to_string()));
        assert!(err.details.contains("curl --unix-socket"));
    }

    #[test]
    fn stale_socket_is_try_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        drop(UnixListener::bind(&path).unwrap());
        let err = client(&path).status().unwrap_err();
        assert_eq!(err.code.0, 11);
        assert!(err.msg.contains("nothing listens"), "{}", err.msg);
    }

    #[test]
    fn silent_agent_times_out_with_try_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let err = Client::new(&path, Duration::from_millis(50))
            .status()
            .unwrap_err();
        assert_eq!(err.code.0, 11);
        assert!(err.msg.contains("within 50 ms"), "{}", err.msg);
    }

    #[test]
    fn an_agent_that_never_accepts_times_out_on_connect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // SAFETY: listen(2) on our own socket: a backlog of one connection.
        #[allow(
            unsafe_code,
            reason = "the standard library binds with its own backlog and cannot change it"
        )]
        let rc = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) };
        assert_eq!(rc, 0);
        // Fill the backlog: the next connect blocks until an accept.
        let _queued = UnixStream::connect(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        let client = Client::new(&path, Duration::from_millis(100));
        thread::spawn(move || tx.send(client.status()));
        let err = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the client gives up instead of hanging")
            .unwrap_err();
        assert_eq!(err.code.0, 11);
        assert!(err.msg.contains("within 100 ms"), "{}", err.msg);
    }
}
