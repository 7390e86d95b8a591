//! Which checks a status view shows: filtered by verdict, name glob,
//! labels and region, in name order, a page at a time — shared by the
//! Status RPC (`vantagectl status`), `/api/status` and the status page, so
//! that none of them has to ship 50,000 checks to show the few that matter.

use std::collections::{BTreeMap, BTreeSet};

use crate::declared::CheckDecl;
use crate::state::State;
use crate::state::verdicts::CheckVerdict;
use crate::verdict::SEVERITY;

/// A filter that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// Not a verdict name.
    #[error("unknown verdict {0:?} (one of {verdicts})", verdicts = SEVERITY.join(", "))]
    Verdict(String),
    /// A label filter without `=`.
    #[error("label filter {0:?} is not key=value")]
    Label(String),
}

/// What to show; every part empty: everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    verdicts: BTreeSet<String>,
    check: Option<String>,
    labels: Vec<(String, String)>,
    regions: BTreeSet<String>,
}

impl Filter {
    /// Checks whose verdict is one of `verdicts`, whose name matches the
    /// glob `check` (`*`, `?`), that carry every `key=value` of `labels`
    /// and run in one of `regions` (whose states alone are then shown).
    pub fn new(
        verdicts: &[String],
        check: &str,
        labels: &[String],
        regions: &[String],
    ) -> Result<Self, FilterError> {
        let verdicts = verdicts
            .iter()
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                if SEVERITY.contains(&v.as_str()) {
                    Ok(v)
                } else {
                    Err(FilterError::Verdict(v))
                }
            })
            .collect::<Result<_, _>>()?;
        let labels = labels
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    Ok((k.trim().to_owned(), v.trim().to_owned()))
                }
                _ => Err(FilterError::Label(l.clone())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            verdicts,
            check: (!check.is_empty()).then(|| check.to_owned()),
            labels,
            regions: regions.iter().map(|r| r.trim().to_owned()).collect(),
        })
    }

    /// Every verdict but `ok`.
    pub fn problems() -> Self {
        Filter {
            verdicts: problem_verdicts().into_iter().collect(),
            ..Filter::default()
        }
    }

    /// `ok` only: the rest of [`Filter::problems`].
    pub fn healthy() -> Self {
        Filter {
            verdicts: ["ok".to_owned()].into_iter().collect(),
            ..Filter::default()
        }
    }

    /// Does it narrow anything down?
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    fn matches(&self, c: &CheckDecl, verdict: &str) -> bool {
        (self.verdicts.is_empty() || self.verdicts.contains(verdict))
            && self.check.as_deref().is_none_or(|g| glob(g, &c.name))
            && self
                .labels
                .iter()
                .all(|(k, v)| c.labels.get(k).is_some_and(|x| x == v))
            && (self.regions.is_empty() || c.regions.iter().any(|r| self.regions.contains(r)))
    }

    /// Is `region`'s state shown?
    pub fn shows_region(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.contains(region)
    }
}

/// Every verdict name but `ok`.
pub fn problem_verdicts() -> Vec<String> {
    SEVERITY
        .iter()
        .filter(|v| **v != "ok")
        .map(|v| (*v).to_owned())
        .collect()
}

/// Does `name` match `pattern` (`*`: any run, `?`: any one character)?
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and how much of the name it has taken.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One page of checks.
#[derive(Debug)]
pub struct Page<'a> {
    /// The checks, in name order, with their vote.
    pub checks: Vec<(&'a CheckDecl, &'a CheckVerdict)>,
    /// The last name of this page when more follow (pass it as `after`).
    pub next: Option<String>,
    /// Checks matching the filter, all pages together.
    pub matched: usize,
    /// Checks per verdict, the filter aside.
    pub verdicts: BTreeMap<&'static str, usize>,
}

/// The checks after `after` (by name) that `filter` lets through, at most
/// `limit` of them (0: all).
pub fn select<'a>(state: &'a State, filter: &Filter, after: &str, limit: usize) -> Page<'a> {
    let mut page = Page {
        checks: Vec::new(),
        next: None,
        matched: 0,
        verdicts: BTreeMap::new(),
    };
    for c in state.declared.in_name_order() {
        let Some(v) = state.verdicts.get(&c.name) else {
            continue; // no vote yet
        };
        let name = &c.name;
        *page.verdicts.entry(v.verdict.name()).or_default() += 1;
        if !filter.matches(c, v.verdict.name()) {
            continue;
        }
        page.matched += 1;
        if name.as_str() <= after {
            continue;
        }
        if limit > 0 && page.checks.len() == limit {
            page.next = page.checks.last().map(|(c, _)| c.name.clone());
            continue;
        }
        page.checks.push((c, v));
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declared::Declared;
    use crate::state::Command;

    #[test]
    fn globs() {
        for (p, n, m) in [
            ("mx-*", "mx-1", true),
            ("mx-*", "mx-", true),
            ("mx-*", "smtp-mx-1", false),
            ("*-cert", "mx1-cert", true),
            ("m?1*t", "mx1-cert", true),
            ("*a*b", "xaxbxb", true),
            ("*a*b", "xaxbxc", false),
            ("", "", true),
            ("", "x", false),
            ("**", "", true),
        ] {
            assert_eq!(glob(p, n), m, "{p:?} ~ {n:?}");
        }
    }

    #[test]
    fn filters_and_pages_in_name_order() {
        let text: String = ["mx-3", "mx-1", "web-1", "mx-2"]
            .iter()
            .map(|name| {
                let (team, regions) = if name.starts_with("mx") {
                    ("mail", "[\"ru\", \"eu\"]")
                } else {
                    ("web", "[\"us\"]")
                };
                format!(
                    "[[check]]\nname = \"{name}\"\nkind = \"tcp\"\ntarget = \"127.0.0.1\"\nregions = {regions}\nlabels = {{ team = \"{team}\" }}\nparams = {{ port = 25 }}\n"
                )
            })
            .collect();
        let declared = match Declared::parse(std::path::Path::new("t.toml"), &text) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let mut state = State::default();
        state.apply(&Command::ApplyConfig {
            declared: Box::new(declared),
            at_ms: 1,
        });
        let names = |p: &Page<'_>| {
            p.checks
                .iter()
                .map(|(c, _)| c.name.clone())
                .collect::<Vec<_>>()
        };
        let all = select(&state, &Filter::default(), "", 0);
        assert_eq!(names(&all), ["mx-1", "mx-2", "mx-3", "web-1"]);
        // New checks, no results yet: all four share one verdict.
        let fresh = all.checks.first().map_or("?", |(_, v)| v.verdict.name());
        assert_eq!(all.verdicts.get(fresh), Some(&4), "{:?}", all.verdicts);
        let f = |v: &[&str], c: &str, l: &[&str], r: &[&str]| {
            let s = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
            Filter::new(&s(v), c, &s(l), &s(r))
        };
        let mail = f(&[], "mx-*", &["team=mail"], &[]).unwrap_or_default();
        let first = select(&state, &mail, "", 2);
        assert_eq!(
            (names(&first), first.matched),
            (vec!["mx-1".into(), "mx-2".into()], 3)
        );
        assert_eq!(first.next.as_deref(), Some("mx-2"));
        let second = select(&state, &mail, "mx-2", 2);
        assert_eq!((names(&second), second.next), (vec!["mx-3".into()], None));
        let us = f(&[], "", &[], &["us"]).unwrap_or_default();
        assert_eq!(names(&select(&state, &us, "", 0)), ["web-1"]);
        assert!(!us.shows_region("ru"));
        let none = f(&["outage"], "", &[], &[]).unwrap_or_default();
        assert!(select(&state, &none, "", 0).checks.is_empty());
        let same = f(&[fresh.to_uppercase().as_str()], "", &[], &[]).unwrap_or_default();
        assert_eq!(select(&state, &same, "", 0).matched, 4);
        let problems = select(&state, &Filter::problems(), "", 0).matched;
        assert_eq!(problems, if fresh == "ok" { 0 } else { 4 });
        assert_eq!(
            f(&["down"], "", &[], &[]),
            Err(FilterError::Verdict("down".into()))
        );
        assert_eq!(
            f(&[], "", &["team"], &[]),
            Err(FilterError::Label("team".into()))
        );
    }
}
