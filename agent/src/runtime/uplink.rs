//! The session with the coordinator cluster: find the leader (following
//! redirects, trying every configured endpoint), say Hello, send spooled
//! results in order in batches, drop them from the spool only when acked,
//! heartbeat, and take assignment updates. Reconnects with capped,
//! jittered exponential backoff; probing never waits for it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use vantage_common::tls::ReloadingTls;
use vantage_common::transport;
use vantage_proto::v1::agent_message::Msg as Out;
use vantage_proto::v1::agent_service_client::AgentServiceClient;
use vantage_proto::v1::coordinator_message::Msg as In;
use vantage_proto::v1::{AgentMessage, Assignment, Heartbeat, Hello, ResultBatch, ResultRecord};

use super::scheduler::{Assigned, RunNow};
use crate::check::CheckSpec;
use crate::spool::{Spool, SpoolError};

/// Acks are written to the spool at most this often (and at heartbeats).
const ACK_EVERY: Duration = Duration::from_secs(1);
/// Batches in flight before waiting for acks.
const MAX_IN_FLIGHT: usize = 4;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Heartbeat intervals without a word from the coordinator before the
/// session is given up (and another coordinator tried).
const SILENT_BEATS: u32 = 3;
/// ...but never sooner than this.
const MIN_SILENCE: Duration = Duration::from_secs(3);
/// How long a coordinator may take to welcome a new session.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(15);

/// What the uplink needs.
#[derive(Debug, Clone)]
pub struct Uplink {
    /// Coordinator endpoints.
    pub endpoints: Vec<String>,
    /// Our mTLS material (re-read per connection).
    pub tls: Arc<ReloadingTls>,
    /// The spool shared with the result writer.
    pub spool: Arc<Mutex<Spool>>,
    /// Signalled when results were spooled.
    pub spooled: Arc<Notify>,
    /// Where assignments go.
    pub assignments: watch::Sender<Vec<Assigned>>,
    /// Where out-of-schedule run requests go.
    pub run_now: mpsc::Sender<RunNow>,
    /// Session gauges.
    pub metrics: Arc<super::metrics::AgentMetrics>,
    /// Results per batch.
    pub batch_size: usize,
}

/// Why a session ended.
enum End {
    /// Go to this leader next.
    Redirect(String),
    /// Try again (after backoff).
    Failed(SessionError),
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// The endpoint is not a usable address.
    #[error("bad endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
    /// The coordinator answered with an error.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// TLS failed (why, in words).
    #[error("{0}")]
    Tls(String),
    /// The spool could not be read or written.
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    /// A spool operation panicked earlier (its lock is poisoned).
    #[error("spool lock poisoned")]
    Poisoned,
    /// A spool operation could not run.
    #[error("spool task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// No Welcome in time (a coordinator that cannot commit our hello).
    #[error("no Welcome within {0:?}")]
    NoWelcome(Duration),
    /// The spool took a new identity; the session must say hello again.
    #[error("the spool took a new identity")]
    Renewed,
    /// The coordinator stopped answering heartbeats.
    #[error("no word from the coordinator for {0:?}")]
    Silent(Duration),
    /// The session stream ended or broke the protocol.
    #[error("{0}")]
    Closed(&'static str),
}

impl From<SessionError> for End {
    fn from(e: SessionError) -> Self {
        End::Failed(e)
    }
}

/// An assignment arriving in parts (each under the frame limit).
#[derive(Debug, Default)]
struct Parts {
    version: u64,
    received: u32,
    checks: Vec<vantage_proto::v1::AssignedCheck>,
}

impl Parts {
    /// Adds a part; the whole assignment once its last part is in.
    fn add(&mut self, a: Assignment) -> Option<Assignment> {
        if a.part <= 1 || a.version != self.version {
            *self = Parts {
                version: a.version,
                ..Parts::default()
            };
        }
        self.received += 1;
        self.checks.extend(a.checks);
        (self.received >= a.parts.max(1)).then(|| Assignment {
            version: self.version,
            checks: std::mem::take(&mut self.checks),
            part: 1,
            parts: 1,
        })
    }
}

/// Runs a spool operation off the async threads.
async fn with_spool<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SessionError> {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || {
        let mut spool = spool.lock().map_err(|_| SessionError::Poisoned)?;
        Ok(f(&mut spool)?)
    })
    .await?
}

impl Uplink {
    /// Runs sessions forever.
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(200);
        let mut next = 0usize;
        let mut redirect: Option<String> = None;
        let mut redirects = 0u32;
        loop {
            let endpoint = redirect.take().unwrap_or_else(|| {
                let e = self.endpoints[next % self.endpoints.len()].clone();
                next += 1;
                e
            });
            let started = tokio::time::Instant::now();
            let mut welcomed = false;
            let end = self.session(&endpoint, &mut welcomed).await;
            self.metrics.connected.set(0);
            match end {
                // Follow redirects at once, but not in circles (a leader
                // change in progress): after a few, back off like a failure.
                End::Redirect(leader) if !leader.is_empty() && redirects < 3 => {
                    tracing::info!(from = %endpoint, to = %leader, "redirected to the leader");
                    redirect = Some(leader);
                    redirects += 1;
                    continue;
                }
                End::Redirect(leader) if !leader.is_empty() => redirect = Some(leader),
                End::Redirect(_) => tracing::info!(%endpoint, "no leader known yet"),
                End::Failed(why) => {
                    tracing::warn!(%endpoint, error = %why, "coordinator session ended")
                }
            }
            redirects = 0;
            // A session that was welcomed proves the way works: when it ends
            // (its leader died or stepped down) the next try comes soon, not
            // after the backoff of a run of failures.
            if welcomed || started.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(200);
            }
            let jitter = Duration::from_millis(
                u64::from(std::process::id()) % 100
                    + (started.elapsed().subsec_nanos() % 200) as u64,
            );
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One session with `endpoint`; `welcomed` is set once it opened.
    async fn session(&self, endpoint: &str, welcomed: &mut bool) -> End {
        let channel = match transport::channel(endpoint, self.tls.clone()) {
            Ok(c) => c,
            Err(e) => return End::Failed(e.into()),
        };
        let mut client = AgentServiceClient::new(channel);
        let (tx, rx) = mpsc::channel::<AgentMessage>(16);
        let spool_id = match with_spool(&self.spool, |s| Ok(s.id())).await {
            Ok(id) => id,
            Err(e) => return e.into(),
        };
        let hello = Hello {
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![],
            spool_id,
        };
        if tx
            .send(AgentMessage {
                msg: Some(Out::Hello(hello)),
            })
            .await
            .is_err()
        {
            return SessionError::Closed("session channel closed").into();
        }
        let mut inbound = match client.session(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(s) => return self.failed(endpoint, s).await,
        };
        // A coordinator that cannot commit our hello never welcomes us.
        let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).await {
            Ok(w) => w,
            Err(_) => return SessionError::NoWelcome(WELCOME_TIMEOUT).into(),
        };
        let heartbeat = match welcome {
            Ok(Some(m)) => match m.msg {
                Some(In::Welcome(w)) => {
                    let cluster_acked = w.acked_seq;
                    match with_spool(&self.spool, move |s| s.reconcile(cluster_acked)).await {
                        Ok(None) => {}
                        Ok(Some(r)) => {
                            tracing::error!(
                                old_id = r.old_id,
                                new_id = r.new_id,
                                cluster_acked = r.cluster_acked,
                                local_last = r.local_last,
                                resending = r.pending,
                                "the cluster has acknowledged more results of this spool than it \
                                 ever wrote: its disk is older than its history (restored from a \
                                 snapshot or copied); started a new spool identity so that new \
                                 results are not taken for old ones"
                            );
                            return SessionError::Renewed.into();
                        }
                        Err(e) => return e.into(),
                    }
                    tracing::info!(%endpoint, node = w.node_id, acked = w.acked_seq, "session open");
                    self.metrics.connected.set(1);
                    self.metrics.sessions.inc();
                    *welcomed = true;
                    Duration::from_millis(u64::from(w.heartbeat_interval_ms).max(100))
                }
                Some(In::Redirect(r)) => return End::Redirect(r.leader_addr),
                _ => return SessionError::Closed("expected Welcome").into(),
            },
            Ok(None) => return SessionError::Closed("closed before Welcome").into(),
            Err(s) => return self.failed(endpoint, s).await,
        };

        let mut parts = Parts::default();
        let mut in_flight: VecDeque<u64> = VecDeque::new();
        let mut sent_upto = match with_spool(&self.spool, |s| Ok(s.acked())).await {
            Ok(a) => a,
            Err(e) => return e.into(),
        };
        let mut ticker = tokio::time::interval(heartbeat);
        // The coordinator answers every heartbeat; one that stays silent
        // (cut off, or a leader that cannot commit) is given up on.
        let silence_limit = (heartbeat * SILENT_BEATS).max(MIN_SILENCE);
        let mut last_heard = tokio::time::Instant::now();
        // Acks are written to the spool at most every ACK_EVERY (a crash
        // resends what was acknowledged since, which the cluster applies
        // once); the newest one not written yet.
        let mut unwritten_ack: Option<u64> = None;
        let mut ack_written = tokio::time::Instant::now();
        loop {
            // Send what is spooled, up to the in-flight limit.
            while in_flight.len() < MAX_IN_FLIGHT {
                let batch = match self.next_batch(sent_upto).await {
                    Ok(b) => b,
                    Err(e) => return e.into(),
                };
                let Some(last) = batch.results.last().map(|r| r.seq) else {
                    break;
                };
                if tx
                    .send(AgentMessage {
                        msg: Some(Out::Batch(batch)),
                    })
                    .await
                    .is_err()
                {
                    return SessionError::Closed("session closed while sending").into();
                }
                sent_upto = last;
                in_flight.push_back(last);
            }
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(m)) => {
                        last_heard = tokio::time::Instant::now();
                        match m.msg {
                            Some(In::Ack(ack)) => {
                                while in_flight.front().is_some_and(|s| *s <= ack.seq) {
                                    in_flight.pop_front();
                                }
                                unwritten_ack = Some(ack.seq);
                                if ack_written.elapsed() >= ACK_EVERY {
                                    ack_written = tokio::time::Instant::now();
                                    if let Some(seq) = unwritten_ack.take()
                                        && let Err(e) = self.ack(seq).await
                                    {
                                        return e.into();
                                    }
                                }
                            }
                            Some(In::Assignment(a)) => {
                                if let Some(whole) = parts.add(a) {
                                    self.assign(whole);
                                }
                            }
                            Some(In::RunNow(r)) => {
                                tracing::debug!(check = %r.check, delay_ms = r.delay_ms, "run now");
                                // Full: the scheduler is busy; the next slot comes anyway.
                                let _ = self.run_now.try_send((r.check, Duration::from_millis(u64::from(r.delay_ms.min(60_000)))));
                            }
                            Some(In::Redirect(r)) => return End::Redirect(r.leader_addr),
                            Some(In::Heartbeat(_)) | Some(In::Welcome(_)) | None => {}
                        }
                    }
                    Ok(None) => return SessionError::Closed("coordinator closed the session").into(),
                    Err(s) => return End::Failed(s.into()),
                },
                _ = ticker.tick() => {
                    if last_heard.elapsed() > silence_limit {
                        return SessionError::Silent(silence_limit).into();
                    }
                    if let Some(seq) = unwritten_ack.take() {
                        ack_written = tokio::time::Instant::now();
                        if let Err(e) = self.ack(seq).await {
                            return e.into();
                        }
                    }
                    let pending = with_spool(&self.spool, |s| Ok(s.pending())).await.unwrap_or(0);
                    let beat = Heartbeat { sent_at_ms: 0, pending };
                    if tx.send(AgentMessage { msg: Some(Out::Heartbeat(beat)) }).await.is_err() {
                        return SessionError::Closed("session closed").into();
                    }
                }
                _ = self.spooled.notified(), if in_flight.len() < MAX_IN_FLIGHT => {}
            }
        }
    }

    /// A session that could not start, explained: below gRPC tonic says
    /// only "transport error", so the TLS verdict is fetched (a revoked or
    /// expired certificate, a foreign CA).
    async fn failed(&self, endpoint: &str, status: tonic::Status) -> End {
        if matches!(
            status.code(),
            tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable
        ) && let Some(why) = transport::diagnose(endpoint, &self.tls).await
        {
            return SessionError::Tls(why).into();
        }
        End::Failed(status.into())
    }

    /// Up to `batch_size` spooled results after `after`, decoded and numbered.
    async fn next_batch(&self, after: u64) -> Result<ResultBatch, SessionError> {
        let limit = self.batch_size;
        let records = with_spool(&self.spool, move |s| s.unacked(after, limit)).await?;
        let mut results = Vec::with_capacity(records.len());
        for r in records {
            match ResultRecord::decode(r.payload.as_slice()) {
                Ok(mut rec) => {
                    rec.seq = r.seq;
                    results.push(rec);
                }
                Err(e) => {
                    tracing::warn!(seq = r.seq, error = %e, "skipping an undecodable spooled result")
                }
            }
        }
        Ok(ResultBatch { results })
    }

    async fn ack(&self, seq: u64) -> Result<(), SessionError> {
        with_spool(&self.spool, move |s| s.ack(seq)).await
    }

    fn assign(&self, a: Assignment) {
        let mut checks = Vec::with_capacity(a.checks.len());
        for c in a.checks {
            match serde_json::from_str::<CheckSpec>(&c.spec_json) {
                Ok(spec) => checks.push(Assigned {
                    name: c.name,
                    spec,
                    interval: Duration::from_secs(u64::from(c.interval_s)),
                    timeout: (c.timeout_s > 0).then(|| Duration::from_secs(u64::from(c.timeout_s))),
                }),
                Err(e) => {
                    tracing::warn!(check = %c.name, error = %e, "cannot run an assigned check (newer coordinator?)")
                }
            }
        }
        tracing::info!(
            version = a.version,
            checks = checks.len(),
            "assignment received"
        );
        let _ = self.assignments.send(checks);
    }
}
