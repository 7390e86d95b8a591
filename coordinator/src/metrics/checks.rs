//! Per-check series, written as OpenMetrics text straight from the
//! replicated state at scrape time (on the leader only, so that scraping
//! every node yields one copy). A registry of labelled gauges would hold a
//! second copy of every check's names: at 50,000 checks in 3 regions that
//! is some 700,000 series kept up to date on every result, where a scrape
//! reads each once. A scrape is written family by family in chunks of
//! checks (`Family::render`), each under a short read of the state, and
//! streamed: neither the whole text nor a long hold of the state lock.
//!
//! - `vantage_check_info{check,kind,target,<labels>}`: 1, with the check's
//!   own labels (a key that is no valid label name has its other
//!   characters replaced by `_`; one that clashes with `check`, `kind` or
//!   `target` is prefixed with `label_`).
//! - `vantage_check_verdict{check,verdict}`: a state set, 1 for the
//!   current verdict, 0 for the others.
//! - `vantage_check_region_up{check,region}`: 1 up, 0 down, absent while
//!   the region is stale or has not decided yet.
//! - `vantage_check_duration_seconds{check,region}`: the latest probe's
//!   wall time, while the region is not stale.
//! - `vantage_check_cert_not_after_timestamp_seconds{check,region}`: the
//!   leaf certificate's expiry seen by the latest `tls`/`smtp` probe.
//! - `vantage_check_changes_total{check}`: changes of the observed value
//!   (kinds that keep a baseline).

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::declared::CheckDecl;
use crate::state::State;
use crate::state::results::Latest;
use crate::verdict::{RegionState, SEVERITY};

/// One family of per-check series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `vantage_check_info`.
    Info,
    /// `vantage_check_verdict`.
    Verdict,
    /// `vantage_check_region_up`.
    RegionUp,
    /// `vantage_check_duration_seconds`.
    Duration,
    /// `vantage_check_cert_not_after_timestamp_seconds`.
    CertNotAfter,
    /// `vantage_check_changes_total`.
    Changes,
}

impl Family {
    /// All of them, in the order they are written.
    pub const ALL: [Family; 6] = [
        Family::Info,
        Family::Verdict,
        Family::RegionUp,
        Family::Duration,
        Family::CertNotAfter,
        Family::Changes,
    ];

    /// `# HELP` and `# TYPE`.
    pub fn header(self, out: &mut String) {
        let (name, kind, help) = match self {
            Family::Info => (
                "vantage_check",
                "info",
                "A check: its kind, target and labels",
            ),
            Family::Verdict => (
                "vantage_check_verdict",
                "gauge",
                "The check's current verdict (1) among all verdicts (0)",
            ),
            Family::RegionUp => (
                "vantage_check_region_up",
                "gauge",
                "1 while the check works from the region, 0 while it is down there (absent while stale or undecided)",
            ),
            Family::Duration => (
                "vantage_check_duration_seconds",
                "gauge",
                "Wall time of the latest probe from the region",
            ),
            Family::CertNotAfter => (
                "vantage_check_cert_not_after_timestamp_seconds",
                "gauge",
                "Expiry of the leaf certificate the latest probe from the region was shown (tls and smtp checks)",
            ),
            Family::Changes => (
                "vantage_check_changes",
                "counter",
                "Changes of the value the regions agreed on (kinds that keep a baseline)",
            ),
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// Appends this family's series of at most `limit` checks, in name
    /// order after `after`, to `out`; returns the last check's name when
    /// more may follow.
    pub fn render(
        self,
        state: &State,
        after: Option<&str>,
        limit: usize,
        out: &mut String,
    ) -> Option<String> {
        let mut last = None;
        for (n, c) in state.declared.in_name_order_after(after).enumerate() {
            if n == limit {
                return last;
            }
            self.check(state, c, out);
            last = Some(c.name.clone());
        }
        None
    }

    /// Appends this family's series of `c`.
    fn check(self, state: &State, c: &CheckDecl, out: &mut String) {
        let verdict = state.verdicts.get(&c.name);
        match self {
            Family::Info => info(c, out),
            Family::Verdict => {
                let current = verdict.map(|v| v.verdict.name());
                let mut prefix = String::from("vantage_check_verdict{check=\"");
                escape(&mut prefix, &c.name);
                prefix.push_str("\",verdict=\"");
                for name in SEVERITY {
                    out.push_str(&prefix);
                    out.push_str(name);
                    out.push_str(if current == Some(name) {
                        "\"} 1\n"
                    } else {
                        "\"} 0\n"
                    });
                }
            }
            Family::RegionUp => {
                let Some(v) = verdict else {
                    return;
                };
                for region in &c.regions {
                    let up = match v.regions.get(region.as_str()).map(|t| t.state) {
                        Some(RegionState::Up) => " 1\n",
                        Some(RegionState::Down) => " 0\n",
                        _ => continue,
                    };
                    series(out, "vantage_check_region_up", &c.name, ("region", region));
                    out.push_str(up);
                }
            }
            Family::Duration => {
                for (region, latest) in fresh(state, c) {
                    series(
                        out,
                        "vantage_check_duration_seconds",
                        &c.name,
                        ("region", region),
                    );
                    let _ = writeln!(out, " {}", f64::from(latest.entry.duration_ms) / 1000.0);
                }
            }
            Family::CertNotAfter => {
                for (region, latest) in fresh(state, c) {
                    if let Some(t) = latest.cert_not_after {
                        series(
                            out,
                            "vantage_check_cert_not_after_timestamp_seconds",
                            &c.name,
                            ("region", region),
                        );
                        let _ = writeln!(out, " {t}");
                    }
                }
            }
            Family::Changes => {
                if c.tracks_changes() {
                    let total = verdict.map_or(0, |v| v.drift.total);
                    out.push_str("vantage_check_changes_total{check=\"");
                    escape(out, &c.name);
                    let _ = writeln!(out, "\"}} {total}");
                }
            }
        }
    }
}

/// `vantage_check_info` of `c`, with its own labels.
fn info(c: &CheckDecl, out: &mut String) {
    out.push_str("vantage_check_info{check=\"");
    escape(out, &c.name);
    out.push_str("\",kind=\"");
    escape(out, c.kind.name());
    out.push_str("\",target=\"");
    escape(out, &c.target);
    out.push('"');
    let mut used: BTreeSet<String> = ["check", "kind", "target"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for (key, value) in &c.labels {
        let mut name = label_name(key);
        if used.contains(&name) {
            name = format!("label_{name}");
        }
        if !used.insert(name.clone()) {
            continue; // two keys that read the same: the first wins
        }
        let _ = write!(out, ",{name}=\"");
        escape(out, value);
        out.push('"');
    }
    out.push_str("} 1\n");
}

/// The latest result per region of `check`, while the region is not
/// stale.
fn fresh<'a>(
    state: &'a State,
    check: &'a CheckDecl,
) -> impl Iterator<Item = (&'a String, &'a Latest)> + 'a {
    let verdict = state.verdicts.get(&check.name);
    let results = state.results.get(&check.name);
    check.regions.iter().filter_map(move |region| {
        let stale = verdict
            .and_then(|v| v.regions.get(region.as_str()))
            .is_some_and(|t| t.state == RegionState::Stale);
        let latest = results?.latest.get(region.as_str())?;
        (!stale).then_some((region, latest))
    })
}

/// `name{check="...",key="..."}` (the value follows).
fn series(out: &mut String, name: &str, check: &str, (key, value): (&str, &str)) {
    out.push_str(name);
    out.push_str("{check=\"");
    escape(out, check);
    out.push_str("\",");
    out.push_str(key);
    out.push_str("=\"");
    escape(out, value);
    out.push_str("\"}");
}

/// A label value, escaped for the text format.
fn escape(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A valid label name for `key`: `[a-zA-Z_][a-zA-Z0-9_]*`, other
/// characters replaced by `_`, never starting with `__` (reserved).
fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) || name.starts_with("__") {
        name.insert_str(0, "label_");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declared::Declared;

    #[test]
    fn chunks_add_up_to_the_whole_family() {
        let mut toml = String::new();
        for i in 0..2500 {
            let _ = write!(
                toml,
                "[[check]]\nname = \"c{i}\"\nkind = \"dns\"\ntarget = \"c{i}.test\"\nregions = [\"eu\"]\nlabels = {{ n = \"{i}\" }}\n\n"
            );
        }
        let declared = match Declared::parse(std::path::Path::new("t.toml"), &toml) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let mut state = State::default();
        state.declared = declared;
        for family in Family::ALL {
            let mut whole = String::new();
            assert_eq!(family.render(&state, None, usize::MAX, &mut whole), None);
            let (mut chunked, mut after, mut chunks) = (String::new(), None, 0);
            loop {
                after = family.render(&state, after.as_deref(), 1000, &mut chunked);
                chunks += 1;
                if after.is_none() {
                    break;
                }
            }
            assert_eq!(chunks, 3);
            assert_eq!(whole, chunked, "{family:?}");
        }
        let mut info = String::new();
        Family::Info.render(&state, None, usize::MAX, &mut info);
        assert_eq!(info.lines().count(), 2500);
        assert!(info.contains(
            "vantage_check_info{check=\"c999\",kind=\"dns\",target=\"c999.test\",n=\"999\"} 1\n"
        ));
    }

    #[test]
    fn label_names_and_values_are_made_valid() {
        assert_eq!(label_name("team"), "team");
        assert_eq!(
            label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(label_name("1st"), "label_1st");
        assert_eq!(label_name("__name__"), "label___name__");
        assert_eq!(label_name(""), "label_");
        let mut out = String::new();
        escape(&mut out, "a\"b\\c\nd");
        assert_eq!(out, "a\\\"b\\\\c\\nd");
    }
}
