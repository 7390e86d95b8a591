//! `smtp`: connect, banner, EHLO, STARTTLS (+ EHLO again), then when asked
//! AUTH (`auth.rs`) and the acceptance step (MAIL FROM, RCPT TO for each
//! recipient, RSET: never DATA), QUIT.
//!
//! `--tls auto` picks by port: 465 implicit TLS, 587 STARTTLS required,
//! anything else (25) opportunistic STARTTLS.

pub mod auth;
pub mod reply;
pub mod session;

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use vantage_common::{FailureClass, Status};

use self::auth::Mechanism;
use self::reply::Reply;
use self::session::Session;
use vantage_common::secret::{Secret, SecretError};
use vantage_common::spec::Kind;

use super::posture::{self, Posture};
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
    /// Where it is connected.
    pub addr: SocketAddr,
    /// AUTH was advertised before STARTTLS, which was offered too.
    pub auth_before_tls: bool,
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
    let auth_before_tls = offered && !auth_mechanisms(&extensions(&ehlo)).is_empty();
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
    Ok(Dialogue {
        session,
        ehlo,
        addr,
        auth_before_tls,
    })
}

/// The certificate chain `host:port` presents after EHLO and STARTTLS
/// (required), as [`open`] records it, for the name `host`; the dialogue
/// then ends with QUIT, so the server logs a polite client.
pub async fn presented_chain(
    probe: &mut Probe<'_>,
    host: &str,
    port: u16,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, Finding> {
    let sni = tls_server_name(host, None)?;
    let mut dialogue = open(probe, host, port, Transport::Required, DEFAULT_HELO, &sni).await?;
    quit(probe, &mut dialogue).await;
    Ok(dialogue
        .session
        .tls()
        .map(|t| t.chain.clone())
        .unwrap_or_default())
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

/// The mechanisms an AUTH extension offers (`AUTH PLAIN LOGIN`).
fn auth_mechanisms(exts: &[String]) -> Vec<String> {
    exts.iter()
        .filter_map(|e| {
            let (kw, rest) = e.split_once(' ')?;
            kw.eq_ignore_ascii_case("AUTH").then_some(rest)
        })
        .flat_map(|rest| rest.split_whitespace().map(str::to_owned))
        .collect()
}

/// Who logs in, and what the server must prove first.
#[derive(Debug)]
pub struct Login<'a> {
    /// The user name.
    pub user: &'a str,
    /// Where the password is read.
    pub password: &'a Secret,
    /// Trust anchors for the server's certificate (the system's otherwise).
    pub ca_file: Option<&'a std::path::Path>,
    /// The name the certificate must be valid for.
    pub sni: &'a ServerName<'static>,
}

/// Logs in with the strongest mechanism offered after TLS, recording
/// `details.auth_mechanism` and `details.auth_reply`. Credentials go only
/// to a server that proved who it is: TLS is up and its certificate is
/// trusted and valid for the name (else the certificate's finding, and
/// nothing is sent). `Ok` is a login (2xx); a refusal fails (a temporary
/// one, 4xx, warns), class `auth`.
pub async fn authenticate(
    probe: &mut Probe<'_>,
    dialogue: &mut Dialogue,
    login: &Login<'_>,
) -> Result<(), Finding> {
    let Some(tls) = dialogue.session.tls() else {
        return Err(Finding::fail(
            FailureClass::Auth,
            "no TLS (STARTTLS not offered): credentials are never sent in clear",
        ));
    };
    let roots = net::trust_roots(login.ca_file)?;
    net::verify_chain(&tls.chain, login.sni, roots).map_err(|f| Finding {
        message: format!("{}: credentials not sent", f.message),
        ..f
    })?;
    let offered = auth_mechanisms(&extensions(&dialogue.ehlo));
    if offered.is_empty() {
        return Err(Finding::fail(
            FailureClass::Auth,
            "AUTH is not offered after TLS",
        ));
    }
    let Some(mechanism) = Mechanism::strongest(&offered) else {
        return Err(Finding::fail(
            FailureClass::Auth,
            format!(
                "no AUTH mechanism the agent speaks among {}",
                offered.join(" ")
            ),
        ));
    };
    probe.detail("auth_mechanism", mechanism.name());
    // The agent's own configuration is missing: it cannot tell.
    let password = login
        .password
        .read()
        .map_err(|e| Finding::error(FailureClass::Auth, format!("password: {e}")))?;
    let exchange = auth::login(&mut dialogue.session, mechanism, login.user, &password);
    let reply = probe.step("auth", exchange).await?;
    probe.detail("auth_reply", reply.first_line());
    match reply.code {
        200..=299 => Ok(()),
        400..=499 => Err(Finding::warn(
            FailureClass::Auth,
            format!("AUTH {} deferred: {}", mechanism.name(), reply.first_line()),
        )),
        _ => Err(Finding::fail(
            FailureClass::Auth,
            format!("AUTH {} refused: {}", mechanism.name(), reply.first_line()),
        )),
    }
}

/// Logs in as `user` when one is set ([`authenticate`]); true when it did.
/// A password that cannot be read is an `error`: this vantage cannot tell.
pub async fn log_in(
    probe: &mut Probe<'_>,
    dialogue: &mut Dialogue,
    user: Option<&str>,
    password: Result<Option<Secret>, SecretError>,
    ca_file: Option<&std::path::Path>,
    sni: &ServerName<'static>,
) -> Result<bool, Finding> {
    let password =
        password.map_err(|e| Finding::error(FailureClass::Auth, format!("password: {e}")))?;
    let (Some(user), Some(password)) = (user, password) else {
        return Ok(false);
    };
    let login = Login {
        user,
        password: &password,
        ca_file,
        sni,
    };
    authenticate(probe, dialogue, &login).await?;
    Ok(true)
}

/// One reply as details record it: code, enhanced status code, text.
fn reply_detail(reply: &Reply) -> serde_json::Value {
    let text = reply.lines.join(" ");
    let enhanced = text.split_whitespace().next().filter(|word| {
        let parts: Vec<&str> = word.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    });
    serde_json::json!({"code": reply.code, "enhanced": enhanced, "text": text})
}

/// A non-2xx reply to an envelope command, judged: 4xx (deferred,
/// greylisted) warns, anything else fails, class `policy`, quoted.
pub fn envelope_refusal(command: &str, reply: &Reply) -> Finding {
    if (400..500).contains(&reply.code) {
        Finding::warn(
            FailureClass::Policy,
            format!("{command} deferred: {}", reply.first_line()),
        )
    } else {
        Finding::fail(
            FailureClass::Policy,
            format!("{command} refused: {}", reply.first_line()),
        )
    }
}

/// The acceptance step: MAIL FROM:<`sender`>, RCPT TO for each recipient,
/// then RSET (never DATA), recorded in `details.mail_from` and
/// `details.rcpt` (per recipient its address, code, enhanced code and
/// text). `None` when every recipient was accepted (250/251); else the
/// worst refusal (5xx before 4xx, the first of its kind).
pub async fn accept(
    probe: &mut Probe<'_>,
    dialogue: &mut Dialogue,
    sender: &str,
    recipients: &[String],
) -> Result<Option<Finding>, Finding> {
    let mail = format!("MAIL FROM:<{sender}>");
    let reply = probe
        .step("mail_from", dialogue.session.command(&mail))
        .await?;
    probe.detail("mail_from", reply_detail(&reply));
    let mut worst: Option<Finding> = None;
    if reply.is_positive() {
        let mut details = Vec::with_capacity(recipients.len());
        for address in recipients {
            let rcpt = format!("RCPT TO:<{address}>");
            let reply = probe.step("rcpt", dialogue.session.command(&rcpt)).await?;
            let mut detail = reply_detail(&reply);
            detail["address"] = address.as_str().into();
            details.push(detail);
            if !matches!(reply.code, 250 | 251) {
                let refusal = envelope_refusal(&rcpt, &reply);
                if worst.as_ref().is_none_or(|w| refusal.status > w.status) {
                    worst = Some(refusal);
                }
            }
        }
        probe.detail("rcpt", details);
    } else {
        worst = Some(envelope_refusal(&mail, &reply));
    }
    // The transaction is abandoned either way; a server that drops the
    // connection here has already answered what was asked.
    if let Ok(reply) = probe.step("rset", dialogue.session.command("RSET")).await {
        probe.detail("rset", reply.first_line());
    }
    Ok(worst)
}

/// Where and how TLS was reached, for the posture's legacy test.
#[derive(Debug)]
pub struct Reached<'a> {
    /// The server's address.
    pub addr: SocketAddr,
    /// TLS from the first byte (else after EHLO and STARTTLS).
    pub implicit: bool,
    /// Name sent in EHLO.
    pub helo: &'a str,
    /// SNI.
    pub sni: &'a ServerName<'static>,
    /// AUTH was advertised before STARTTLS, which was offered too.
    pub auth_before_tls: bool,
}

impl<'a> Reached<'a> {
    /// How `dialogue` reached the server.
    pub fn by(
        dialogue: &Dialogue,
        implicit: bool,
        helo: &'a str,
        sni: &'a ServerName<'static>,
    ) -> Self {
        Reached {
            addr: dialogue.addr,
            implicit,
            helo,
            sni,
            auth_before_tls: dialogue.auth_before_tls,
        }
    }
}

/// Whether the server accepts TLS 1.0/1.1, tried on a connection of its
/// own (after EHLO and STARTTLS unless implicit), as step `legacy_tls`,
/// at most once an hour per endpoint in a process (an answer within the
/// hour is reused: `details.legacy_tls_reused`). Recorded in
/// `details.legacy_tls`: the version accepted, `refused`, or why it could
/// not tell (which is no weakness, and not reused).
pub async fn legacy_tls(probe: &mut Probe<'_>, at: &Reached<'_>) -> Option<&'static str> {
    let source = probe.ctx.source_address;
    let name = match at.sni {
        ServerName::DnsName(n) => Some(n.as_ref().to_owned()),
        _ => None,
    };
    let key = (at.addr, at.implicit, name.clone());
    if let Some(accepted) = probe.ctx.legacy_tls(&key) {
        probe.detail("legacy_tls", accepted.unwrap_or("refused"));
        probe.detail("legacy_tls_reused", true);
        return accepted;
    }
    let attempt = async {
        let tcp = net::connect(at.addr, source).await?;
        let mut io: Box<dyn session::Io> = if at.implicit {
            Box::new(tcp)
        } else {
            let mut s = Session::plain(tcp);
            let banner = s.read_reply().await?;
            let ehlo = s.command(&format!("EHLO {}", at.helo)).await?;
            let starttls = s.command("STARTTLS").await?;
            if banner.code != 220 || !ehlo.is_positive() || starttls.code != 220 {
                return Err(Finding::error(FailureClass::Protocol, "STARTTLS refused"));
            }
            s.into_raw()?
        };
        posture::accepts_legacy(&mut io, name.as_deref())
            .await
            .map_err(|e| Finding::error(FailureClass::Tls, e))
    };
    match probe.step("legacy_tls", attempt).await {
        Ok(accepted) => {
            probe.ctx.remember_legacy_tls(key, accepted);
            probe.detail("legacy_tls", accepted.unwrap_or("refused"));
            accepted
        }
        Err(f) => {
            probe.detail("legacy_tls", format!("unknown: {}", f.message));
            None
        }
    }
}

/// Records what the chain is made of and the weaknesses `rules` find
/// (`details.posture`), runs the legacy test unless the finding already
/// fails, and judges `finding`: a pass with weaknesses becomes a warning.
pub async fn judge_posture(
    probe: &mut Probe<'_>,
    at: &Reached<'_>,
    chain: Option<&posture::Chain>,
    rules: &Posture,
    finding: Finding,
) -> Finding {
    if let Some(chain) = chain {
        probe.detail("tls_key", chain.key.clone());
        probe.detail("tls_signature", chain.signature.clone());
        if let Some(t) = chain.not_after {
            probe.detail(vantage_common::outcome::CERT_NOT_AFTER, t);
        }
    }
    let failing = matches!(finding.status, Status::Fail | Status::Error);
    let legacy = if chain.is_some() && rules.legacy_tls && !failing {
        legacy_tls(probe, at).await
    } else {
        None
    };
    let weak = posture::weaknesses(rules, chain, legacy, at.auth_before_tls);
    if !weak.is_empty() {
        probe.detail("posture", weak.clone());
    }
    finding.weakened(FailureClass::Tls, &weak)
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
        let auth = auth_mechanisms(&exts);
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
        let mut done = Vec::new();
        let login = self.username.as_deref();
        let password = self.password();
        if log_in(
            probe,
            &mut dialogue,
            login,
            password,
            self.ca_file.as_deref(),
            &sni,
        )
        .await?
        {
            done.push(format!(
                "logged in ({})",
                probe.detail_str("auth_mechanism").unwrap_or_default()
            ));
        }
        let mut refused = None;
        if !self.rcpt.is_empty() {
            refused = accept(probe, &mut dialogue, self.sender(), &self.rcpt).await?;
            if refused.is_none() {
                done.push(format!("{} recipient(s) accepted", self.rcpt.len()));
            }
        }
        quit(probe, &mut dialogue).await;

        let tls = match dialogue.session.tls() {
            Some(t) => format!(", {}", t.version),
            None => String::new(),
        };
        let took = started.elapsed();
        let summary = format!(
            "{}{tls}, {} extensions{}",
            probe.detail_str("banner").unwrap_or_default(),
            exts.len(),
            done.iter().map(|d| format!(", {d}")).collect::<String>()
        );
        let finding = if let Some(refused) = refused {
            refused
        } else if took > Duration::from_millis(self.degraded_ms) {
            Finding::warn(
                FailureClass::Timeout,
                format!(
                    "slow: {} ms > {} ms ({summary})",
                    took.as_millis(),
                    self.degraded_ms
                ),
            )
        } else {
            Finding::pass(summary)
        };
        let implicit = transport == Transport::Implicit;
        let at = Reached::by(&dialogue, implicit, &self.helo, &sni);
        let chain = dialogue.session.tls().map(|t| posture::chain(&t.chain));
        Ok(judge_posture(probe, &at, chain.as_ref(), &self.posture, finding).await)
    }
}
