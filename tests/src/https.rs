//! A scripted HTTPS server (rustls, a test certificate): every request
//! gets the one response currently set, and its path is recorded. For
//! MTA-STS policies: valid, `testing`, mismatching, malformed, redirected.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The response every request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// `Location`, for redirects.
    pub location: Option<String>,
    /// The body.
    pub body: String,
}

impl Response {
    /// 200 with a `text/plain` body.
    pub fn text(body: &str) -> Self {
        Response {
            status: 200,
            content_type: "text/plain".into(),
            location: None,
            body: body.into(),
        }
    }

    /// A redirect to `to`.
    pub fn redirect(to: &str) -> Self {
        Response {
            status: 301,
            content_type: "text/plain".into(),
            location: Some(to.into()),
            body: String::new(),
        }
    }
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct HttpsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    response: Arc<Mutex<Response>>,
    paths: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsServer {
    /// Starts a server on `addr` presenting `tls`, answering `response`.
    pub async fn start(
        addr: SocketAddr,
        tls: Arc<ServerConfig>,
        response: Response,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let response = Arc::new(Mutex::new(response));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (response, paths) = (response.clone(), paths.clone());
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = TlsAcceptor::from(tls.clone());
                    let (response, paths) = (response.clone(), paths.clone());
                    tokio::spawn(async move {
                        let Ok(mut stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let mut request = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                            if request.len() > 16 * 1024 {
                                return;
                            }
                        }
                        let text = String::from_utf8_lossy(&request);
                        let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
                        if let Ok(mut p) = paths.lock() {
                            p.push(path);
                        }
                        let Some(r) = current(&response) else {
                            return;
                        };
                        let location = r
                            .location
                            .map(|l| format!("Location: {l}\r\n"))
                            .unwrap_or_default();
                        let head = format!(
                            "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n{location}Connection: close\r\n\r\n",
                            r.status,
                            r.content_type,
                            r.body.len()
                        );
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.write_all(r.body.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    });
                }
            }
        });
        Ok(HttpsServer {
            addr,
            response,
            paths,
            task,
        })
    }

    /// Answers `response` from now on.
    pub fn set(&self, response: Response) {
        if let Ok(mut r) = self.response.lock() {
            *r = response;
        }
    }

    /// Paths requested so far.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

fn current(response: &Mutex<Response>) -> Option<Response> {
    response.lock().ok().map(|r| r.clone())
}
