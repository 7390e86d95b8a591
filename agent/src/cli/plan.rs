//! From command-line arguments to what to run: per-kind target validation
//! and the check specifications.

use std::net::IpAddr;

use vantage_common::spec;

use super::{ImapTlsArg, Kind, PostureRule, ProbeArgs, TlsArg, is_domain_name};
use crate::check::CheckSpec;
use crate::check::dane::DaneCheck;
use crate::check::delivery::{DeliveryCheck, ImapTls};
use crate::check::dkim::DkimCheck;
use crate::check::dmarc::DmarcCheck;
use crate::check::dns::{DnsCheck, RecordType};
use crate::check::dnsbl::DnsblCheck;
use crate::check::domain::DomainAudit;
use crate::check::mta_sts::{MtaStsCheck, TlsRptCheck};
use crate::check::mx::MxCheck;
use crate::check::posture::Posture;
use crate::check::ptr::PtrCheck;
use crate::check::smtp::{SmtpCheck, TlsMode};
use crate::check::spf::SpfCheck;
use crate::check::tcp::TcpCheck;
use crate::check::tls::TlsCheck;
use crate::context::ProbeContext;

/// What the arguments ask to run.
#[derive(Debug)]
pub enum Plan {
    /// One check.
    Single(CheckSpec),
    /// The domain audit.
    Audit(DomainAudit),
}

impl ProbeArgs {
    /// Validates the target and options for the kind and builds the plan.
    /// The error is one line naming the bad value.
    pub fn plan(&self) -> Result<Plan, String> {
        let t = self.target.trim();
        let kind = self.kind.name();
        let bad = |want: &str| format!("invalid target '{t}' for {kind}: expected {want}");
        let host = || -> Result<String, String> {
            let bare = t.trim_start_matches('[').trim_end_matches(']');
            if bare.parse::<IpAddr>().is_ok() || is_domain_name(t, false) {
                Ok(bare.to_owned())
            } else {
                Err(bad("an IP address or host name"))
            }
        };
        let domain = || -> Result<String, String> {
            if is_domain_name(t, false) && t.parse::<IpAddr>().is_err() {
                Ok(t.trim_end_matches('.').to_owned())
            } else {
                Err(bad("a domain name"))
            }
        };
        let ip = || t.parse::<IpAddr>().map_err(|_| bad("an IP address"));
        let pin = || -> Result<Option<String>, String> {
            match self.expect.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(one.clone())),
                _ => Err(format!("{kind} takes one --expect")),
            }
        };
        let tls = match self.tls {
            TlsArg::Auto => TlsMode::Auto,
            TlsArg::None => TlsMode::None,
            TlsArg::Starttls => TlsMode::Starttls,
            TlsArg::Implicit => TlsMode::Implicit,
        };
        let posture = Posture {
            legacy_tls: !self.allow.contains(&PostureRule::LegacyTls),
            min_rsa_bits: if self.allow.contains(&PostureRule::WeakRsa) {
                0
            } else {
                self.min_rsa_bits
            },
            sha1: !self.allow.contains(&PostureRule::Sha1),
            auth_before_starttls: !self.allow.contains(&PostureRule::AuthBeforeStarttls),
        };
        let spec = match self.kind {
            Kind::Check(spec::Kind::Smtp) => CheckSpec::Smtp(SmtpCheck {
                host: host()?,
                port: self.port.unwrap_or(25),
                tls,
                tls_name: self.tls_name.clone(),
                helo: self.helo.clone(),
                degraded_ms: self.degraded_ms,
                posture,
                mail_from: self.mail_from.clone().unwrap_or_default(),
                rcpt: self.rcpt.clone(),
                ca_file: self.ca_file.clone(),
                username: self.username.clone(),
                password_env: self.password_env.clone(),
                password_file: self.password_file.clone(),
            }),
            Kind::Check(spec::Kind::Tls) => {
                if tls == TlsMode::None {
                    return Err("invalid value 'none' for --tls: a tls check needs TLS".into());
                }
                CheckSpec::Tls(TlsCheck {
                    host: host()?,
                    port: self.port.unwrap_or(25),
                    tls,
                    tls_name: self.tls_name.clone(),
                    ca_file: self.ca_file.clone(),
                    warn_days: self.warn_days,
                    crit_days: self.crit_days,
                    expect: pin()?,
                    posture,
                })
            }
            Kind::Check(spec::Kind::Dns) => {
                let name_ok =
                    is_domain_name(t, true) || (self.rtype == RecordType::Ptr && ip().is_ok());
                if !name_ok {
                    return Err(bad("a DNS name (or an IP address with --type PTR)"));
                }
                CheckSpec::Dns(DnsCheck {
                    name: t.to_owned(),
                    rtype: self.rtype,
                    expect: self.expect.clone(),
                    authoritative: self.authoritative,
                })
            }
            Kind::Check(spec::Kind::Mx) => CheckSpec::Mx(MxCheck {
                domain: domain()?,
                probe: self.probe,
                port: self.port.unwrap_or(25),
                expect: self.expect.clone(),
                authoritative: self.authoritative,
            }),
            Kind::Check(spec::Kind::Ptr) => CheckSpec::Ptr(PtrCheck {
                ip: ip()?,
                expect: self.expect.clone(),
            }),
            Kind::Check(spec::Kind::Tcp) => {
                let port = self.port.ok_or("tcp needs --port")?;
                CheckSpec::Tcp(TcpCheck {
                    host: host()?,
                    port,
                    expect: self.expect.clone(),
                })
            }
            Kind::Check(spec::Kind::Spf) => CheckSpec::Spf(SpfCheck {
                domain: domain()?,
                ip: self.ip,
                expect: pin()?,
                authoritative: self.authoritative,
            }),
            Kind::Check(spec::Kind::Dkim) => {
                let selector = match self.selector.as_slice() {
                    [one] if is_domain_name(one, true) => one.clone(),
                    [one] => return Err(format!("invalid value '{one}' for --selector")),
                    [] => return Err("dkim needs --selector".into()),
                    _ => return Err("dkim takes one --selector".into()),
                };
                CheckSpec::Dkim(DkimCheck {
                    domain: domain()?,
                    selector,
                    expect: pin()?,
                    authoritative: self.authoritative,
                })
            }
            Kind::Check(spec::Kind::Dmarc) => CheckSpec::Dmarc(DmarcCheck {
                domain: domain()?,
                require_policy: self.require_policy,
                expect: pin()?,
                authoritative: self.authoritative,
            }),
            Kind::Check(spec::Kind::Dnsbl) => {
                let target = if ip().is_ok() {
                    t.to_owned()
                } else {
                    domain().map_err(|_| bad("an IP address or domain name"))?
                };
                CheckSpec::Dnsbl(DnsblCheck {
                    target,
                    zones: self.zones()?,
                })
            }
            Kind::Check(spec::Kind::Delivery) => CheckSpec::Delivery(Box::new(DeliveryCheck {
                to: t.to_owned(),
                submit: self
                    .submit
                    .clone()
                    .ok_or("delivery needs --submit HOST:PORT")?,
                submit_tls: tls,
                submit_tls_name: self.tls_name.clone(),
                mail_from: self.mail_from.clone().unwrap_or_default(),
                username: self.username.clone(),
                password_env: self.password_env.clone(),
                password_file: self.password_file.clone(),
                imap: self.imap.clone().ok_or("delivery needs --imap HOST:PORT")?,
                imap_tls: match self.imap_tls {
                    ImapTlsArg::Auto => ImapTls::Auto,
                    ImapTlsArg::Starttls => ImapTls::Starttls,
                    ImapTlsArg::Implicit => ImapTls::Implicit,
                },
                imap_tls_name: self.imap_tls_name.clone(),
                imap_username: self
                    .imap_username
                    .clone()
                    .ok_or("delivery needs --imap-username")?,
                imap_password_env: self.imap_password_env.clone(),
                imap_password_file: self.imap_password_file.clone(),
                mailbox: self.mailbox.clone(),
                ca_file: self.ca_file.clone(),
                warn_after: vantage_common::duration::Period::from_secs(
                    self.warn_after.as_secs().max(1),
                ),
                helo: self.helo.clone(),
            })),
            Kind::Check(spec::Kind::MtaSts) => CheckSpec::MtaSts(MtaStsCheck {
                domain: domain()?,
                require: self.require,
                ca_file: self.ca_file.clone(),
                port: self.port.unwrap_or(25),
            }),
            Kind::Check(spec::Kind::TlsRpt) => CheckSpec::TlsRpt(TlsRptCheck {
                domain: domain()?,
                require: self.require,
            }),
            Kind::Check(spec::Kind::Dane) => CheckSpec::Dane(DaneCheck {
                target: domain()?,
                port: self.port.unwrap_or(25),
                trust_anchor: self.trust_anchor.clone(),
            }),
            Kind::Domain => {
                for s in &self.selector {
                    if !is_domain_name(s, true) {
                        return Err(format!("invalid value '{s}' for --selector"));
                    }
                }
                let sender = self.mail_from.as_deref().unwrap_or("");
                if let Some(bad) = self
                    .rcpt
                    .iter()
                    .map(String::as_str)
                    .chain((!sender.is_empty() && sender != "<>").then_some(sender))
                    .find(|a| !spec::is_mail_address(a))
                {
                    return Err(format!("invalid value '{bad}': not a mail address"));
                }
                return Ok(Plan::Audit(DomainAudit {
                    domain: domain()?,
                    selectors: self.selector.clone(),
                    zones: self.zones()?,
                    ca_file: self.ca_file.clone(),
                    smtp_port: self.port.unwrap_or(25),
                    warn_days: self.warn_days,
                    crit_days: self.crit_days,
                    rcpt: self.rcpt.clone(),
                    mail_from: self.mail_from.clone().unwrap_or_default(),
                    trust_anchor: self.trust_anchor.clone(),
                }));
            }
        };
        spec.validate().map_err(|e| match &e {
            spec::SpecError::Params {
                field: Some(f),
                message,
            } if f == "expect" => format!("invalid value for --expect: {message}"),
            spec::SpecError::Params {
                field: Some(f),
                message,
            } if matches!(
                self.kind,
                Kind::Check(spec::Kind::Smtp | spec::Kind::Delivery)
            ) =>
            {
                let flag = match f.as_str() {
                    "password" => "--password-env/--password-file".to_owned(),
                    "imap_password" => "--imap-password-env/--imap-password-file".to_owned(),
                    "submit_tls" => "--tls".to_owned(),
                    f => format!("--{}", f.replace('_', "-")),
                };
                format!("invalid value for {flag}: {message}")
            }
            _ => format!("invalid {kind} check: {e}"),
        })?;
        Ok(Plan::Single(spec))
    }

    fn zones(&self) -> Result<Vec<String>, String> {
        for z in &self.zone {
            if !is_domain_name(z, false) {
                return Err(format!(
                    "invalid value '{z}' for --zone: expected a DNS zone"
                ));
            }
        }
        Ok(self
            .zone
            .iter()
            .map(|z| z.trim_end_matches('.').to_owned())
            .collect())
    }

    /// The context these options describe.
    pub fn context(&self) -> ProbeContext {
        ProbeContext::new(self.timeout, self.source_address, self.resolver)
    }
}
