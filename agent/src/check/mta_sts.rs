//! `mta-sts` (RFC 8461) and `tlsrpt` (RFC 8460): is the domain's mail
//! transport protected, and does it ask for reports?
//!
//! `mta-sts`: the `_mta-sts` TXT record (one, `v=STSv1`, an `id`), the
//! policy fetched from `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! (certificate verified, no redirect followed, at most 64 KiB), parsed
//! (version, mode, mx patterns, max_age), and every MX host held to it:
//! its name matches a pattern and it presents, after STARTTLS, a
//! certificate valid for that name. `testing` warns; a mismatch under
//! `enforce` fails (policy); no policy passes saying so unless `require`.

use std::time::Duration;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::mta_sts::{MtaSts, ReportUri, TlsRpt};
use serde_json::json;
use vantage_common::FailureClass;
use vantage_common::spec::{Kind, is_mail_address};

use super::{Check, CheckResult, Finding, Probe, single_record, smtp};
use crate::{https, net};

pub use vantage_common::spec::mta_sts::{MtaStsCheck, TlsRptCheck};

/// Largest policy accepted (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY: usize = 64 * 1024;
/// Longest `max_age` a policy may set (RFC 8461 §3.2: about a year).
pub const MAX_AGE: u64 = 31_557_600;

/// A policy's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Senders refuse MX hosts that do not match.
    Enforce,
    /// Senders deliver anyway and report.
    Testing,
    /// The policy is withdrawn.
    None,
}

/// A parsed policy file (RFC 8461 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `mode`.
    pub mode: Mode,
    /// `mx` patterns, in order.
    pub mx: Vec<String>,
    /// `max_age`, seconds.
    pub max_age: u64,
}

impl Policy {
    /// Parses a policy file: `key: value` lines (CRLF or LF); `version`,
    /// `mode` and `max_age` required, `mx` too unless the mode is `none`;
    /// unknown keys ignored.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let (mut version, mut mode, mut max_age) = (None, None, None);
        let mut mx = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| format!("line {line:?} is not `key: value`"))?;
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_owned()),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("unknown mode {other:?}")),
                    });
                }
                "max_age" => {
                    let age: u64 = value
                        .parse()
                        .map_err(|_| format!("max_age {value:?} is not a number"))?;
                    if age > MAX_AGE {
                        return Err(format!("max_age {age} is more than {MAX_AGE}"));
                    }
                    max_age = Some(age);
                }
                "mx" => mx.push(value.to_ascii_lowercase()),
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err("version is not STSv1".into());
        }
        let mode = mode.ok_or("no mode")?;
        let max_age = max_age.ok_or("no max_age")?;
        if mx.is_empty() && mode != Mode::None {
            return Err("no mx pattern".into());
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// The pattern `host` matches: the same name, or `*.` plus the rest
    /// of it after exactly one label (RFC 8461 §4.1).
    pub fn pattern_for(&self, host: &str) -> Option<&str> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .find(|p| match p.strip_prefix("*.") {
                Some(rest) => host
                    .split_once('.')
                    .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
                None => **p == host,
            })
            .map(String::as_str)
    }
}

/// The TXT records at `name` that start with `version` (a name that does
/// not exist has none). None at all ends the check: a pass saying so, or
/// a failure when `require`d.
async fn versioned(
    probe: &mut Probe<'_>,
    name: &str,
    version: &str,
    what: &str,
    require: bool,
) -> Result<Vec<String>, Finding> {
    let resolver = probe.resolver()?;
    let txt = probe
        .step("txt", async {
            match resolver.txt(name).await {
                Ok(txt) => Ok(txt),
                Err(e) if e.is_absent() => Ok(Vec::new()),
                Err(e) => Err(e.finding()),
            }
        })
        .await?;
    let records: Vec<String> = txt.into_iter().filter(|t| t.starts_with(version)).collect();
    if !records.is_empty() {
        return Ok(records);
    }
    Err(if require {
        Finding::fail(FailureClass::Policy, format!("no {what} record at {name}"))
    } else {
        Finding::pass(format!("no {what} ({name} has no {version} record)"))
    })
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Testing => "testing",
        Mode::None => "none",
    }
}

/// What an MX host shows under the policy: the pattern it matches and
/// whether its certificate is valid for its name (else why not).
async fn mx_host(
    probe: &mut Probe<'_>,
    check: &MtaStsCheck,
    policy: &Policy,
    host: &str,
) -> (serde_json::Value, Option<String>) {
    let pattern = policy.pattern_for(host).map(str::to_owned);
    let certificate = async {
        let chain = smtp::presented_chain(probe, host, check.port).await?;
        let sni = smtp::tls_server_name(host, None)?;
        let roots = net::trust_roots(check.ca_file.as_deref())?;
        net::verify_chain(&chain, &sni, roots)
    }
    .await;
    let problem = match (&pattern, &certificate) {
        (None, _) => Some(format!("{host} matches no mx pattern")),
        (Some(_), Err(f)) => Some(format!("{host}: {}", f.message)),
        (Some(_), Ok(())) => None,
    };
    let certificate = match certificate {
        Ok(()) => "valid".to_owned(),
        Err(f) => f.message,
    };
    (
        json!({"host": host, "pattern": pattern, "certificate": certificate}),
        problem,
    )
}

impl Check for MtaStsCheck {
    const KIND: Kind = Kind::MtaSts;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    fn target(&self) -> String {
        self.domain.clone()
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let domain = self.domain.trim_end_matches('.').to_ascii_lowercase();
        let resolver = probe.resolver()?;
        let record_name = format!("_mta-sts.{domain}");
        let records = versioned(probe, &record_name, "v=STSv1", "MTA-STS", self.require).await?;
        let record = single_record(probe, records, "MTA-STS", &record_name)?;
        let id = MtaSts::parse(record.as_bytes())
            .map(|r| r.id)
            .ok()
            .filter(|id| (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| {
                Finding::fail(
                    FailureClass::Policy,
                    format!("MTA-STS record at {record_name} is malformed (v=STSv1; id=1-32 letters and digits): {record}"),
                )
            })?;
        probe.detail("id", id);

        let policy_host = format!("mta-sts.{domain}");
        let addr = probe.endpoint(&policy_host, 443).await?;
        probe.rename_detail("address", "policy_address");
        let roots = net::trust_roots(self.ca_file.as_deref())?;
        let source = probe.ctx.source_address;
        let path = "/.well-known/mta-sts.txt";
        let fetched = probe
            .step(
                "policy",
                https::get(addr, source, &policy_host, path, roots, MAX_POLICY),
            )
            .await
            .map_err(|f| Finding {
                message: format!("policy https://{policy_host}{path}: {}", f.message),
                ..f
            })?;
        if (300..400).contains(&fetched.status) {
            return Err(Finding::fail(
                FailureClass::Policy,
                format!(
                    "policy https://{policy_host}{path} redirects (HTTP {} to {}); senders do not follow redirects",
                    fetched.status,
                    fetched.location.as_deref().unwrap_or("nowhere")
                ),
            ));
        }
        if fetched.status != 200 {
            return Err(Finding::fail(
                FailureClass::Policy,
                format!(
                    "policy https://{policy_host}{path}: HTTP {}",
                    fetched.status
                ),
            ));
        }
        let text = String::from_utf8_lossy(&fetched.body);
        let policy = Policy::parse(&text).map_err(|e| {
            Finding::fail(
                FailureClass::Policy,
                format!("policy https://{policy_host}{path} is malformed: {e}"),
            )
        })?;
        probe.detail("mode", mode_name(policy.mode));
        probe.detail("mx_patterns", policy.mx.clone());
        probe.detail("max_age", policy.max_age);
        let mut problems = Vec::new();
        let plain_text = fetched
            .content_type
            .as_deref()
            .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("text/plain"));
        if !plain_text {
            problems.push(format!(
                "the policy is served as {:?}, not text/plain",
                fetched.content_type.unwrap_or_default()
            ));
        }

        if policy.mode == Mode::None {
            return Ok(Finding::pass(format!(
                "MTA-STS mode none: the policy is withdrawn (id {})",
                probe.detail_str("id").unwrap_or_default()
            )));
        }
        let hosts: Vec<String> = probe
            .step("mx", async {
                resolver.mx_hosts(&domain).await.map_err(|e| e.finding())
            })
            .await?;
        let mut seen = Vec::new();
        for host in &hosts {
            let (detail, problem) = mx_host(probe, self, &policy, host).await;
            seen.push(detail);
            problems.extend(problem);
        }
        probe.detail("mx", seen);
        probe.rename_detail("address", "last_mx_address");
        if hosts.is_empty() {
            problems.push(format!("{domain} has no MX host"));
        }

        let summary = format!(
            "MTA-STS {}, {} MX host(s), max_age {}",
            mode_name(policy.mode),
            hosts.len(),
            policy.max_age
        );
        Ok(match (policy.mode, problems.is_empty()) {
            (Mode::Enforce, true) => Finding::pass(summary),
            (Mode::Enforce, false) => Finding::fail(
                FailureClass::Policy,
                format!("{summary}: {}", problems.join("; ")),
            ),
            (_, true) => Finding::warn(
                FailureClass::Policy,
                format!("{summary}: testing only, senders do not enforce it"),
            ),
            (_, false) => Finding::warn(
                FailureClass::Policy,
                format!(
                    "{summary}: testing only; under enforce: {}",
                    problems.join("; ")
                ),
            ),
        })
    }
}

/// A TLS-RPT `rua` URI's fault, if any.
fn bad_uri(uri: &ReportUri) -> Option<String> {
    match uri {
        ReportUri::Mail(address) => {
            (!is_mail_address(address)).then(|| format!("mailto:{address} is not a mail address"))
        }
        ReportUri::Http(url) => {
            let host = url
                .strip_prefix("https://")
                .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""))
                .unwrap_or("");
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            (!vantage_common::spec::is_domain_name(host, false))
                .then(|| format!("{url} is not an https URL with a host name"))
        }
    }
}

impl Check for TlsRptCheck {
    const KIND: Kind = Kind::TlsRpt;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn target(&self) -> String {
        self.domain.clone()
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let domain = self.domain.trim_end_matches('.').to_ascii_lowercase();
        let name = format!("_smtp._tls.{domain}");
        let records = versioned(probe, &name, "v=TLSRPTv1", "TLS-RPT", self.require).await?;
        let record = single_record(probe, records, "TLS-RPT", &name)?;
        let parsed = TlsRpt::parse(record.as_bytes()).map_err(|_| {
            Finding::fail(
                FailureClass::Policy,
                format!("TLS-RPT record at {name} is malformed (v=TLSRPTv1; rua=mailto:...|https://...): {record}"),
            )
        })?;
        let rua: Vec<String> = parsed
            .rua
            .iter()
            .map(|u| match u {
                ReportUri::Mail(m) => format!("mailto:{m}"),
                ReportUri::Http(h) => h.clone(),
            })
            .collect();
        probe.detail("rua", rua.clone());
        let bad: Vec<String> = parsed.rua.iter().filter_map(bad_uri).collect();
        if !bad.is_empty() {
            return Ok(Finding::fail(
                FailureClass::Policy,
                format!("TLS-RPT record at {name}: {}", bad.join("; ")),
            ));
        }
        Ok(Finding::pass(format!(
            "TLS-RPT reports go to {}",
            rua.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_patterns_match_one_label() {
        let p = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert_eq!(p.pattern_for("MAIL.example.org."), Some("mail.example.org"));
        assert_eq!(p.pattern_for("mx1.example.net"), Some("*.example.net"));
        assert_eq!(p.pattern_for("a.b.example.net"), None);
        assert_eq!(p.pattern_for("example.net"), None);
        for bad in [
            "mode: enforce\nmx: a\nmax_age: 1",
            "version: STSv1\nmode: sometimes\nmx: a\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmx: a\nmax_age: 99999999999",
            "version: STSv1\nmode: enforce\nmx: a",
            "<html>not a policy</html>",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
        assert!(Policy::parse("version: STSv1\nmode: none\nmax_age: 0").is_ok());
    }
}
