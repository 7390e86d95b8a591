//! `smtp`: connect, banner, EHLO, STARTTLS (+ EHLO again), QUIT.
//!
//! `--tls auto` picks by port: 465 implicit TLS, 587 STARTTLS required,
//! anything else (25) opportunistic STARTTLS.

pub mod reply;
pub mod session;

use std::time::Duration;

use rustls::pki_types::ServerName;
use vantage_common::FailureClass;

use self::reply::Reply;
use self::session::Session;
use vantage_common::spec::Kind;

use super::{Check, CheckResult, Finding, Probe};
use crate::net;

pub use vantage_common::spec::smtp::{DEFAULT_HELO, SmtpCheck, TlsMode, Transport};

/// An SMTP dialogue brought up to the point where mail could be sent.
#[derive(Debug)]
pub struct Dialogue {
    /// The live session (TLS if it was negotiated).
    pub session: Session,
    /// The last EHLO reply (after STARTTLS when TLS was started).
    pub ehlo: Reply,
}

/// Connects, reads the banner, says EHLO and negotiates TLS as `transport`
/// asks, recording phases and details on `probe`.
pub async fn open(
    probe: &mut Probe<'_>,
    host: &str,
    port: u16,
    transport: Transport,
    helo: &str,
    sni: &ServerName<'static>,
) -> Result<Dialogue, Finding> {
    let addr = probe.endpoint(host, port).await?;
    let source = probe.ctx.source_address;
    let tcp = probe.step("connect", net::connect(addr, source)).await?;
    let mut session = if transport == Transport::Implicit {
        let s = probe.step("tls", Session::implicit_tls(tcp, sni)).await?;
        record_tls(probe, &s);
        s
    } else {
        Session::plain(tcp)
    };

    let banner = probe.step("banner", session.read_reply()).await?;
    probe.detail("banner", banner.first_line());
    if banner.code != 220 {
        return Err(Finding::fail(
            FailureClass::Protocol,
            format!("banner is not 220: {}", banner.first_line()),
        ));
    }

    let ehlo_cmd = format!("EHLO {helo}");
    let mut ehlo = probe.step("ehlo", session.command(&ehlo_cmd)).await?;
    if !ehlo.is_positive() {
        return Err(Finding::fail(
            FailureClass::Protocol,
            format!("EHLO rejected: {}", ehlo.first_line()),
        ));
    }
    let offered = extensions(&ehlo)
        .iter()
        .any(|e| e.eq_ignore_ascii_case("STARTTLS"));
    if transport != Transport::Implicit {
        probe.detail("starttls", offered);
    }

    let wants_tls = matches!(transport, Transport::Opportunistic | Transport::Required);
    if transport == Transport::Required && !offered {
        return Err(Finding::fail(
            FailureClass::Policy,
            format!("STARTTLS is required on port {port} but not offered"),
        ));
    }
    if wants_tls && offered {
        let reply = probe.step("starttls", session.command("STARTTLS")).await?;
        if reply.code != 220 {
            let msg = format!("STARTTLS offered but refused: {}", reply.first_line());
            return Err(if transport == Transport::Required {
                Finding::fail(FailureClass::Policy, msg)
            } else {
                Finding::warn(FailureClass::Policy, msg)
            });
        }
        session = probe.step("tls", session.start_tls(sni)).await?;
        record_tls(probe, &session);
        ehlo = probe.step("ehlo_tls", session.command(&ehlo_cmd)).await?;
        if !ehlo.is_positive() {
            return Err(Finding::fail(
                FailureClass::Protocol,
                format!("EHLO after STARTTLS rejected: {}", ehlo.first_line()),
            ));
        }
    }
    Ok(Dialogue { session, ehlo })
}

/// Says QUIT and waits for the reply; a server that drops the connection
/// instead is tolerated (the dialogue already succeeded).
pub async fn quit(probe: &mut Probe<'_>, dialogue: &mut Dialogue) {
    if let Ok(reply) = probe.step("quit", dialogue.session.command("QUIT")).await {
        probe.detail("quit", reply.first_line());
    }
}

fn record_tls(probe: &mut Probe<'_>, session: &Session) {
    if let Some(tls) = session.tls() {
        probe.detail("tls_version", tls.version.clone());
        probe.detail("tls_cipher", tls.cipher.clone());
    }
}

/// EHLO keywords with their parameters (`SIZE 35882577`, `AUTH PLAIN LOGIN`).
fn extensions(ehlo: &Reply) -> Vec<String> {
    ehlo.lines
        .iter()
        .skip(1)
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// SNI / certificate name for a target: the explicit name, else the host.
pub fn tls_server_name(host: &str, tls_name: Option<&str>) -> Result<ServerName<'static>, Finding> {
    net::server_name(tls_name.unwrap_or(host.trim_start_matches('[').trim_end_matches(']')))
}

impl Check for SmtpCheck {
    const KIND: Kind = Kind::Smtp;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

    fn target(&self) -> String {
        super::host_port(&self.host, self.port)
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let transport = self.tls.transport(self.port);
        let sni = tls_server_name(&self.host, self.tls_name.as_deref())?;
        probe.detail("helo", self.helo.clone());
        let started = tokio::time::Instant::now();
        let mut dialogue = open(probe, &self.host, self.port, transport, &self.helo, &sni).await?;

        let exts = extensions(&dialogue.ehlo);
        let auth: Vec<String> = exts
            .iter()
            .filter_map(|e| {
                let (kw, rest) = e.split_once(' ')?;
                kw.eq_ignore_ascii_case("AUTH").then_some(rest)
            })
            .flat_map(|rest| rest.split_whitespace().map(str::to_owned))
            .collect();
        let size = exts.iter().find_map(|e| {
            let (kw, rest) = e.split_once(' ')?;
            kw.eq_ignore_ascii_case("SIZE")
                .then(|| rest.trim().parse::<u64>().ok())
                .flatten()
        });
        probe.detail("extensions", exts.clone());
        probe.detail("auth", auth);
        if let Some(size) = size {
            probe.detail("size", size);
        }
        quit(probe, &mut dialogue).await;

        let tls = match dialogue.session.tls() {
            Some(t) => format!(", {}", t.version),
            None => String::new(),
        };
        let took = started.elapsed();
        let summary = format!(
            "{}{tls}, {} extensions",
            probe.detail_str("banner").unwrap_or_default(),
            exts.len()
        );
        if took > Duration::from_millis(self.degraded_ms) {
            return Ok(Finding::warn(
                FailureClass::Timeout,
                format!(
                    "slow: {} ms > {} ms ({summary})",
                    took.as_millis(),
                    self.degraded_ms
                ),
            ));
        }
        Ok(Finding::pass(summary))
    }
}
