//! What a check saw, normalised so that two runs (or two regions) can be
//! compared and a change described: the record set of a DNS answer, the
//! terms of an SPF record, the tags of a DMARC or DKIM record, the
//! fingerprint, issuer and expiry of a certificate.
//!
//! An [`Observed`] maps a key (what the value is about: `all`, `p`,
//! `issuer`, a record itself) to its value. The agent puts one into an
//! outcome's `details.observed`; the coordinator keeps the value regions
//! agreed on as a check's baseline and reports changes as [`Observed::diff`]
//! says them (`-all → ~all; removed ip4:192.0.2.62`). An `expect` pin is
//! compared in the same normal form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A normalised observation: key → value.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Observed(BTreeMap<String, String>);

/// Keys of a certificate observation (`tls` checks).
pub mod cert {
    /// SHA-256 of the leaf certificate (DER), `sha256:` and hex.
    pub const FINGERPRINT: &str = "sha256";
    /// Subject distinguished name.
    pub const SUBJECT: &str = "subject";
    /// Issuer distinguished name.
    pub const ISSUER: &str = "issuer";
    /// Expiry, RFC 3339 (so it sorts).
    pub const NOT_AFTER: &str = "not_after";
    /// Names (SANs), sorted, space-separated.
    pub const NAMES: &str = "names";
    /// Public key type and size (`RSA 2048`, `EC P-256`).
    pub const KEY: &str = "key";
    /// Negotiated TLS version.
    pub const VERSION: &str = "version";
    /// Negotiated cipher suite.
    pub const CIPHER: &str = "cipher";
}

impl Observed {
    /// Nothing observed.
    pub fn new() -> Self {
        Observed::default()
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Keys and values, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// Nothing in it.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A set of records (TXT strings...): each is its own key, so a change
    /// reads as `added …`/`removed …`.
    pub fn records<I, S>(records: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut o = Observed::new();
        for r in records {
            let r = r.as_ref().trim();
            o.set(r, r);
        }
        o
    }

    /// A set of names or records holding names (A, MX, PTR...), compared
    /// without case or trailing dot.
    pub fn names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Observed::records(names.into_iter().map(|n| normal_name(n.as_ref())))
    }

    /// The terms of an SPF record, keyed by mechanism without its
    /// qualifier (`all` → `-all`, `ip4:192.0.2.1` → `ip4:192.0.2.1`) and
    /// modifiers by name (`redirect` → `redirect=_spf.example.org`); the
    /// version tag is left out. `None` when it is no SPF record.
    pub fn spf(record: &str) -> Option<Self> {
        let mut terms = record.split_whitespace();
        if !terms.next()?.eq_ignore_ascii_case("v=spf1") {
            return None;
        }
        let mut o = Observed::new();
        for term in terms {
            let term = term.strip_prefix('+').unwrap_or(term).to_ascii_lowercase();
            let key = match term.split_once('=') {
                Some((modifier, _)) if !modifier.contains(':') => modifier.to_owned(),
                _ => term.trim_start_matches(['-', '~', '?']).to_owned(),
            };
            o.set(key, term);
        }
        Some(o)
    }

    /// The tags of a `tag=value; tag=value` record (DMARC, DKIM), keyed by
    /// tag name, each value written `tag=value` with spaces removed. The
    /// version tag is kept: it names the record type. `None` when a part
    /// is not `tag=value`.
    pub fn tags(record: &str) -> Option<Self> {
        let mut o = Observed::new();
        for part in record.split(';') {
            let part: String = part.split_whitespace().collect();
            if part.is_empty() {
                continue;
            }
            let (tag, value) = part.split_once('=')?;
            let tag = tag.to_ascii_lowercase();
            o.set(tag.clone(), format!("{tag}={value}"));
        }
        (!o.is_empty()).then_some(o)
    }

    /// Where `self` (pinned or old) and `new` differ, one readable line per
    /// key: `-all → ~all`, `issuer: CN=R3 → CN=E5`, `removed ip4:…`,
    /// `added mx3.example.org`. Empty when they are the same.
    pub fn diff(&self, new: &Observed) -> Vec<String> {
        let mut lines = Vec::new();
        for (key, old) in &self.0 {
            match new.0.get(key) {
                Some(v) if v == old => {}
                Some(v) if old.contains(key.as_str()) && v.contains(key.as_str()) => {
                    lines.push(format!("{old} → {v}"));
                }
                Some(v) => lines.push(format!("{key}: {old} → {v}")),
                None => lines.push(format!("removed {}", labelled(key, old))),
            }
        }
        for (key, v) in &new.0 {
            if !self.0.contains_key(key) {
                lines.push(format!("added {}", labelled(key, v)));
            }
        }
        lines
    }

    /// Is `new` the same certificate renewed: same subject and issuer, a
    /// new fingerprint, a later expiry, and nothing else changed but the
    /// key and the names it covers staying the same?
    pub fn is_renewal_of(&self, old: &Observed) -> bool {
        let later = match (self.get(cert::NOT_AFTER), old.get(cert::NOT_AFTER)) {
            (Some(new), Some(old)) => new > old,
            _ => false,
        };
        let renewed = [cert::FINGERPRINT, cert::NOT_AFTER, cert::KEY];
        let only_renewed = old
            .0
            .keys()
            .chain(self.0.keys())
            .all(|k| renewed.contains(&k.as_str()) || self.get(k) == old.get(k));
        later && only_renewed && self.get(cert::FINGERPRINT) != old.get(cert::FINGERPRINT)
    }

    /// The observation an outcome's details carry (`details.observed`).
    pub fn from_details(details: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(details.get("observed")?.clone()).ok()
    }
}

/// Is `s` a fingerprint as observations carry them: `sha256:` and 64
/// lower-case hex digits?
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// `sha256:` and the hex digest, as observations carry fingerprints.
pub fn fingerprint(digest: &[u8]) -> String {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `value`, or `key value` when the value does not say what it is about.
fn labelled(key: &str, value: &str) -> String {
    if value.contains(key) {
        value.to_owned()
    } else {
        format!("{key} {value}")
    }
}

/// A DNS name or record compared without case or trailing dot.
fn normal_name(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spf(s: &str) -> Observed {
        Observed::spf(s).unwrap_or_default()
    }

    #[test]
    fn an_spf_change_reads_as_the_terms_that_changed() {
        let old = spf("v=spf1 ip4:192.0.2.61 ip4:192.0.2.62 include:_spf.example.net -all");
        let new = spf("v=spf1 +ip4:192.0.2.61 include:_spf.example.net ~all");
        assert_eq!(old.diff(&new), ["-all → ~all", "removed ip4:192.0.2.62"]);
        assert_eq!(
            spf("v=spf1 -all").diff(&spf("v=spf1 redirect=_spf.example.org")),
            ["removed -all", "added redirect=_spf.example.org"]
        );
        assert!(spf("V=SPF1 -ALL").diff(&spf("v=spf1  -all")).is_empty());
        assert_eq!(Observed::spf("v=DMARC1; p=none"), None);
    }

    #[test]
    fn tag_records_and_record_sets_diff_by_tag_and_by_record() {
        let old =
            Observed::tags("v=DMARC1; p=reject; rua=mailto:d@example.org").unwrap_or_default();
        let new = Observed::tags("v=DMARC1;p=none; pct=50").unwrap_or_default();
        assert_eq!(
            old.diff(&new),
            [
                "p=reject → p=none",
                "removed rua=mailto:d@example.org",
                "added pct=50"
            ]
        );
        assert_eq!(Observed::tags("v=DMARC1; nonsense"), None);
        let mx = Observed::names(["10 mx1.example.org.", "20 MX2.example.org"]);
        let moved = Observed::names(["10 mx1.example.org", "30 mx3.example.org"]);
        assert_eq!(
            mx.diff(&moved),
            ["removed 20 mx2.example.org", "added 30 mx3.example.org"]
        );
    }

    #[test]
    fn a_renewal_is_a_later_certificate_from_the_same_issuer_for_the_same_names() {
        let cert = |fp: &str, issuer: &str, not_after: &str| {
            let mut o = Observed::new();
            o.set(cert::FINGERPRINT, fp);
            o.set(cert::SUBJECT, "CN=mx.example.org");
            o.set(cert::ISSUER, issuer);
            o.set(cert::NOT_AFTER, not_after);
            o
        };
        let old = cert("sha256:aa", "CN=R3", "2026-12-01T00:00:00Z");
        let renewed = cert("sha256:bb", "CN=R3", "2027-03-01T00:00:00Z");
        assert!(renewed.is_renewal_of(&old));
        assert!(
            !old.is_renewal_of(&renewed),
            "an earlier expiry is no renewal"
        );
        let other_ca = cert("sha256:bb", "CN=E5", "2027-03-01T00:00:00Z");
        assert!(!other_ca.is_renewal_of(&old));
        assert_eq!(
            old.diff(&other_ca),
            [
                "issuer: CN=R3 → CN=E5",
                "not_after: 2026-12-01T00:00:00Z → 2027-03-01T00:00:00Z",
                "sha256:aa → sha256:bb"
            ]
        );
    }
}
