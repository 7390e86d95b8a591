//! `delivery`: does mail flow? A message carrying a unique token (header
//! `X-Vantage-Probe`, also in the subject) is submitted through `submit`
//! (TLS and login as the `smtp` check does them), then watched for in the
//! mailbox over IMAP (`imap.rs`), with IDLE where the server offers it,
//! else every 2 s, until it arrives or the deadline draws near. On arrival
//! its `Received` hops and the receiver's `Authentication-Results` are
//! read, and it is deleted with every older probe message of this vantage
//! and check, so the mailbox stays clean.
//!
//! Connection failures while watching are retried until the deadline (an
//! IMAP server that restarts is no lost message); a refused IMAP login or
//! an untrusted certificate ends the run at once.

pub mod imap;

use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::time::Instant;
use vantage_common::FailureClass;
use vantage_common::spec::Kind;
use vantage_common::spec::delivery::split_host_port;

use self::imap::Imap;
use super::smtp;
use super::{Check, CheckResult, Finding, Probe};
use crate::net;

pub use vantage_common::spec::delivery::{DeliveryCheck, ImapTls};

/// Largest probe message.
pub const MAX_MESSAGE: usize = 8 * 1024;
/// How often the mailbox is searched where IDLE is not offered.
pub const POLL: Duration = Duration::from_secs(2);
/// Longest single IDLE before searching again (a lost notification costs
/// at most this).
pub const IDLE_SLICE: Duration = Duration::from_secs(10);
/// Longest attempt to open a mailbox session (connect, TLS, greeting,
/// login, SELECT) before it counts as trouble and is tried again.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Most `Received` headers reported.
const MAX_HOPS: usize = 20;

/// The header that marks probe messages.
const HEADER: &str = "X-Vantage-Probe";

fn random_hex(bytes: usize) -> Result<String, Finding> {
    let mut raw = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| Finding::error(FailureClass::Protocol, "no randomness for a token"))?;
    Ok(hex(&raw))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What marks `check`'s messages from this vantage: older ones (arrived
/// after their run gave up) are deleted by the next run, and no other
/// check's or vantage's.
fn origin(check: &DeliveryCheck, vantage: &str) -> String {
    let key = format!(
        "{vantage}\0{}\0{}\0{}\0{}",
        check.submit, check.to, check.imap, check.mailbox
    );
    let hash = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    format!("vantage-{}", hex(&hash.as_ref()[..8]))
}

/// The probe message, CRLF-free (the session adds line ends).
fn message(check: &DeliveryCheck, token: &str) -> String {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let message = format!(
        "From: <{from}>\nTo: <{to}>\nSubject: vantage delivery probe {token}\nDate: {date}\n\
             Message-ID: <{token}@vantage.invalid>\n{HEADER}: {token}\nAuto-Submitted: auto-generated\n\
             MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n\
             vantage sent this message to measure how long mail takes to arrive here.\n\
             It deletes it as soon as it sees it.\n",
        from = check.sender(),
        to = check.to,
    );
    message.chars().take(MAX_MESSAGE).collect()
}

/// Submits `message`: connect, TLS, login when set, MAIL, RCPT, DATA.
async fn submit(
    probe: &mut Probe<'_>,
    check: &DeliveryCheck,
    message: &str,
) -> Result<(), Finding> {
    let (host, port) = split_host_port(&check.submit)
        .ok_or_else(|| Finding::error(FailureClass::Protocol, "submit is not host:port"))?;
    let transport = check.submit_tls.transport(port);
    let sni = smtp::tls_server_name(&host, check.submit_tls_name.as_deref())?;
    let mut dialogue = smtp::open(probe, &host, port, transport, &check.helo, &sni).await?;
    let user = check.username.as_deref();
    let ca_file = check.ca_file.as_deref();
    smtp::log_in(probe, &mut dialogue, user, check.password(), ca_file, &sni).await?;
    let session = &mut dialogue.session;
    let mail = format!("MAIL FROM:<{}>", check.sender());
    let reply = probe.step("mail_from", session.command(&mail)).await?;
    if !reply.is_positive() {
        return Err(smtp::envelope_refusal(&mail, &reply));
    }
    let rcpt = format!("RCPT TO:<{}>", check.to);
    let reply = probe.step("rcpt", session.command(&rcpt)).await?;
    if !matches!(reply.code, 250 | 251) {
        return Err(smtp::envelope_refusal(&rcpt, &reply));
    }
    let reply = probe.step("data", session.command("DATA")).await?;
    if reply.code != 354 {
        return Err(smtp::envelope_refusal("DATA", &reply));
    }
    let reply = probe.step("message", session.send_message(message)).await?;
    probe.detail("queued", reply.first_line());
    if !reply.is_positive() {
        return Err(smtp::envelope_refusal("the message", &reply));
    }
    smtp::quit(probe, &mut dialogue).await;
    Ok(())
}

/// What watching the mailbox came to.
enum Watched {
    /// The message is there (its UID), at this instant.
    Arrived(u32, Instant),
    /// Not by the time watching had to stop; the last trouble, if any.
    Missing(Option<String>),
}

/// How the mailbox is reached.
struct Mailbox<'a> {
    check: &'a DeliveryCheck,
    addr: std::net::SocketAddr,
    port: u16,
    source: Option<std::net::IpAddr>,
    sni: &'a ServerName<'static>,
    password: &'a str,
}

impl Mailbox<'_> {
    /// A session: connected, the certificate verified, logged in, the
    /// folder selected.
    async fn open(&self) -> Result<Imap, Finding> {
        let check = self.check;
        let tcp = net::connect(self.addr, self.source).await?;
        let mut imap = Imap::connect(tcp, check.imap_tls.implicit(self.port), self.sni).await?;
        let chain = imap.tls().map(|t| t.chain.clone()).unwrap_or_default();
        let roots = net::trust_roots(check.ca_file.as_deref())?;
        net::verify_chain(&chain, self.sni, roots).map_err(|f| Finding {
            message: format!("IMAP {}: credentials not sent", f.message),
            ..f
        })?;
        imap.login(&check.imap_username, self.password)
            .await?
            .ok_or(FailureClass::Auth, "login")?;
        imap.command(&format!("SELECT \"{}\"", check.mailbox))
            .await?
            .ok_or(FailureClass::Policy, "SELECT")?;
        Ok(imap)
    }

    /// Watches until the message marked `token` is in the mailbox or
    /// `until`, in `session` (opened, and opened again after trouble).
    /// Connection trouble is retried; a refused login or an untrusted
    /// certificate (class `auth`, `tls`, `expired`) ends it at once.
    async fn watch(
        &self,
        token: &str,
        until: Instant,
        session: &mut Option<Imap>,
    ) -> Result<Watched, Finding> {
        let fatal = |f: &Finding| {
            matches!(
                f.class,
                Some(FailureClass::Auth | FailureClass::Tls | FailureClass::Expired)
            )
        };
        let search = format!("HEADER {HEADER} \"{token}\"");
        let mut trouble = None;
        loop {
            if Instant::now() >= until {
                return Ok(Watched::Missing(trouble));
            }
            let imap = match session {
                Some(imap) => imap,
                None => {
                    let attempt = until.min(Instant::now() + OPEN_TIMEOUT);
                    let failed = match tokio::time::timeout_at(attempt, self.open()).await {
                        Ok(Ok(imap)) => {
                            *session = Some(imap);
                            continue;
                        }
                        Ok(Err(f)) if fatal(&f) => return Err(f),
                        Ok(Err(f)) => f.message,
                        // Out of time: the trouble before this attempt stands.
                        Err(_) if attempt == until => return Ok(Watched::Missing(trouble)),
                        Err(_) => format!(
                            "no session within {} s (a server that does not greet: \
                             is the TLS mode right?)",
                            OPEN_TIMEOUT.as_secs()
                        ),
                    };
                    trouble = Some(failed);
                    tokio::time::sleep_until(until.min(Instant::now() + POLL)).await;
                    continue;
                }
            };
            let step = async {
                let uids = imap.search(&search).await?;
                if let Some(uid) = uids.first() {
                    return Ok(Some(*uid));
                }
                let left = until.saturating_duration_since(Instant::now());
                if imap.offers("IDLE").await? {
                    imap.idle(left.min(IDLE_SLICE)).await?;
                } else {
                    tokio::time::sleep(left.min(POLL)).await;
                    imap.command("NOOP").await?;
                }
                Ok::<_, Finding>(None)
            };
            match tokio::time::timeout_at(until, step).await {
                Ok(Ok(Some(uid))) => return Ok(Watched::Arrived(uid, Instant::now())),
                Ok(Ok(None)) => {}
                Ok(Err(f)) => {
                    trouble = Some(f.message);
                    *session = None;
                }
                Err(_) => return Ok(Watched::Missing(trouble)),
            }
        }
    }
}

/// Header fields of `raw` (folded lines joined), in order.
fn header_fields(raw: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in raw.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

/// `spf`, `dkim`, `dmarc` (and `arc`) verdicts of one
/// `Authentication-Results` value (RFC 8601): the first of each method.
fn auth_verdicts(value: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut verdicts = serde_json::Map::new();
    for part in value.split(';').skip(1) {
        let Some((method, rest)) = part.trim().split_once('=') else {
            continue;
        };
        let method = method.trim().to_ascii_lowercase();
        let result: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if ["spf", "dkim", "dmarc", "arc"].contains(&method.as_str())
            && !verdicts.contains_key(&method)
        {
            verdicts.insert(method, result.to_ascii_lowercase().into());
        }
    }
    verdicts
}

/// Reads the arrived message's `Received` and `Authentication-Results`
/// headers into details; returns how many hops it took.
async fn read_headers(probe: &mut Probe<'_>, imap: &mut Imap, uid: u32) -> Result<usize, Finding> {
    let fetch =
        format!("UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (RECEIVED AUTHENTICATION-RESULTS)])");
    let response = probe
        .step("fetch", imap.command(&fetch))
        .await?
        .ok_or(FailureClass::Protocol, "FETCH")?;
    let raw: String = response
        .untagged
        .iter()
        .filter_map(|r| {
            let text = String::from_utf8_lossy(r);
            let start = text.find("\r\n")? + 2;
            Some(text[start..].to_owned())
        })
        .collect();
    let fields = header_fields(&raw);
    let hops: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Received"))
        .take(MAX_HOPS)
        .map(|(_, v)| v.chars().take(400).collect())
        .collect();
    let count = hops.len();
    probe.detail("received", hops);
    // The topmost is the receiver's own (RFC 8601 §5).
    if let Some((_, results)) = fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Authentication-Results"))
    {
        probe.detail(
            "authentication_results",
            results.chars().take(1000).collect::<String>(),
        );
        probe.detail("auth_verdicts", auth_verdicts(results));
    }
    Ok(count)
}

/// Deletes every message of this check and vantage (`origin`), the one
/// that arrived included, and logs out. How many went is
/// `details.deleted`; trouble is `details.cleanup_error`.
async fn clean_up(probe: &mut Probe<'_>, imap: &mut Imap, origin: &str) {
    let criteria = format!("HEADER {HEADER} \"{origin}.\"");
    let work = async {
        let uids = imap.search(&criteria).await?;
        if !uids.is_empty() {
            let set = uids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            imap.command(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
                .await?
                .ok_or(FailureClass::Protocol, "STORE")?;
            let expunge = if imap.offers("UIDPLUS").await? {
                format!("UID EXPUNGE {set}")
            } else {
                "EXPUNGE".to_owned()
            };
            imap.command(&expunge)
                .await?
                .ok_or(FailureClass::Protocol, "EXPUNGE")?;
        }
        // Best effort: the server may close first.
        let _ = imap.command("LOGOUT").await;
        Ok::<usize, Finding>(uids.len())
    };
    match probe.step("cleanup", work).await {
        Ok(n) => probe.detail("deleted", n),
        Err(f) => probe.detail("cleanup_error", f.message),
    }
}

/// `850 ms`, `4.2 s`.
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

impl Check for DeliveryCheck {
    const KIND: Kind = Kind::Delivery;
    const DEFAULT_TIMEOUT: Duration = vantage_common::spec::delivery::DEFAULT_DEADLINE;

    fn target(&self) -> String {
        self.to.clone()
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let origin = origin(self, &probe.ctx.vantage);
        let token = format!("{origin}.{}", random_hex(8)?);
        probe.detail("token", token.clone());
        let password = self
            .imap_password()
            .and_then(|s| s.read())
            .map_err(|e| Finding::error(FailureClass::Auth, format!("imap password: {e}")))?;
        let (host, port) = split_host_port(&self.imap)
            .ok_or_else(|| Finding::error(FailureClass::Protocol, "imap is not host:port"))?;
        let imap_sni = smtp::tls_server_name(&host, self.imap_tls_name.as_deref())?;
        let imap_addr = probe.endpoint(&host, port).await?;
        probe.rename_detail("address", "imap_address");

        let started = Instant::now();
        submit(probe, self, &message(self, &token)).await?;
        let submitted = Instant::now();
        let submit_took = submitted - started;
        probe.detail("submit_ms", submit_took.as_millis() as u64);

        // Keep a little of the deadline to read headers and clean up.
        let left = probe.deadline().saturating_duration_since(submitted);
        let until = submitted + left.saturating_sub((left / 10).min(Duration::from_secs(5)));
        let mailbox = Mailbox {
            check: self,
            addr: imap_addr,
            port,
            source: probe.ctx.source_address,
            sni: &imap_sni,
            password: &password,
        };
        let mut session = None;
        let watched = probe
            .step("wait", mailbox.watch(&token, until, &mut session))
            .await?;
        if let Some(imap) = &session
            && !imap.capabilities.is_empty()
        {
            let idle = imap
                .capabilities
                .iter()
                .any(|c| c.eq_ignore_ascii_case("IDLE"));
            probe.detail("imap_idle", idle);
        }
        let finding = match watched {
            Watched::Arrived(uid, at) => {
                let took = at - submitted;
                probe.detail("arrival_ms", took.as_millis() as u64);
                let hops = match session.as_mut() {
                    Some(imap) => match read_headers(probe, imap, uid).await {
                        Ok(hops) => hops,
                        Err(f) => {
                            probe.detail("headers_error", f.message);
                            0
                        }
                    },
                    None => 0,
                };
                let summary = format!(
                    "arrived in {} (submitted in {}), {hops} hop(s)",
                    seconds(took),
                    seconds(submit_took),
                );
                if took > self.warn_after.duration() {
                    Finding::warn(
                        FailureClass::Timeout,
                        format!("slow: {summary}, more than {}", self.warn_after),
                    )
                } else {
                    Finding::pass(summary)
                }
            }
            Watched::Missing(trouble) => Finding::fail(
                FailureClass::Timeout,
                format!(
                    "not in {} {} after submission{}",
                    self.mailbox,
                    seconds(until - submitted),
                    trouble
                        .map(|t| format!(" (last IMAP trouble: {t})"))
                        .unwrap_or_default()
                ),
            ),
        };
        if let Some(imap) = session.as_mut() {
            clean_up(probe, imap, &origin).await;
        }
        Ok(finding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_results_verdicts_and_folded_headers() {
        let raw = "Received: from a\r\n by b; Mon, 1 Dec 2026\r\nAuthentication-Results: mx.example.org;\r\n spf=pass smtp.mailfrom=x; dkim=fail (bad sig) header.d=y;\r\n dmarc=pass header.from=z\r\n\r\n";
        let fields = header_fields(raw);
        assert_eq!(
            fields[0],
            ("Received".into(), "from a by b; Mon, 1 Dec 2026".into())
        );
        let verdicts = auth_verdicts(&fields[1].1);
        assert_eq!(verdicts["spf"], "pass");
        assert_eq!(verdicts["dkim"], "fail");
        assert_eq!(verdicts["dmarc"], "pass");
    }
}
