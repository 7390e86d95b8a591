//! Who is on the other end of a connection, read from its certificate.
//!
//! Every vantage certificate carries one URI SAN naming its role:
//! `spiffe://vantage/agent/<region>/<name>`,
//! `spiffe://vantage/coordinator/<node-id>`,
//! `spiffe://vantage/operator/<name>`. Servers derive the caller's role,
//! region and name from it and from nothing else.

use std::fmt;
use std::str::FromStr;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const PREFIX: &str = "spiffe://vantage/";

/// A role with its names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A probing agent in a region.
    Agent {
        /// Region (`ru`, `eu`, `us`...).
        region: String,
        /// Agent name, unique in the deployment.
        name: String,
    },
    /// A coordinator node.
    Coordinator {
        /// Raft node id.
        id: u64,
    },
    /// A human or script driving `vantagectl`.
    Operator {
        /// Operator name.
        name: String,
    },
}

/// Why a certificate or URI names no valid identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate did not parse.
    #[error("certificate does not parse: {0}")]
    BadCertificate(String),
    /// No `spiffe://vantage/...` URI SAN.
    #[error("certificate carries no spiffe://vantage/ identity")]
    Missing,
    /// More than one vantage identity.
    #[error("certificate carries several vantage identities")]
    Ambiguous,
    /// The URI is not one of the known shapes.
    #[error("invalid vantage identity {0:?}")]
    Invalid(String),
}

/// Is `s` usable as a region or name: 1–63 of `a-z 0-9 -`, not starting or
/// ending with `-`.
pub fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Identity {
    /// The URI SAN for this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::Agent { region, name } => format!("{PREFIX}agent/{region}/{name}"),
            Identity::Coordinator { id } => format!("{PREFIX}coordinator/{id}"),
            Identity::Operator { name } => format!("{PREFIX}operator/{name}"),
        }
    }

    /// Role name: `agent`, `coordinator`, `operator`.
    pub fn role(&self) -> &'static str {
        match self {
            Identity::Agent { .. } => "agent",
            Identity::Coordinator { .. } => "coordinator",
            Identity::Operator { .. } => "operator",
        }
    }

    /// The deny-list key: the URI without its prefix — `agent/REGION/NAME`,
    /// `operator/NAME`, `coordinator/ID` — so that revoking one agent
    /// never touches an operator, or an agent of the same name elsewhere.
    pub fn key(&self) -> String {
        let uri = self.uri();
        uri.strip_prefix(PREFIX).unwrap_or(&uri).to_owned()
    }

    /// Reads a deny-list key ([`Identity::key`]).
    pub fn from_key(key: &str) -> Result<Self, IdentityError> {
        format!("{PREFIX}{key}")
            .parse()
            .map_err(|_| IdentityError::Invalid(key.to_owned()))
    }

    /// The agent or operator name, or `coordinator-<id>`.
    pub fn name(&self) -> String {
        match self {
            Identity::Agent { name, .. } | Identity::Operator { name } => name.clone(),
            Identity::Coordinator { id } => format!("coordinator-{id}"),
        }
    }

    /// Reads the identity from a DER certificate.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let mut found = None;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            if let GeneralName::URI(uri) = name
                && uri.starts_with(PREFIX)
            {
                if found.is_some() {
                    return Err(IdentityError::Ambiguous);
                }
                found = Some(uri.parse::<Identity>()?);
            }
        }
        found.ok_or(IdentityError::Missing)
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(uri: &str) -> Result<Self, IdentityError> {
        let invalid = || IdentityError::Invalid(uri.to_owned());
        let rest = uri.strip_prefix(PREFIX).ok_or_else(invalid)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["agent", region, name] if valid_label(region) && valid_label(name) => {
                Ok(Identity::Agent {
                    region: (*region).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            ["coordinator", id] => match id.parse::<u64>() {
                Ok(id) if id > 0 => Ok(Identity::Coordinator { id }),
                _ => Err(invalid()),
            },
            ["operator", name] if valid_label(name) => Ok(Identity::Operator {
                name: (*name).to_owned(),
            }),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Agent { region, name } => write!(f, "agent {name} (region {region})"),
            Identity::Coordinator { id } => write!(f, "coordinator {id}"),
            Identity::Operator { name } => write!(f, "operator {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_and_bad_ones_are_refused() {
        for id in [
            Identity::Agent {
                region: "ru".into(),
                name: "msk-1".into(),
            },
            Identity::Coordinator { id: 3 },
            Identity::Operator {
                name: "alice".into(),
            },
        ] {
            assert_eq!(id.uri().parse::<Identity>().unwrap(), id);
        }
        for bad in [
            "spiffe://vantage/agent/ru",
            "spiffe://vantage/agent/RU/x",
            "spiffe://vantage/agent/ru/x/y",
            "spiffe://vantage/coordinator/0",
            "spiffe://vantage/coordinator/abc",
            "spiffe://vantage/admin/root",
            "spiffe://other/operator/alice",
            "spiffe://vantage/operator/-x",
        ] {
            assert!(bad.parse::<Identity>().is_err(), "{bad}");
        }
    }
}
