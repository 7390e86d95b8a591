//! Prometheus remote-write 1.0: results as samples, and the client that
//! sends them (protobuf `WriteRequest`, snappy block compression, the
//! spec's headers). The leader's loop that reads applied log entries and
//! keeps the replicated cursor is `node/remote_write.rs`.
//!
//! Per result, timestamped with the probe's start:
//!
//! - `vantage_probe_success{check,region,agent,kind}`: 1 when it passed or
//!   warned (the service answers), 0 when it failed or could not tell;
//! - `vantage_probe_duration_seconds{check,region,agent,kind,phase}`: the
//!   whole probe (`phase="total"`) and each timed step (`connect`,
//!   `banner`, `ehlo`, `starttls`...).

use std::collections::BTreeMap;
use std::time::Duration;

use vantage_common::Status;
use vantage_common::secret::{Secret, SecretError};

use crate::config::RemoteWriteSettings;
use crate::raft::types::Entry;
use crate::state::{Command, IncomingResult};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

impl WriteRequest {
    /// Samples it carries.
    pub fn len(&self) -> usize {
        self.timeseries.iter().map(|t| t.samples.len()).sum()
    }

    /// Carries none?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Two requests, each with about half the samples, the first with the
    /// earlier ones of a series that is split.
    pub fn halves(mut self) -> (WriteRequest, WriteRequest) {
        if self.timeseries.len() > 1 {
            let second = self.timeseries.split_off(self.timeseries.len() / 2);
            return (self, WriteRequest { timeseries: second });
        }
        let mut second = WriteRequest::default();
        if let Some(series) = self.timeseries.first_mut() {
            let later = series.samples.split_off(series.samples.len() / 2);
            second.timeseries.push(TimeSeries {
                labels: series.labels.clone(),
                samples: later,
            });
        }
        (self, second)
    }
}

/// `prometheus.TimeSeries`: labels sorted by name, samples by time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Samples grouped by series, in the order they were added.
#[derive(Debug, Default)]
pub struct Samples {
    series: BTreeMap<Vec<(&'static str, String)>, Vec<Sample>>,
    count: usize,
}

impl Samples {
    /// Samples held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Holds none?
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn push(&mut self, mut labels: Vec<(&'static str, String)>, value: f64, timestamp: i64) {
        labels.sort();
        self.series
            .entry(labels)
            .or_default()
            .push(Sample { value, timestamp });
        self.count += 1;
    }

    /// Adds the samples of `result`, run by `agent` for a check of `kind`.
    pub fn add(&mut self, agent: &str, kind: &str, r: &IncomingResult) {
        let s = &r.result;
        let base = |name: &'static str| {
            vec![
                ("__name__", name.to_owned()),
                ("check", r.check.clone()),
                ("region", s.region.clone()),
                ("agent", agent.to_owned()),
                ("kind", kind.to_owned()),
            ]
        };
        let up = matches!(s.status, Status::Pass | Status::Warn);
        self.push(
            base("vantage_probe_success"),
            f64::from(u8::from(up)),
            s.started_at_ms,
        );
        let mut total = base("vantage_probe_duration_seconds");
        total.push(("phase", "total".to_owned()));
        self.push(total, s.duration_ms as f64 / 1000.0, s.started_at_ms);
        for (phase, micros) in &s.phases {
            let mut labels = base("vantage_probe_duration_seconds");
            labels.push(("phase", phase.clone()));
            self.push(labels, *micros as f64 / 1e6, s.started_at_ms);
        }
    }

    /// Requests carrying them, each of at most `max` samples (each
    /// series' samples in time order).
    pub fn requests(self, max: usize) -> Vec<WriteRequest> {
        let max = max.max(1);
        let mut requests = Vec::new();
        let mut current = WriteRequest::default();
        let mut room = max;
        for (labels, mut samples) in self.series {
            samples.sort_by_key(|s| s.timestamp);
            let labels: Vec<Label> = labels
                .into_iter()
                .map(|(name, value)| Label {
                    name: name.to_owned(),
                    value,
                })
                .collect();
            let mut rest = samples.as_slice();
            while !rest.is_empty() {
                let (now, later) = rest.split_at(rest.len().min(room));
                current.timeseries.push(TimeSeries {
                    labels: labels.clone(),
                    samples: now.to_vec(),
                });
                room -= now.len();
                rest = later;
                if room == 0 {
                    requests.push(std::mem::take(&mut current));
                    room = max;
                }
            }
        }
        if !current.timeseries.is_empty() {
            requests.push(current);
        }
        requests
    }
}

/// The results an entry carries, with the agent that sent them.
pub fn results(entry: &Entry) -> Vec<(&str, &IncomingResult)> {
    fn walk<'a>(command: &'a Command, out: &mut Vec<(&'a str, &'a IncomingResult)>) {
        match command {
            Command::Results { agent, results, .. } => {
                out.extend(results.iter().map(|r| (agent.as_str(), r)));
            }
            Command::Batch(commands) => commands.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let openraft::EntryPayload::Normal(command) = &entry.payload {
        walk(command, &mut out);
    }
    out
}

/// Why a request did not go through.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another try (a transport error, a timeout, 5xx, 429).
    #[error("{0}")]
    Retry(String),
    /// Refused for good (4xx): its samples are dropped.
    #[error("{0}")]
    Refused(String),
    /// Refused (4xx) for a sample older than what the receiver holds of its
    /// series: Prometheus refuses the whole request for one ("out of order
    /// sample"), so the rest may go through on their own.
    #[error("{0}")]
    Stale(String),
    /// A credential could not be read.
    #[error("{0}")]
    Secret(#[from] SecretError),
}

/// Samples [`Writer::drain`] sent and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Taken by the receiver.
    pub sent: usize,
    /// Refused by it.
    pub dropped: usize,
}

/// How requests authenticate.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic(String, Secret),
    Bearer(Secret),
}

/// The client of one remote-write endpoint.
#[derive(Debug, Clone)]
pub struct Writer {
    url: reqwest::Url,
    auth: Auth,
    timeout: Duration,
    http: reqwest::Client,
    /// Samples per request at most.
    pub max_samples: usize,
}

impl Writer {
    /// A client for `settings` (validated with the configuration).
    pub fn new(settings: &RemoteWriteSettings) -> Result<Writer, String> {
        let url = reqwest::Url::parse(&settings.url).map_err(|e| e.to_string())?;
        let password = settings.password().map_err(|e| e.to_string())?;
        let bearer = settings.bearer_token().map_err(|e| e.to_string())?;
        let auth = match (&settings.basic_auth_username, password, bearer) {
            (Some(user), Some(password), _) => Auth::Basic(user.clone(), password),
            (_, _, Some(token)) => Auth::Bearer(token),
            _ => Auth::None,
        };
        Ok(Writer {
            url,
            auth,
            timeout: settings.timeout.duration(),
            http: crate::alert::http_client().map_err(|e| e.to_string())?,
            max_samples: settings.max_samples_per_send,
        })
    }

    /// Sends the requests of `queue`, last first, taking each off as it
    /// goes through or is refused for good (its samples dropped, counted in
    /// `done`). One refused for a sample older than what the receiver holds
    /// ([`SendError::Stale`]: what a request resent after a failover may
    /// carry next to new samples) is halved and its halves sent in order,
    /// until only the stale samples are dropped. Stops at the first error
    /// worth retrying, the request put back: call again to go on.
    pub async fn drain(
        &self,
        queue: &mut Vec<WriteRequest>,
        done: &mut Drained,
    ) -> Result<(), SendError> {
        while let Some(request) = queue.pop() {
            match self.send(&request).await {
                Ok(()) => done.sent += request.len(),
                Err(SendError::Stale(_)) if request.len() > 1 => {
                    let (first, second) = request.halves();
                    queue.push(second);
                    queue.push(first);
                }
                Err(e @ (SendError::Refused(_) | SendError::Stale(_))) => {
                    tracing::warn!(samples = request.len(), error = %e, "remote_write: refused; samples dropped");
                    done.dropped += request.len();
                }
                Err(e) => {
                    queue.push(request);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Sends `request` once.
    pub async fn send(&self, request: &WriteRequest) -> Result<(), SendError> {
        let body = snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(request))
            .map_err(|e| SendError::Refused(format!("cannot compress: {e}")))?;
        let mut builder = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        let mut secrets = Vec::new();
        match &self.auth {
            Auth::None => {}
            Auth::Basic(user, password) => {
                let password = password.read()?;
                builder = builder.basic_auth(user, Some(&password));
                secrets.push(password);
            }
            Auth::Bearer(token) => {
                let token = token.read()?;
                builder = builder.bearer_auth(&token);
                secrets.push(token);
            }
        }
        let response = builder
            .send()
            .await
            .map_err(|e| SendError::Retry(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let why = format!("HTTP {status}: {}", crate::alert::sanitise(&text, &secrets));
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(SendError::Retry(why))
        } else if stale(&why) {
            Err(SendError::Stale(why))
        } else {
            Err(SendError::Refused(why))
        }
    }
}

/// Does a refusal say a sample is older than what the receiver holds?
fn stale(why: &str) -> bool {
    let why = why.to_ascii_lowercase();
    [
        "out of order",
        "out-of-order",
        "out of bounds",
        "duplicate sample",
        "too old",
    ]
    .iter()
    .any(|s| why.contains(s))
}
