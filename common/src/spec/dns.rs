//! The `dns` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/dns.rs`).

use serde::{Deserialize, Serialize};

/// Record types a `dns` check can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    /// IPv4 address.
    #[default]
    A,
    /// IPv6 address.
    Aaaa,
    /// Mail exchanger.
    Mx,
    /// Text.
    Txt,
    /// Reverse pointer.
    Ptr,
    /// Alias.
    Cname,
    /// Name server.
    Ns,
}

impl RecordType {
    /// Parses `A`, `aaaa`, `MX`, ...
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "A" => RecordType::A,
            "AAAA" => RecordType::Aaaa,
            "MX" => RecordType::Mx,
            "TXT" => RecordType::Txt,
            "PTR" => RecordType::Ptr,
            "CNAME" => RecordType::Cname,
            "NS" => RecordType::Ns,
            _ => return None,
        })
    }
}

/// Parameters of a `dns` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsCheck {
    /// Name to query (for PTR, an IP address is turned into its reverse name).
    pub name: String,
    /// Record type.
    #[serde(default, rename = "type")]
    pub rtype: RecordType,
    /// Values that must all be present. MX values match `10 mx.example.org`
    /// or just `mx.example.org`; TXT values match when the record contains
    /// them; names are compared without case or trailing dot.
    #[serde(default)]
    pub expect: Vec<String>,
    /// Also ask every authoritative server of the zone directly and warn
    /// (class `dns`) when they disagree, one is lame, or their SOA serials
    /// are out of step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authoritative: bool,
}
