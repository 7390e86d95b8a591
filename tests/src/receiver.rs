//! A recording HTTP receiver for alert sinks: every request is kept (path,
//! `Idempotency-Key`, signature, `traceparent`, body) and each path can be told to answer
//! 200, fail with 500 a number of times, or hang without answering.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

/// How a path answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 at once.
    Accept,
    /// 500 for this many requests, then 200.
    FailTimes(u32),
    /// 200 for this many requests, then one 500, then 200.
    FailAfter(u32),
    /// Never answers (the sender's deadline must cut it).
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// URL path.
    pub path: String,
    /// `Idempotency-Key` header.
    pub key: Option<String>,
    /// `X-Vantage-Signature` header.
    pub signature: Option<String>,
    /// W3C `traceparent` header.
    pub traceparent: Option<String>,
    /// Every header (names in lower case; the last of repeated ones).
    pub headers: BTreeMap<String, String>,
    /// Raw body.
    pub body: Vec<u8>,
    /// Status answered (0 when the request was left hanging).
    pub answered: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    /// The body as JSON (Null when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<Received>,
    behaviour: HashMap<String, Behaviour>,
}

/// The receiver, serving until dropped with the runtime.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_owned();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let behaviour = {
        let Ok(mut inner) = inner.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        let behaviour = inner
            .behaviour
            .get(&path)
            .copied()
            .unwrap_or(Behaviour::Accept);
        let answered = match behaviour {
            Behaviour::Accept => 200,
            Behaviour::FailTimes(0) => 200,
            Behaviour::FailTimes(n) => {
                inner
                    .behaviour
                    .insert(path.clone(), Behaviour::FailTimes(n - 1));
                500
            }
            Behaviour::FailAfter(0) => {
                inner.behaviour.insert(path.clone(), Behaviour::Accept);
                500
            }
            Behaviour::FailAfter(n) => {
                inner
                    .behaviour
                    .insert(path.clone(), Behaviour::FailAfter(n - 1));
                200
            }
            Behaviour::Hang => 0,
        };
        inner.requests.push(Received {
            path,
            key: header("idempotency-key"),
            signature: header("x-vantage-signature"),
            traceparent: header("traceparent"),
            headers: headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body: body.to_vec(),
            answered,
            at: std::time::Instant::now(),
        });
        answered
    };
    match behaviour {
        0 => futures::future::pending().await,
        200 => StatusCode::OK,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Receiver {
    /// Listens on 127.0.0.1 (OS-chosen port).
    pub async fn start() -> Result<Receiver> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Listens on `addr`.
    pub async fn start_on(addr: SocketAddr) -> Result<Receiver> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let app = Router::new().fallback(handle).with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { addr, inner })
    }

    /// `http://ADDR:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Sets how `path` answers from now on.
    pub fn set(&self, path: &str, behaviour: Behaviour) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.behaviour.insert(path.to_owned(), behaviour);
        }
    }

    /// Every request to `path`, in arrival order.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.inner
            .lock()
            .map(|i| {
                i.requests
                    .iter()
                    .filter(|r| r.path == path)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Requests per idempotency key at `path`.
    pub fn keys(&self, path: &str) -> BTreeMap<String, usize> {
        let mut keys = BTreeMap::new();
        for r in self.received(path) {
            *keys.entry(r.key.unwrap_or_default()).or_default() += 1;
        }
        keys
    }

    /// Keys a deduplicating receiver accepted at `path` (answered 200).
    pub fn accepted_keys(&self, path: &str) -> BTreeSet<String> {
        self.received(path)
            .into_iter()
            .filter(|r| r.answered == 200)
            .filter_map(|r| r.key)
            .collect()
    }
}
