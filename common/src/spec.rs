//! The check specification: the contract between the coordinator, which
//! validates checks at `apply` and assigns them, and the agent, which runs
//! them. One registry of kinds ([`Kind`]), one file of parameters per kind
//! under `spec/`, one way from a declaration (kind + target + params) to a
//! validated [`CheckSpec`]. The probing code (`impl Check`) is the agent's.

pub mod dkim;
pub mod dmarc;
pub mod dns;
pub mod dnsbl;
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
}

impl Kind {
    /// Every kind, in the order help texts list them.
    pub const ALL: [Kind; 10] = [
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
        }
    }

    /// The parameter a check's `target` fills.
    pub fn target_field(self) -> &'static str {
        match self {
            Kind::Smtp | Kind::Tls | Kind::Tcp => "host",
            Kind::Dns => "name",
            Kind::Mx | Kind::Spf | Kind::Dkim | Kind::Dmarc => "domain",
            Kind::Ptr => "ip",
            Kind::Dnsbl => "target",
        }
    }

    /// Does its outcome carry DNS answers that regions should agree on
    /// (compared across regions by the vote)?
    pub fn compares_answers(self) -> bool {
        matches!(self, Kind::Dns | Kind::Mx | Kind::Spf | Kind::Dmarc)
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
    /// The parameters do not fit the kind (unknown, missing, out of range).
    #[error("params: {0}")]
    Params(String),
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
        table.insert("kind".into(), kind.name().into());
        table.insert(field.into(), target.into());
        toml::Value::Table(table)
            .try_into::<CheckSpec>()
            .map_err(|e| SpecError::Params(e.message().trim().to_owned()))
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
        let e = CheckSpec::from_parts(Kind::Smtp, "h", &params("prot = 25"));
        assert!(
            matches!(&e, Err(SpecError::Params(m)) if m.contains("unknown field `prot`")),
            "{e:?}"
        );
        assert!(matches!(
            CheckSpec::from_parts(Kind::Ptr, "not-an-ip", &none),
            Err(SpecError::Params(_))
        ));
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
