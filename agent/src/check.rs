//! The `Check` trait, the per-probe recorder and the deadline rules.
//!
//! Every check kind lives in its own file under `check/` and implements
//! [`Check`]: a pure async function of (spec, context) → finding. [`execute`]
//! owns the deadline, records phases and turns the finding into an
//! [`Outcome`], the same way for every kind.

pub mod dane;
pub mod delivery;
pub mod dkim;
pub mod dmarc;
pub mod dns;
pub mod dnsbl;
pub mod domain;
pub mod mta_sts;
pub mod mx;
pub mod posture;
pub mod ptr;
pub mod smtp;
pub mod spf;
pub mod tcp;
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use vantage_common::observed::Observed;
pub use vantage_common::spec::CheckSpec;
use vantage_common::spec::Kind;
use vantage_common::{FailureClass, Outcome, Phases, Status};

use crate::authoritative::{self, Question};
use crate::context::ProbeContext;
use crate::resolver::Resolver;

/// The verdict a check reaches (or the reason it stopped early).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// pass / warn / fail / error.
    pub status: Status,
    /// Why it did not pass.
    pub class: Option<FailureClass>,
    /// One line for a human.
    pub message: String,
}

impl Finding {
    /// The target is fine.
    pub fn pass(message: impl Into<String>) -> Self {
        Finding {
            status: Status::Pass,
            class: None,
            message: message.into(),
        }
    }
    /// The target works but is degraded.
    pub fn warn(class: FailureClass, message: impl Into<String>) -> Self {
        Finding {
            status: Status::Warn,
            class: Some(class),
            message: message.into(),
        }
    }
    /// The target is broken.
    pub fn fail(class: FailureClass, message: impl Into<String>) -> Self {
        Finding {
            status: Status::Fail,
            class: Some(class),
            message: message.into(),
        }
    }
    /// This vantage could not tell.
    pub fn error(class: FailureClass, message: impl Into<String>) -> Self {
        Finding {
            status: Status::Error,
            class: Some(class),
            message: message.into(),
        }
    }
    /// With weaknesses found besides the check's own verdict: a pass
    /// becomes a `warn` of `class` saying them, a warning says them too, a
    /// failure (or an error) stays as it is.
    pub fn weakened(self, class: FailureClass, weaknesses: &[String]) -> Self {
        if weaknesses.is_empty() {
            return self;
        }
        let said = weaknesses.join("; ");
        match self.status {
            Status::Pass => Finding::warn(class, said),
            Status::Warn => Finding {
                message: format!("{}; {said}", self.message),
                ..self
            },
            Status::Fail | Status::Error => self,
        }
    }

    /// Prefixes the message with the step it happened in.
    pub fn during(mut self, step: &str) -> Self {
        self.message = format!("{step}: {}", self.message);
        self
    }
}

/// What a check's body returns: `Err` ends the check early with that finding.
pub type CheckResult = Result<Finding, Finding>;

/// One check kind. Implementations hold their parameters and do no I/O
/// outside [`Probe::step`], which enforces the deadline.
pub trait Check {
    /// Its entry in the registry of kinds.
    const KIND: Kind;
    /// Deadline used when the caller sets none.
    const DEFAULT_TIMEOUT: Duration;
    /// What is probed, for the outcome's `target` field.
    fn target(&self) -> String;
    /// Runs the check.
    fn run(&self, probe: &mut Probe<'_>) -> impl Future<Output = CheckResult> + Send;
    /// The question whose authoritative view ([`crate::authoritative`])
    /// judges the run too, asked after it (`authoritative = true`).
    fn authoritative(&self, _probe: &Probe<'_>) -> Option<Question> {
        None
    }
}

/// Records phases and details of one running probe and enforces its deadline.
#[derive(Debug)]
pub struct Probe<'a> {
    /// Resolver settings, timeout and source address.
    pub ctx: &'a ProbeContext,
    deadline: Instant,
    phases: Phases,
    details: BTreeMap<String, Value>,
    /// This run's resolver, built on its first question.
    resolver: Option<Resolver>,
}

impl<'a> Probe<'a> {
    fn new(ctx: &'a ProbeContext, deadline: Instant) -> Self {
        Probe {
            ctx,
            deadline,
            phases: Phases::default(),
            details: BTreeMap::new(),
            resolver: None,
        }
    }

    /// When the whole probe must be over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Runs one timed step under the probe's deadline. A step that is still
    /// running at the deadline fails with class `timeout`, naming the step.
    pub async fn step<T>(
        &mut self,
        name: &str,
        fut: impl Future<Output = Result<T, Finding>>,
    ) -> Result<T, Finding> {
        let start = Instant::now();
        let result = tokio::time::timeout_at(self.deadline, fut).await;
        self.phases.record(name, start.elapsed());
        match result {
            Ok(inner) => inner.map_err(|f| f.during(name)),
            Err(_) => Err(Finding::fail(
                FailureClass::Timeout,
                format!("{name}: no answer before the deadline"),
            )),
        }
    }

    /// Adds a detail (banner, extensions, records seen...).
    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_owned(), value.into());
    }

    /// Records what the check saw, normalised (`details.observed`: the
    /// cluster's baseline compares it across runs and regions), and holds
    /// it against the check's pin: a different value fails with class
    /// `policy`, naming the difference.
    pub fn observed(
        &mut self,
        what: &str,
        seen: Observed,
        pin: Option<&Observed>,
    ) -> Result<(), Finding> {
        let diff = pin.map(|p| p.diff(&seen)).unwrap_or_default();
        if let Ok(value) = serde_json::to_value(&seen) {
            self.detail("observed", value);
        }
        if diff.is_empty() {
            return Ok(());
        }
        Err(Finding::fail(
            FailureClass::Policy,
            format!(
                "{what} differs from the pinned value (pinned → seen): {}",
                diff.join("; ")
            ),
        ))
    }

    /// Moves a detail recorded earlier to another key.
    pub fn rename_detail(&mut self, from: &str, to: &str) {
        if let Some(value) = self.details.remove(from) {
            self.details.insert(to.to_owned(), value);
        }
    }

    /// A string detail recorded earlier.
    pub fn detail_str(&self, key: &str) -> Option<String> {
        self.details
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// This run's resolver: every question goes to the DNS servers, none is
    /// answered from an earlier run.
    pub fn resolver(&mut self) -> Result<Resolver, Finding> {
        if let Some(r) = &self.resolver {
            return Ok(r.clone());
        }
        let r = self.ctx.resolver()?;
        self.resolver = Some(r.clone());
        Ok(r)
    }

    /// The address to connect to for `host` (an IP literal, or a name looked
    /// up as step `resolve`). With a source address, an address of the same
    /// family is preferred.
    pub async fn endpoint(&mut self, host: &str, port: u16) -> Result<SocketAddr, Finding> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let resolver = self.resolver()?;
        let addrs = self
            .step("resolve", async {
                resolver.addresses(bare).await.map_err(|e| e.finding())
            })
            .await?;
        let source_v4 = self.ctx.source_address.map(|s| s.is_ipv4());
        let ip = addrs
            .iter()
            .find(|a| Some(a.is_ipv4()) == source_v4)
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| Finding::fail(FailureClass::Dns, format!("{bare} has no address")))?;
        self.detail("address", ip.to_string());
        Ok(SocketAddr::new(ip, port))
    }
}

/// The one policy record (SPF, DKIM, DMARC) published at `name`: none, or
/// more than one, is a policy failure. Records the record (or all of them)
/// as details.
pub fn single_record(
    probe: &mut Probe<'_>,
    records: Vec<String>,
    kind: &str,
    name: &str,
) -> Result<String, Finding> {
    match <[String; 1]>::try_from(records) {
        Ok([record]) => {
            probe.detail("record", record.clone());
            Ok(record)
        }
        Err(records) if records.is_empty() => Err(Finding::fail(
            FailureClass::Policy,
            format!("no {kind} record at {name}"),
        )),
        Err(records) => {
            let n = records.len();
            probe.detail("records", records);
            Err(Finding::fail(
                FailureClass::Policy,
                format!("{n} {kind} records at {name}; exactly one is allowed"),
            ))
        }
    }
}

/// `host:port`, bracketing IPv6 literals.
pub fn host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// Runs `check` with the context's timeout (or the kind's default) as a hard
/// deadline and returns its outcome. Never panics on target behaviour.
pub async fn execute<C: Check + Sync>(check: &C, ctx: &ProbeContext) -> Outcome {
    execute_within(check, ctx, ctx.timeout).await
}

/// Like [`execute`] with an explicit deadline (`None`: the kind's default).
pub async fn execute_within<C: Check + Sync>(
    check: &C,
    ctx: &ProbeContext,
    timeout: Option<Duration>,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + timeout.unwrap_or(C::DEFAULT_TIMEOUT);
    let mut probe = Probe::new(ctx, deadline);
    // Steps enforce the deadline themselves; this outer bound only catches
    // work done outside a step.
    let mut finding = match tokio::time::timeout_at(deadline, check.run(&mut probe)).await {
        Ok(Ok(f)) | Ok(Err(f)) => f,
        Err(_) => Finding::fail(FailureClass::Timeout, "no result before the deadline"),
    };
    if let Some(q) = check.authoritative(&probe) {
        finding = authoritative::judge(&mut probe, q, finding).await;
    }
    let mut outcome = Outcome::new(
        C::KIND.name(),
        &check.target(),
        finding.status,
        finding.class,
        finding.message,
    );
    outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    outcome.phases = probe.phases;
    outcome.details = probe.details;
    // The TTL of every answer, so a reader knows how long resolvers may
    // keep serving what this run saw.
    let ttls = probe
        .resolver
        .as_ref()
        .map(Resolver::ttls)
        .unwrap_or_default();
    if !ttls.is_empty() {
        outcome
            .details
            .insert("ttl".into(), serde_json::json!(ttls));
    }
    outcome
}

/// Runs `spec` under the context's deadline.
pub async fn run(spec: &CheckSpec, ctx: &ProbeContext) -> Outcome {
    run_within(spec, ctx, ctx.timeout).await
}

/// Runs `spec` under `timeout` (`None`: the kind's default).
pub async fn run_within(
    spec: &CheckSpec,
    ctx: &ProbeContext,
    timeout: Option<Duration>,
) -> Outcome {
    match spec {
        CheckSpec::Smtp(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Tls(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Dns(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Mx(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Ptr(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Tcp(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Spf(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Dkim(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Dmarc(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Dnsbl(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Delivery(c) => execute_within(c.as_ref(), ctx, timeout).await,
        CheckSpec::MtaSts(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::TlsRpt(c) => execute_within(c, ctx, timeout).await,
        CheckSpec::Dane(c) => execute_within(c, ctx, timeout).await,
    }
}
