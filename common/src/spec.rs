//! The check specification: the contract between the coordinator, which
//! validates checks at `apply` and assigns them, and the agent, which runs
//! them. One registry of kinds ([`Kind`]), one file of parameters per kind
//! under `spec/`, one way from a declaration (kind + target + params) to a
//! validated [`CheckSpec`]. The probing code (`impl Check`) is the agent's.

pub mod dane;
pub mod delivery;
pub mod dkim;
pub mod dmarc;
pub mod dns;
pub mod dnsbl;
pub mod mta_sts;
pub mod mx;
pub mod ptr;
pub mod smtp;
pub mod spf;
pub mod tcp;
pub mod tls;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every check kind: its name, where its target goes, what it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// SMTP dialogue.
    Smtp,
    /// Certificate of a TLS or STARTTLS endpoint.
    Tls,
    /// One DNS query with expectations.
    Dns,
    /// MX hosts and their addresses.
    Mx,
    /// Reverse DNS, forward-confirmed.
    Ptr,
    /// TCP connect.
    Tcp,
    /// SPF record.
    Spf,
    /// DKIM key.
    Dkim,
    /// DMARC record.
    Dmarc,
    /// Blocklists.
    Dnsbl,
    /// A message submitted and watched for in a mailbox.
    Delivery,
    /// MTA-STS policy.
    MtaSts,
    /// TLS reporting record.
    TlsRpt,
    /// DANE TLSA records against the certificates presented.
    Dane,
}

impl Kind {
    /// Every kind, in the order help texts list them.
    pub const ALL: [Kind; 14] = [
        Kind::Smtp,
        Kind::Tls,
        Kind::Dns,
        Kind::Mx,
        Kind::Ptr,
        Kind::Tcp,
        Kind::Spf,
        Kind::Dkim,
        Kind::Dmarc,
        Kind::Dnsbl,
        Kind::Delivery,
        Kind::MtaSts,
        Kind::TlsRpt,
        Kind::Dane,
    ];

    /// The name used in `checks.toml`, on the command line and in outcomes.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Smtp => "smtp",
            Kind::Tls => "tls",
            Kind::Dns => "dns",
            Kind::Mx => "mx",
            Kind::Ptr => "ptr",
            Kind::Tcp => "tcp",
            Kind::Spf => "spf",
            Kind::Dkim => "dkim",
            Kind::Dmarc => "dmarc",
            Kind::Dnsbl => "dnsbl",
            Kind::Delivery => "delivery",
            Kind::MtaSts => "mta-sts",
            Kind::TlsRpt => "tlsrpt",
            Kind::Dane => "dane",
        }
    }

    /// The parameter a check's `target` fills.
    pub fn target_field(self) -> &'static str {
        match self {
            Kind::Smtp | Kind::Tls | Kind::Tcp => "host",
            Kind::Dns => "name",
            Kind::Mx | Kind::Spf | Kind::Dkim | Kind::Dmarc | Kind::MtaSts | Kind::TlsRpt => {
                "domain"
            }
            Kind::Ptr => "ip",
            Kind::Dnsbl | Kind::Dane => "target",
            Kind::Delivery => "to",
        }
    }

    /// Does its outcome carry DNS answers that regions should agree on
    /// (compared across regions by the vote)?
    pub fn compares_answers(self) -> bool {
        matches!(self, Kind::Dns | Kind::Mx | Kind::Spf | Kind::Dmarc)
    }

    /// Does the cluster keep a baseline of what it observes and report
    /// changes (`details.observed`)?
    pub fn tracks_changes(self) -> bool {
        matches!(
            self,
            Kind::Dns | Kind::Mx | Kind::Ptr | Kind::Spf | Kind::Dkim | Kind::Dmarc | Kind::Tls
        )
    }

    /// `smtp, tls, dns, ...` for error messages and help texts.
    pub fn list() -> String {
        Kind::ALL.map(Kind::name).join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Kind {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| SpecError::UnknownKind(s.to_owned()))
    }
}

/// Is `s` a syntactically valid DNS name? `underscore` allows `_dmarc`-style labels.
pub fn is_domain_name(s: &str, underscore: bool) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (underscore && b == b'_'))
        })
}

/// Is `s` a host as a connection target takes it: an IP address (IPv6
/// also in brackets) or a DNS name?
pub fn is_host(s: &str) -> bool {
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok() || is_domain_name(s, false)
}

/// Is `s` a mail address as an SMTP envelope takes it (`local@domain`,
/// the domain a DNS name or an address literal `[192.0.2.1]`)? Nothing
/// that could break out of `<...>` on a command line: no spaces, angle
/// brackets, control or non-ASCII characters; at most 254 bytes, the local part at
/// most 64.
pub fn is_mail_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let literal = domain
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .is_some_and(|ip| {
            ip.parse::<std::net::Ipv4Addr>().is_ok()
                || ip
                    .strip_prefix("IPv6:")
                    .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
        });
    s.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'@'))
        && (literal || is_domain_name(domain, false))
}

/// Largest specification of one check, as JSON (what an assignment carries
/// per check): no single check can swell a session's messages.
pub const MAX_SPEC_BYTES: usize = 16 * 1024;

/// Why a declaration is not a check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The kind is not one of [`Kind::ALL`].
    #[error("unknown kind `{0}` ({list})", list = Kind::list())]
    UnknownKind(String),
    /// `params` set the kind or the target field themselves.
    #[error("params may not set `{0}` (use the check's kind/target)")]
    Reserved(&'static str),
    /// The target is not what the kind probes (a host, a domain, an address).
    #[error("target {0}")]
    Target(String),
    /// The parameters do not fit the kind (unknown, missing, out of range).
    #[error("params: {}{message}", field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Params {
        /// The parameter at fault, when one is (`expect`, `port`).
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl SpecError {
    fn param(field: &str, message: impl Into<String>) -> Self {
        SpecError::Params {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

/// Builds one kind's parameters from its table, naming the field at fault.
fn build<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().trim().to_owned();
        // Unknown and missing fields name themselves in the message.
        let named = message.split('`').nth(1).filter(|_| {
            message.starts_with("unknown field") || message.starts_with("missing field")
        });
        let field = match named {
            Some(name) => Some(name.to_owned()),
            None if path != "." => Some(path),
            None => None,
        };
        SpecError::Params { field, message }
    })
}

/// A validated check of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CheckSpec {
    /// SMTP dialogue.
    Smtp(smtp::SmtpCheck),
    /// Certificate of a TLS or STARTTLS endpoint.
    Tls(tls::TlsCheck),
    /// One DNS query with expectations.
    Dns(dns::DnsCheck),
    /// MX hosts and their addresses.
    Mx(mx::MxCheck),
    /// Reverse DNS, forward-confirmed.
    Ptr(ptr::PtrCheck),
    /// TCP connect.
    Tcp(tcp::TcpCheck),
    /// SPF record.
    Spf(spf::SpfCheck),
    /// DKIM key.
    Dkim(dkim::DkimCheck),
    /// DMARC record.
    Dmarc(dmarc::DmarcCheck),
    /// Blocklists.
    Dnsbl(dnsbl::DnsblCheck),
    /// Round-trip delivery (boxed: its parameters would make every
    /// check as large as it is).
    Delivery(Box<delivery::DeliveryCheck>),
    /// MTA-STS policy.
    #[serde(rename = "mta-sts")]
    MtaSts(mta_sts::MtaStsCheck),
    /// TLS reporting record.
    TlsRpt(mta_sts::TlsRptCheck),
    /// DANE.
    Dane(dane::DaneCheck),
}

impl CheckSpec {
    /// The check for `kind` at `target` with kind-specific `params`, as a
    /// check is declared (`checks.toml`, an agent's control checks). The
    /// parameter types themselves refuse unknown or ill-typed params.
    pub fn from_parts(kind: Kind, target: &str, params: &toml::Table) -> Result<Self, SpecError> {
        let field = kind.target_field();
        let mut table = params.clone();
        for reserved in ["kind", field] {
            if table.contains_key(reserved) {
                return Err(SpecError::Reserved(reserved));
            }
        }
        table.insert(field.into(), target.into());
        let spec = match kind {
            Kind::Smtp => CheckSpec::Smtp(build(table)?),
            Kind::Tls => CheckSpec::Tls(build(table)?),
            Kind::Dns => CheckSpec::Dns(build(table)?),
            Kind::Mx => CheckSpec::Mx(build(table)?),
            Kind::Ptr => CheckSpec::Ptr(build(table)?),
            Kind::Tcp => CheckSpec::Tcp(build(table)?),
            Kind::Spf => CheckSpec::Spf(build(table)?),
            Kind::Dkim => CheckSpec::Dkim(build(table)?),
            Kind::Dmarc => CheckSpec::Dmarc(build(table)?),
            Kind::Dnsbl => CheckSpec::Dnsbl(build(table)?),
            Kind::Delivery => CheckSpec::Delivery(build(table)?),
            Kind::MtaSts => CheckSpec::MtaSts(build(table)?),
            Kind::TlsRpt => CheckSpec::TlsRpt(build(table)?),
            Kind::Dane => CheckSpec::Dane(build(table)?),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what types alone cannot: the form of the target and of
    /// pinned values, and the size of the whole.
    pub fn validate(&self) -> Result<(), SpecError> {
        let target = |t: &str, ok: bool, want: &str| {
            let shown: String = t.chars().take(64).collect();
            let more = if t.chars().count() > 64 { "…" } else { "" };
            (!ok).then(|| SpecError::Target(format!("{shown:?}{more} is not {want}")))
        };
        let bad = match self {
            CheckSpec::Smtp(c) => target(&c.host, is_host(&c.host), "a host name or IP address")
                .or_else(|| c.validate_mail().err()),
            CheckSpec::Tls(c) => target(&c.host, is_host(&c.host), "a host name or IP address"),
            CheckSpec::Tcp(c) => target(&c.host, is_host(&c.host), "a host name or IP address"),
            CheckSpec::Dns(c) => {
                let ptr =
                    c.rtype == dns::RecordType::Ptr && c.name.parse::<std::net::IpAddr>().is_ok();
                target(&c.name, ptr || is_domain_name(&c.name, true), "a DNS name")
            }
            CheckSpec::Mx(c) => {
                target(&c.domain, is_domain_name(&c.domain, false), "a domain name")
            }
            CheckSpec::Spf(c) => {
                target(&c.domain, is_domain_name(&c.domain, false), "a domain name")
            }
            CheckSpec::Dmarc(c) => {
                target(&c.domain, is_domain_name(&c.domain, false), "a domain name")
            }
            CheckSpec::Dkim(c) => {
                target(&c.domain, is_domain_name(&c.domain, false), "a domain name").or_else(|| {
                    (!is_domain_name(&c.selector, true)).then(|| {
                        SpecError::param(
                            "selector",
                            format!("{:?} is not a DKIM selector", c.selector),
                        )
                    })
                })
            }
            CheckSpec::Dnsbl(c) => target(
                &c.target,
                is_host(&c.target),
                "an IP address or domain name",
            )
            .or_else(|| {
                c.zones
                    .iter()
                    .find(|z| !is_domain_name(z, false))
                    .map(|z| SpecError::param("zones", format!("{z:?} is not a DNS zone")))
            }),
            CheckSpec::Ptr(_) => None,
            CheckSpec::Delivery(c) => c.validate().err(),
            CheckSpec::MtaSts(c) => {
                target(&c.domain, is_domain_name(&c.domain, false), "a domain name")
            }
            CheckSpec::TlsRpt(c) => {
                target(&c.domain, is_domain_name(&c.domain, false), "a domain name")
            }
            CheckSpec::Dane(c) => target(
                &c.target,
                is_domain_name(&c.target, false),
                "a domain or host name",
            ),
        };
        if let Some(e) = bad {
            return Err(e);
        }
        let size = serde_json::to_vec(self).map_or(usize::MAX, |j| j.len());
        if size > MAX_SPEC_BYTES {
            return Err(SpecError::Params {
                field: None,
                message: format!("{size} bytes as JSON, more than {MAX_SPEC_BYTES}"),
            });
        }
        let pin = match self {
            CheckSpec::Spf(c) => c.pin().map(drop),
            CheckSpec::Dmarc(c) => c.pin().map(drop),
            CheckSpec::Dkim(c) => c.validate_pin(),
            CheckSpec::Tls(c) => c.validate_pin(),
            CheckSpec::Mx(c) => c.pin().map(drop),
            _ => Ok(()),
        };
        pin.map_err(|e| SpecError::param("expect", e))
    }

    /// Does it pin the value it observes (`expect`)? A pinned check fails
    /// on a different answer instead of reporting a change.
    pub fn pins(&self) -> bool {
        match self {
            CheckSpec::Spf(c) => c.expect.is_some(),
            CheckSpec::Dmarc(c) => c.expect.is_some(),
            CheckSpec::Dkim(c) => c.expect.is_some(),
            CheckSpec::Tls(c) => c.expect.is_some(),
            CheckSpec::Mx(c) => !c.expect.is_empty(),
            CheckSpec::Ptr(c) => !c.expect.is_empty(),
            CheckSpec::Dns(c) => !c.expect.is_empty(),
            _ => false,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            CheckSpec::Smtp(_) => Kind::Smtp,
            CheckSpec::Tls(_) => Kind::Tls,
            CheckSpec::Dns(_) => Kind::Dns,
            CheckSpec::Mx(_) => Kind::Mx,
            CheckSpec::Ptr(_) => Kind::Ptr,
            CheckSpec::Tcp(_) => Kind::Tcp,
            CheckSpec::Spf(_) => Kind::Spf,
            CheckSpec::Dkim(_) => Kind::Dkim,
            CheckSpec::Dmarc(_) => Kind::Dmarc,
            CheckSpec::Dnsbl(_) => Kind::Dnsbl,
            CheckSpec::Delivery(_) => Kind::Delivery,
            CheckSpec::MtaSts(_) => Kind::MtaSts,
            CheckSpec::TlsRpt(_) => Kind::TlsRpt,
            CheckSpec::Dane(_) => Kind::Dane,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(text: &str) -> toml::Table {
        toml::from_str(text).unwrap_or_default()
    }

    #[test]
    fn every_kind_round_trips_its_name_and_builds_from_a_target() {
        let targets = [
            (Kind::Smtp, "mx.example.org", "port = 25"),
            (Kind::Tls, "mx.example.org", "port = 465"),
            (Kind::Dns, "example.org", ""),
            (Kind::Mx, "example.org", ""),
            (Kind::Ptr, "192.0.2.1", ""),
            (Kind::Tcp, "mx.example.org", "port = 25"),
            (Kind::Spf, "example.org", ""),
            (Kind::Dkim, "example.org", "selector = \"s1\""),
            (Kind::Dmarc, "example.org", ""),
            (Kind::Dnsbl, "192.0.2.1", ""),
            (
                Kind::Delivery,
                "probe@example.org",
                "submit = \"smtp.example.org:587\"\nimap = \"imap.example.org:993\"\n\
                 imap_username = \"probe\"\nimap_password_env = \"PW\"",
            ),
            (Kind::MtaSts, "example.org", "require = true"),
            (Kind::TlsRpt, "example.org", ""),
            (Kind::Dane, "example.org", "port = 25"),
        ];
        assert_eq!(targets.len(), Kind::ALL.len(), "a case per kind");
        for (kind, target, p) in targets {
            assert_eq!(kind.name().parse::<Kind>(), Ok(kind));
            let spec = CheckSpec::from_parts(kind, target, &params(p))
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(spec.kind(), kind);
            // The tag the agent reads back is the registry's name.
            let json = serde_json::to_value(&spec).unwrap_or_default();
            assert_eq!(json["kind"], kind.name());
            assert_eq!(json[kind.target_field()], target);
        }
    }

    #[test]
    fn bad_declarations_are_refused_by_kind() {
        let none = toml::Table::new();
        assert!(matches!(
            "smtpx".parse::<Kind>(),
            Err(SpecError::UnknownKind(k)) if k == "smtpx"
        ));
        assert!(
            toml::from_str::<toml::Table>("k = \"tcpx\"")
                .ok()
                .and_then(|t| t.get("k").cloned())
                .and_then(|v| v.try_into::<Kind>().err())
                .is_some_and(|e| e.message().contains("unknown kind `tcpx`"))
        );
        assert!(
            SpecError::UnknownKind("x".into())
                .to_string()
                .contains("smtp, tls, dns, mx, ptr, tcp, spf, dkim, dmarc, dnsbl")
        );
        assert_eq!(
            CheckSpec::from_parts(Kind::Smtp, "h", &params("port = 25\nhost = \"x\"")),
            Err(SpecError::Reserved("host"))
        );
        assert_eq!(
            CheckSpec::from_parts(Kind::Dns, "h", &params("kind = \"mx\"")),
            Err(SpecError::Reserved("kind"))
        );
        let field = |kind: Kind, target: &str, p: &str| match CheckSpec::from_parts(
            kind,
            target,
            &params(p),
        ) {
            Err(SpecError::Params { field, message }) => (field.unwrap_or_default(), message),
            other => panic!("{kind} {p}: {other:?}"),
        };
        let (f, m) = field(Kind::Smtp, "h", "prot = 25");
        assert_eq!(f, "prot");
        assert!(m.contains("unknown field `prot`"), "{m}");
        assert!(matches!(
            CheckSpec::from_parts(Kind::Ptr, "not-an-ip", &none),
            Err(SpecError::Params { .. })
        ));
        // Ill-typed and malformed pins name their field.
        assert_eq!(field(Kind::Spf, "d", "expect = 5").0, "expect");
        assert_eq!(field(Kind::Smtp, "h", "port = \"x\"").0, "port");
        for (kind, pin) in [
            (Kind::Spf, "expect = \"v=DMARC1; p=none\""),
            (Kind::Dmarc, "expect = \"v=spf1 -all\""),
            (Kind::Dkim, "selector = \"s\"\nexpect = \"k=rsa\""),
            (Kind::Tls, "port = 443\nexpect = \"sha1:00\""),
            (Kind::Mx, "expect = [\"mx.example.org\"]"),
        ] {
            let (f, m) = field(kind, "example.org", pin);
            assert_eq!(f, "expect", "{kind}: {m}");
        }
        let pinned = CheckSpec::from_parts(Kind::Spf, "d", &params("expect = \"v=spf1 -all\""));
        assert!(pinned.is_ok_and(|s| s.pins()));
    }

    #[test]
    fn smtp_acceptance_and_login_params_are_checked() {
        let smtp = |p: &str| {
            let p = if p.contains("port") {
                p.to_owned()
            } else {
                format!("port = 25\n{p}")
            };
            CheckSpec::from_parts(Kind::Smtp, "mx.example.org", &params(&p))
        };
        let field = |p: &str| match smtp(p) {
            Err(SpecError::Params { field, message }) => (field.unwrap_or_default(), message),
            other => panic!("{p}: {other:?}"),
        };
        let ok = smtp(
            "port = 587\nrcpt = [\"a@example.org\", \"b@[192.0.2.1]\"]\nmail_from = \"<>\"\n\
             username = \"u\"\npassword_env = \"PW\"",
        );
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(field("rcpt = [\"a@example.org> NOTIFY=NEVER\"]").0, "rcpt");
        assert_eq!(field("rcpt = [\"no-at-sign\"]").0, "rcpt");
        assert_eq!(field("rcpt = [\"x@bad_domain\"]").0, "rcpt");
        assert_eq!(field("rcpt = [\"x@example.org\\r\\nDATA\"]").0, "rcpt");
        assert_eq!(field("mail_from = \"me\"").0, "mail_from");
        let many = (0..=MAX_RCPT_FOR_TEST).map(|i| format!("\"r{i}@example.org\""));
        let (f, m) = field(&format!("rcpt = [{}]", many.collect::<Vec<_>>().join(",")));
        assert_eq!(f, "rcpt", "{m}");
        assert_eq!(field("username = \"u\"").0, "password");
        assert_eq!(field("password_env = \"PW\"").0, "username");
        let (f, m) = field("username = \"u\"\npassword_env = \"PW\"\npassword_file = \"/p\"");
        assert_eq!(
            (f.as_str(), m.as_str()),
            ("password", "set password_env or password_file, not both")
        );
        let (f, m) = field("tls = \"none\"\nusername = \"u\"\npassword_file = \"/p\"");
        assert_eq!(f, "username");
        assert!(m.contains("never sent in clear"), "{m}");
        assert_eq!(
            field("username = \"a\\nb\"\npassword_env = \"PW\"").0,
            "username"
        );
        // The reference travels, never a value: the spec has no field for one.
        assert_eq!(field("password = \"hunter2\"").0, "password");
    }

    const MAX_RCPT_FOR_TEST: usize = smtp::MAX_RCPT;

    #[test]
    fn delivery_params_are_checked() {
        let good = "submit = \"smtp.example.org:587\"\nimap = \"[2001:db8::1]:993\"\n\
                    imap_username = \"probe\"\nimap_password_file = \"/etc/pw\"\n";
        let delivery = |to: &str, p: &str| CheckSpec::from_parts(Kind::Delivery, to, &params(p));
        let field = |p: &str| match delivery("probe@example.org", p) {
            Err(SpecError::Params { field, message }) => (field.unwrap_or_default(), message),
            other => panic!("{p}: {other:?}"),
        };
        let ok = delivery("probe@example.org", good);
        assert!(ok.is_ok(), "{ok:?}");
        assert!(matches!(
            delivery("not-an-address", good),
            Err(SpecError::Target(_))
        ));
        assert_eq!(field(&good.replace(":587", "")).0, "submit");
        assert_eq!(field(&good.replace(":993", ":0")).0, "imap");
        assert_eq!(
            field(&good.replace("imap_password_file = \"/etc/pw\"\n", "")).0,
            "imap_password"
        );
        assert_eq!(field(&format!("{good}username = \"u\"")).0, "password");
        let (f, m) = field(&format!(
            "{good}username = \"u\"\npassword_env = \"PW\"\nsubmit_tls = \"none\""
        ));
        assert_eq!(f, "username");
        assert!(m.contains("submit_tls = \"none\""), "{m}");
        assert_eq!(field(&format!("{good}mailbox = \"a\\\"b\"")).0, "mailbox");
        assert_eq!(field(&format!("{good}warn_after = \"0s\"")).0, "warn_after");
    }

    #[test]
    fn only_dns_answering_kinds_compare_answers() {
        let comparing: Vec<&str> = Kind::ALL
            .into_iter()
            .filter(|k| k.compares_answers())
            .map(Kind::name)
            .collect();
        assert_eq!(comparing, ["dns", "mx", "spf", "dmarc"]);
    }
}
