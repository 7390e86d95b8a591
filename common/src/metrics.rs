//! The plain-HTTP side port of agents and coordinators: `/metrics`
//! (OpenMetrics text from a prometheus-client registry), `/healthz` and
//! `/readyz`. It serves nothing that changes state; anything else is 404.
//! It holds at most [`MAX_CONNECTIONS`] connections, each closed after
//! [`IDLE_TIMEOUT`] without traffic, so idle clients cannot starve the
//! process of file descriptors.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub use axum::Router;
pub use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Renders the metrics text (gauges read from live state are set first),
/// whole or streamed, given the request's query string (`checks=false`).
pub type Render =
    Arc<dyn Fn(Option<String>) -> Pin<Box<dyn Future<Output = Body> + Send>> + Send + Sync>;
/// Answers `/readyz`: `Ok` when ready, else why not.
pub type Ready =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set for a metric family.
pub type Labels = Vec<(String, String)>;

/// A label set from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Encodes `registry` as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    text
}

/// The routes: `/metrics`, `/healthz`, `/readyz`.
pub fn router(render: Render, ready: Ready) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move |uri: axum::http::Uri| {
                let render = render.clone();
                async move {
                    let query = uri.query().map(str::to_owned);
                    ([(header::CONTENT_TYPE, OPENMETRICS)], render(query).await)
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready().await {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
                        Err(why) => {
                            (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
                        }
                    }
                }
            }),
        )
}

/// Connections the side port holds at once: more wait in the kernel's
/// backlog, so idle or hostile clients cannot take the file descriptors the
/// gRPC and Raft port needs.
pub const MAX_CONNECTIONS: usize = 128;
/// A connection with no bytes either way for this long is closed (a
/// scraper reconnects; a slow or idle client does not hold a slot).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` and serves `router` in the background; returns the bound
/// address. At most [`MAX_CONNECTIONS`] at once, each closed after
/// [`IDLE_TIMEOUT`] without traffic.
pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<SocketAddr> {
    serve_bounded(addr, router, MAX_CONNECTIONS, IDLE_TIMEOUT).await
}

/// [`serve`] with its limits given.
pub async fn serve_bounded(
    addr: SocketAddr,
    router: Router,
    max_connections: usize,
    idle: Duration,
) -> std::io::Result<SocketAddr> {
    let listener = Bounded {
        inner: TcpListener::bind(addr).await?,
        slots: Arc::new(Semaphore::new(max_connections)),
        idle,
    };
    let bound = listener.inner.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "HTTP port stopped");
        }
    });
    Ok(bound)
}

/// A listener that accepts only while a slot is free.
struct Bounded {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    idle: Duration,
}

impl axum::serve::Listener for Bounded {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        // Wait for a free slot before taking a connection off the backlog.
        let slot = loop {
            if let Ok(slot) = self.slots.clone().acquire_owned().await {
                break slot;
            }
        };
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let guarded = Guarded {
            stream,
            idle: self.idle,
            deadline: Box::pin(tokio::time::sleep(self.idle)),
            _slot: slot,
        };
        (guarded, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that holds its slot and times out when idle.
struct Guarded {
    stream: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl Guarded {
    /// After progress: the idle clock starts again. Without: an error once
    /// it has run out.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                let next = tokio::time::Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "idle HTTP connection",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.watch(cx, poll)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
