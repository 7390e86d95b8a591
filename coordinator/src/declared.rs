//! The declared configuration: checks, alert channels and routes, applied
//! as a whole from a TOML file (`vantagectl apply -f checks.toml`).
//! Parsing and validation are pure; every error names file, line and field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use vantage_common::config::{self, ConfigError};
use vantage_common::duration::Period;
use vantage_common::identity::valid_label;
use vantage_common::spec::{CheckSpec, Kind, SpecError};

use crate::alert::{Channel, SettingsError};
use crate::notification::Severity;

/// Shortest interval a check may run at.
pub const MIN_INTERVAL: Period = Period::from_secs(5);
/// Longest interval, escalation step or reminder period: 30 days.
pub const MAX_PERIOD: Period = Period::from_secs(30 * 86_400);

/// How many regions must see a failure for an outage: a number, or
/// `majority`, `all`, `any` of the regions assigned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Quorum {
    /// A fixed number of regions.
    Count(u32),
    /// More than half.
    #[default]
    Majority,
    /// Every one.
    All,
    /// A single one.
    Any,
}

impl std::fmt::Display for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quorum::Count(n) => write!(f, "{n}"),
            Quorum::Majority => f.write_str("majority"),
            Quorum::All => f.write_str("all"),
            Quorum::Any => f.write_str("any"),
        }
    }
}

impl Serialize for Quorum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Quorum::Count(n) => s.serialize_u32(*n),
            named => s.collect_str(named),
        }
    }
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Count(u32),
            Name(String),
        }
        match Written::deserialize(d)? {
            Written::Count(n) => Ok(Quorum::Count(n)),
            Written::Name(name) => match name.as_str() {
                "majority" => Ok(Quorum::Majority),
                "all" => Ok(Quorum::All),
                "any" => Ok(Quorum::Any),
                _ => Err(serde::de::Error::custom(format!(
                    "quorum {name:?} must be majority, all, any or a number of regions"
                ))),
            },
        }
    }
}

/// One check as written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDecl {
    /// Unique name.
    pub name: String,
    /// Check kind (`smtp`, `tls`, `dns`, ...).
    pub kind: Kind,
    /// Host, domain or address, as the kind needs.
    pub target: String,
    /// How often, e.g. `60s`, `5m`.
    #[serde(default = "default_interval")]
    pub interval: Period,
    /// Deadline per probe; the kind's default when absent.
    #[serde(default)]
    pub timeout: Option<Period>,
    /// Regions that run it.
    pub regions: Vec<String>,
    /// Free labels for routing.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Failing results before a region is down.
    #[serde(default = "two")]
    pub fail_after: u32,
    /// Passing results before a region is up again.
    #[serde(default = "two")]
    pub recover_after: u32,
    /// Regions that must agree on an outage.
    #[serde(default)]
    pub quorum: Quorum,
    /// `critical`, `warning` or `info`.
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// What a change of the observed value (a record, a certificate) raises:
    /// a `warning` or `critical` CHANGED incident, or nothing (`ignore`;
    /// it is still recorded). Kinds that keep a baseline only.
    #[serde(default)]
    pub on_change: OnChange,
    /// Routes to notify (names of `[[route]]`); all matching routes when empty.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Kind-specific parameters (`port`, `tls`, `expect`, `zones`...).
    #[serde(default)]
    pub params: toml::Table,
}

/// What a change of a check's observed value raises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnChange {
    /// A CHANGED incident of severity `warning`.
    #[default]
    Warning,
    /// A CHANGED incident of severity `critical` (pages).
    Critical,
    /// Recorded (`vantagectl changes`), no incident.
    Ignore,
}

impl OnChange {
    /// The severity of the incident a change raises, if any.
    pub fn severity(self) -> Option<Severity> {
        match self {
            OnChange::Warning => Some(Severity::Warning),
            OnChange::Critical => Some(Severity::Critical),
            OnChange::Ignore => None,
        }
    }
}

fn default_interval() -> Period {
    Period::from_secs(60)
}
fn two() -> u32 {
    2
}
fn default_severity() -> Severity {
    Severity::Critical
}

/// An alert channel; its settings are validated by its sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelDecl {
    /// Unique name.
    pub name: String,
    /// Sink kind.
    pub kind: String,
    /// Sink settings (URLs, secret references...).
    #[serde(default)]
    pub settings: toml::Table,
}

/// A route: which incidents go to which channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDecl {
    /// Unique name.
    pub name: String,
    /// Labels an incident must carry.
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, String>,
    /// Severities routed. When empty: `critical` and `warning`; `info`
    /// (REGIONAL and BLIND notices) reaches only routes that list it.
    #[serde(default)]
    pub severities: Vec<Severity>,
    /// Channels notified as soon as the incident reaches the route.
    pub channels: Vec<String>,
    /// Further channels once the incident is this old and still not
    /// acknowledged (e.g. 5 min on-call, 15 min manager).
    #[serde(default)]
    pub escalate: Vec<StepDecl>,
    /// Remind every channel notified this often while the incident is open
    /// and unacknowledged (e.g. `4h`).
    #[serde(default)]
    pub repeat: Option<Period>,
}

/// One escalation step of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDecl {
    /// Age of the incident (at its current severity), e.g. `5m`.
    pub after: Period,
    /// Channels added at this step.
    pub channels: Vec<String>,
}

/// Severities a route takes when it lists none.
pub const DEFAULT_ROUTE_SEVERITIES: &[Severity] = &[Severity::Critical, Severity::Warning];

/// Shortest reminder period.
pub const MIN_REPEAT: Period = Period::from_secs(60);

impl RouteDecl {
    /// Does this route take incidents of `severity`?
    pub fn takes(&self, severity: Severity) -> bool {
        if self.severities.is_empty() {
            DEFAULT_ROUTE_SEVERITIES.contains(&severity)
        } else {
            self.severities.contains(&severity)
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    /// Checks.
    #[serde(default, rename = "check")]
    pub checks: Vec<CheckDecl>,
    /// Alert channels.
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelDecl>,
    /// Routes.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteDecl>,
    /// Position of each check by name and the name order, built on first
    /// use (`checks` is not changed after a declaration is made).
    #[serde(skip)]
    index: CheckIndex,
}

/// A map keyed by check name that every result looks up: hashed with
/// foldhash rather than SipHash (names come from the operator's own
/// declaration, so flooding it is not a concern).
pub type NameMap<V> = std::collections::HashMap<String, V, foldhash::fast::RandomState>;

/// The value under `name` in `map`, made by `new` first when there is none.
/// Looked up before inserting: `entry` would take a copy of the name on
/// every call, and this runs once per result. (Always `Some`.)
pub fn slot<'a, V>(
    map: &'a mut NameMap<V>,
    name: &str,
    new: impl FnOnce() -> V,
) -> Option<&'a mut V> {
    if !map.contains_key(name) {
        map.insert(name.to_owned(), new());
    }
    map.get_mut(name)
}

/// Derived lookup data: equal whatever it holds, cloned empty.
#[derive(Debug, Default)]
struct CheckIndex(std::sync::OnceLock<Index>);

/// Where each check is in [`Declared::checks`]: by name, and in name order.
#[derive(Debug)]
struct Index {
    position: NameMap<usize>,
    by_name: Vec<usize>,
}

impl Clone for CheckIndex {
    fn clone(&self) -> Self {
        CheckIndex::default()
    }
}

impl PartialEq for CheckIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl ChannelDecl {
    /// The channel this declaration describes, validated by its sink.
    pub fn channel(&self) -> Result<Channel, SettingsError> {
        Channel::new(&self.name, &self.kind, &self.settings)
    }
}

impl CheckDecl {
    /// Is the check probed from `region`?
    pub fn runs_in(&self, region: &str) -> bool {
        self.regions.iter().any(|r| r == region)
    }

    /// Does the cluster keep a baseline of what it observes and report
    /// its changes? Kinds that observe a value, unless `expect` pins it.
    pub fn tracks_changes(&self) -> bool {
        let pinned = match self.params.get("expect") {
            Some(toml::Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
            None => false,
        };
        self.kind.tracks_changes() && !pinned
    }

    /// The probe this declaration describes, built and checked by the
    /// shared check specification.
    pub fn spec(&self) -> Result<CheckSpec, SpecError> {
        CheckSpec::from_parts(self.kind, &self.target, &self.params)
    }
}

impl Declared {
    /// Parses and validates `text` read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let declared: Declared = config::parse(path, text)?;
        declared.validate(path, text)?;
        Ok(declared)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let err = |field: &str, name: &str, msg: String| {
            let mut e = config::invalid(path, text, field, msg);
            // The line in the entry where the field is set, else the
            // entry's `name = "..."` line.
            let key = field.rsplit('.').next().unwrap_or(field);
            e.line = entry_line(text, name, key).or(e.line);
            e
        };
        let mut names = BTreeSet::new();
        let routes: BTreeSet<&str> = self.routes.iter().map(|r| r.name.as_str()).collect();
        for c in &self.checks {
            if !valid_label(&c.name) {
                return Err(err(
                    "check.name",
                    &c.name,
                    format!("invalid check name {:?} (a-z, 0-9, '-')", c.name),
                ));
            }
            if !names.insert(c.name.as_str()) {
                let mut e = err(
                    "check.name",
                    &c.name,
                    format!("duplicate check name {:?}", c.name),
                );
                // The repetition, not the first use.
                e.line = name_line(text, &c.name, 1).map(|l| l + 1).or(e.line);
                return Err(e);
            }
            let spec = c.spec().map_err(|e| {
                let field = match &e {
                    SpecError::Params { field: Some(f), .. } => format!("check.params.{f}"),
                    SpecError::Target(_) => "check.target".to_owned(),
                    _ => "check.params".to_owned(),
                };
                err(&field, &c.name, format!("check {}: {e}", c.name))
            })?;
            if c.on_change != OnChange::default() {
                let why = if !c.kind.tracks_changes() {
                    Some(format!("{} checks keep no baseline", c.kind))
                } else if spec.pins() {
                    Some("a pinned check (expect) fails on a different value instead".to_owned())
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(err(
                        "check.on_change",
                        &c.name,
                        format!("check {}: on_change does not apply: {why}", c.name),
                    ));
                }
            }
            if !(MIN_INTERVAL..=MAX_PERIOD).contains(&c.interval) {
                return Err(err(
                    "check.interval",
                    &c.name,
                    format!(
                        "check {}: interval {} is outside {MIN_INTERVAL}..={MAX_PERIOD}",
                        c.name, c.interval
                    ),
                ));
            }
            if c.kind == Kind::Delivery
                && c.timeout.is_none()
                && c.interval.duration() < vantage_common::spec::delivery::DEFAULT_DEADLINE
            {
                return Err(err(
                    "check.interval",
                    &c.name,
                    format!(
                        "check {}: a delivery check waits up to {} s for its message: \
                         set interval to at least that, or a shorter timeout",
                        c.name,
                        vantage_common::spec::delivery::DEFAULT_DEADLINE.as_secs()
                    ),
                ));
            }
            if let Some(t) = c.timeout
                && (t.secs() == 0 || t > c.interval)
            {
                return Err(err(
                    "check.timeout",
                    &c.name,
                    format!(
                        "check {}: timeout {t} must be between 1s and the interval",
                        c.name
                    ),
                ));
            }
            if c.regions.is_empty() || c.regions.iter().any(|r| !valid_label(r)) {
                return Err(err(
                    "check.regions",
                    &c.name,
                    format!(
                        "check {}: regions must be a non-empty list of region names",
                        c.name
                    ),
                ));
            }
            let mut seen = BTreeSet::new();
            if let Some(twice) = c.regions.iter().find(|r| !seen.insert(r.as_str())) {
                // A region listed twice would count twice towards the quorum.
                return Err(err(
                    "check.regions",
                    &c.name,
                    format!("check {}: region {twice:?} is listed twice", c.name),
                ));
            }
            if c.fail_after == 0 || c.recover_after == 0 {
                return Err(err(
                    "check.fail_after",
                    &c.name,
                    format!(
                        "check {}: fail_after and recover_after must be 1 or more",
                        c.name
                    ),
                ));
            }
            if let Quorum::Count(n) = c.quorum
                && !(1..=c.regions.len()).contains(&(n as usize))
            {
                return Err(err(
                    "check.quorum",
                    &c.name,
                    format!(
                        "check {}: quorum {n} must be majority, all, any or 1..={}",
                        c.name,
                        c.regions.len()
                    ),
                ));
            }
            if let Some(r) = c.routes.iter().find(|r| !routes.contains(r.as_str())) {
                return Err(err(
                    "check.routes",
                    &c.name,
                    format!("check {}: no route named {r:?}", c.name),
                ));
            }
        }
        let mut channel_names = BTreeSet::new();
        for ch in &self.channels {
            if !valid_label(&ch.name) || !channel_names.insert(ch.name.as_str()) {
                return Err(err(
                    "channel.name",
                    &ch.name,
                    format!("channel name {:?} is invalid or repeated", ch.name),
                ));
            }
            ch.channel().map_err(|e| {
                let field = match e {
                    SettingsError::UnknownKind(_) => "channel.kind",
                    _ => "channel.settings",
                };
                err(field, &ch.name, format!("channel {}: {e}", ch.name))
            })?;
        }
        let mut route_names = BTreeSet::new();
        for r in &self.routes {
            if !valid_label(&r.name) || !route_names.insert(r.name.as_str()) {
                return Err(err(
                    "route.name",
                    &r.name,
                    format!("route name {:?} is invalid or repeated", r.name),
                ));
            }
            if let Some(c) = r
                .channels
                .iter()
                .find(|c| !channel_names.contains(c.as_str()))
            {
                return Err(err(
                    "route.channels",
                    &r.name,
                    format!("route {}: no channel named {c:?}", r.name),
                ));
            }
            for step in &r.escalate {
                if step.after > MAX_PERIOD {
                    return Err(err(
                        "route.escalate.after",
                        &r.name,
                        format!(
                            "route {}: escalation after {} is beyond {MAX_PERIOD}",
                            r.name, step.after
                        ),
                    ));
                }
                if let Some(c) = step
                    .channels
                    .iter()
                    .find(|c| !channel_names.contains(c.as_str()))
                {
                    return Err(err(
                        "route.escalate.channels",
                        &r.name,
                        format!("route {}: no channel named {c:?}", r.name),
                    ));
                }
            }
            if let Some(repeat) = r.repeat
                && !(MIN_REPEAT..=MAX_PERIOD).contains(&repeat)
            {
                return Err(err(
                    "route.repeat",
                    &r.name,
                    format!(
                        "route {}: repeat {repeat} must be from {}s to {MAX_PERIOD}",
                        r.name,
                        MIN_REPEAT.secs()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelDecl> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Checks by name.
    pub fn checks_by_name(&self) -> BTreeMap<&str, &CheckDecl> {
        self.checks.iter().map(|c| (c.name.as_str(), c)).collect()
    }

    /// The check named `name` (a hash lookup: the index is built once).
    pub fn check(&self, name: &str) -> Option<&CheckDecl> {
        self.position(name).and_then(|i| self.checks.get(i))
    }

    /// Where the check named `name` is in [`Declared::checks`].
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index().position.get(name).copied()
    }

    /// The checks in name order.
    pub fn in_name_order(&self) -> impl Iterator<Item = &CheckDecl> {
        self.in_name_order_after(None)
    }

    /// The checks in name order, from the first named after `after`.
    pub fn in_name_order_after(&self, after: Option<&str>) -> impl Iterator<Item = &CheckDecl> {
        let index = self.index();
        let name = |i: usize| self.checks.get(i).map_or("", |c| c.name.as_str());
        let start = after.map_or(0, |a| index.by_name.partition_point(|&i| name(i) <= a));
        index.by_name[start..]
            .iter()
            .filter_map(|&i| self.checks.get(i))
    }

    /// The index, built on first use.
    fn index(&self) -> &Index {
        self.index.0.get_or_init(|| {
            let mut by_name: Vec<usize> = (0..self.checks.len()).collect();
            by_name.sort_unstable_by(|&a, &b| self.checks[a].name.cmp(&self.checks[b].name));
            Index {
                position: self
                    .checks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name.clone(), i))
                    .collect(),
                by_name,
            }
        })
    }
}

/// The index (0-based) of the `nth` (0-based) line setting `name = "<name>"`.
fn name_line(text: &str, name: &str, nth: usize) -> Option<usize> {
    let quoted = format!("\"{name}\"");
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            l.strip_prefix("name")
                .is_some_and(|rest| rest.trim_start().starts_with('=') && rest.contains(&quoted))
        })
        .nth(nth)
        .map(|(i, _)| i)
}

/// The line where `key` is set in the entry named `name` (inline tables
/// included: `params = { expect = ... }`), else the entry's `name = "..."`
/// line, if there is one.
fn entry_line(text: &str, name: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let at = name_line(text, name, 0)?;
    let header = |l: &&str| l.trim_start().starts_with('[');
    let start = lines[..at].iter().rposition(header).unwrap_or(0);
    let end = lines[at + 1..]
        .iter()
        .position(header)
        .map_or(lines.len(), |i| at + 1 + i);
    let sets_key = |l: &str| {
        l.match_indices(key).any(|(i, _)| {
            let before = l[..i].trim_end();
            let after = l[i + key.len()..].trim_start();
            after.starts_with('=')
                && (before.is_empty() || before.ends_with('{') || before.ends_with(','))
        })
    };
    let line = (start..end).find(|i| sets_key(lines[*i])).unwrap_or(at);
    Some(line + 1)
}

/// What applying `new` over `old` changes, by check name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    /// New checks.
    pub created: Vec<String>,
    /// Checks whose declaration changed.
    pub changed: Vec<String>,
    /// Checks no longer declared.
    pub deleted: Vec<String>,
    /// Whether channels or routes changed.
    pub routing_changed: bool,
}

impl Diff {
    /// Compares two declarations.
    pub fn between(old: &Declared, new: &Declared) -> Diff {
        let (o, n) = (old.checks_by_name(), new.checks_by_name());
        Diff {
            created: n
                .keys()
                .filter(|k| !o.contains_key(*k))
                .map(|k| (*k).to_owned())
                .collect(),
            changed: n
                .iter()
                .filter(|(k, v)| o.get(*k).is_some_and(|ov| ov != *v))
                .map(|(k, _)| (*k).to_owned())
                .collect(),
            deleted: o
                .keys()
                .filter(|k| !n.contains_key(*k))
                .map(|k| (*k).to_owned())
                .collect(),
            routing_changed: old.channels != new.channels || old.routes != new.routes,
        }
    }

    /// Nothing changes.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.changed.is_empty()
            && self.deleted.is_empty()
            && !self.routing_changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[check]]
name = "mx1"
kind = "smtp"
target = "mx1.example.org"
regions = ["ru", "eu", "us"]
params = { port = 587 }
"#;

    const SPF: &str = r#"
[[check]]
name = "spf"
kind = "spf"
target = "example.org"
regions = ["ru", "eu", "us"]
params = {}
"#;

    fn parse(text: &str) -> Result<Declared, ConfigError> {
        Declared::parse(Path::new("checks.toml"), text)
    }

    #[test]
    fn example_file_in_deploy_is_valid() {
        let text = include_str!("../../deploy/examples/checks.toml");
        let d = parse(text).unwrap();
        assert_eq!(d.checks.len(), 10);
        assert!(matches!(d.checks[0].spec(), Ok(CheckSpec::Smtp(_))));
    }

    #[test]
    fn bad_files_name_line_and_field() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "[[check]]\nname = \"a\"\nkind = \"smtp\"\n",
                1,
                "target",
                "missing field",
            ),
            (
                &GOOD.replace("regions =", "regoins ="),
                6,
                "regoins",
                "unknown field",
            ),
            (
                &GOOD.replace("\"smtp\"", "\"smtpx\""),
                4,
                "check.kind",
                "unknown kind",
            ),
            (
                &GOOD.replace("params = {", "interval = \"2s\"\nparams = {"),
                7,
                "check.interval",
                "outside 5s..=30d",
            ),
            (&format!("{GOOD}{GOOD}"), 10, "check.name", "duplicate"),
            (
                &GOOD
                    .replace("\"smtp\"", "\"delivery\"")
                    .replace("\"mx1.example.org\"", "\"probe@example.org\"")
                    .replace(
                        "port = 587",
                        "submit = \"smtp.example.org:587\", imap = \"imap.example.org:993\", \
                         imap_username = \"p\", imap_password_env = \"PW\"",
                    ),
                3,
                "check.interval",
                "waits up to 300 s for its message",
            ),
            (
                &GOOD.replace("port = 587", "prot = 587"),
                7,
                "check.params.prot",
                "unknown field `prot`",
            ),
            (
                &GOOD.replace("port = 587", "port = 70000"),
                7,
                "check.params.port",
                "",
            ),
            (
                &GOOD.replace("params = {", "on_change = \"sometimes\"\nparams = {"),
                7,
                "check.on_change",
                "unknown variant",
            ),
            (
                &GOOD.replace("params = {", "on_change = \"critical\"\nparams = {"),
                7,
                "check.on_change",
                "smtp checks keep no baseline",
            ),
            (
                &format!(
                    "{GOOD}{}",
                    SPF.replace(
                        "params = {}",
                        "params = {\n  expect = \"v=DMARC1; p=none\" }"
                    )
                ),
                15,
                "check.params.expect",
                "not an SPF record",
            ),
            (
                &format!(
                    "{GOOD}{}",
                    SPF.replace(
                        "params = {}",
                        "on_change = \"ignore\"\nparams = { expect = \"v=spf1 -all\" }"
                    )
                ),
                14,
                "check.on_change",
                "pinned",
            ),
            (
                &format!(
                    "{GOOD}{}",
                    SPF.replace("params = {}", "params = { authoritative = \"yes\" }")
                ),
                14,
                "check.params.authoritative",
                "",
            ),
            (
                &GOOD.replace("params = {", "routes = [\"nope\"]\nparams = {"),
                7,
                "check.routes",
                "no route",
            ),
            (
                &GOOD.replace("params = {", "quorum = 4\nparams = {"),
                7,
                "check.quorum",
                "quorum",
            ),
            (
                &GOOD.replace("\"mx1.example.org\"", "\"\""),
                5,
                "check.target",
                "\"\" is not a host name or IP address",
            ),
            (
                &GOOD.replace(
                    "\"mx1.example.org\"",
                    &format!("\"{}\"", "x".repeat(100_000)),
                ),
                5,
                "check.target",
                "is not a host name",
            ),
            (
                &format!(
                    "{GOOD}{}",
                    SPF.replace("kind = \"spf\"", "kind = \"dns\"").replace(
                        "params = {}",
                        &format!(
                            "params = {{ expect = [{}] }}",
                            vec!["\"192.0.2.1\""; 2000].join(", ")
                        )
                    )
                ),
                14,
                "check.params",
                "more than 16384",
            ),
            (
                &format!(
                    "{GOOD}{}",
                    SPF.replace("\"example.org\"", "\"exa mple.org\"")
                ),
                12,
                "check.target",
                "is not a domain name",
            ),
            (
                &GOOD
                    .replace("[\"ru\", \"eu\", \"us\"]", "[\"ru\", \"ru\", \"ru\"]")
                    .replace("params = {", "quorum = 3\nparams = {"),
                6,
                "check.regions",
                "region \"ru\" is listed twice",
            ),
            ("[[check]\nname = 1", 1, "", ""),
        ];
        for (text, line, field, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, Some(*line), "{text}\n=> {e}");
            if !field.is_empty() {
                assert_eq!(e.field.as_deref(), Some(*field), "{e}");
            }
            assert!(e.message.contains(needle), "{e} lacks {needle:?}");
            assert!(e.to_string().starts_with("checks.toml:"), "{e}");
        }
    }

    #[test]
    fn diff_names_created_changed_deleted() {
        let old = parse(&format!("{GOOD}{}", GOOD.replace("\"mx1\"", "\"mx2\""))).unwrap();
        let new = parse(&format!(
            "{}{}",
            GOOD.replace("587", "465"),
            GOOD.replace("\"mx1\"", "\"mx3\"")
        ))
        .unwrap();
        let d = Diff::between(&old, &new);
        assert_eq!(
            (d.created, d.changed, d.deleted),
            (vec!["mx3".into()], vec!["mx1".into()], vec!["mx2".into()])
        );
        assert!(Diff::between(&new, &new).is_empty());
    }
}
