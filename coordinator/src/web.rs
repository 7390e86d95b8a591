//! The read-only status page (`/`) and JSON status API (`/api/status`) on
//! a coordinator's HTTP port: per check its global verdict, per-region
//! state, uptime over 24 h / 7 d / 30 d and open incident; impaired
//! vantages; open incidents; changes of the last 7 days. Built from the node's applied state; no
//! channels, settings or secrets are ever shown.
//!
//! Both take the filters of `vantagectl status` as query parameters
//! (`verdict`, `label` and `region` comma-separated; `check` a glob;
//! `limit`, `after` to page). Without any, the API lists every check and
//! the page lists the problems, worst first, and counts the rest.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde::Serialize;
use vantage_common::clock::{now_ms, rfc3339};

use crate::node::Replica;
use crate::raft::types::Raft;
use crate::selection::{Filter, FilterError, select};
use crate::state::State as Replicated;
use crate::verdict::severity;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// One check on the status page.
#[derive(Debug, Serialize)]
pub struct CheckView {
    /// Name.
    pub name: String,
    /// ok, warning, divergent, regional, outage, blind.
    pub verdict: String,
    /// Since (ms since the epoch).
    pub since_ms: i64,
    /// Region → up, down, stale, unknown.
    pub regions: Vec<(String, String)>,
    /// Uptime % over 24 h, 7 d, 30 d (REGIONAL counts as degraded, not
    /// down; undecided time is left out); `None` without decided time.
    pub uptime_pct: [Option<f64>; 3],
    /// Its open incident.
    pub incident: Option<u64>,
}

/// The whole status.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// Server time.
    pub now_ms: i64,
    /// Leader node id, if known.
    pub leader: Option<u64>,
    /// The checks selected (all of them by default).
    pub checks: Vec<CheckView>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<String>,
    /// Checks matching the filters, all pages together.
    pub matched: usize,
    /// Checks per verdict, the filters aside.
    pub verdicts: std::collections::BTreeMap<&'static str, usize>,
    /// Region → why its vantage is impaired.
    pub impaired: Vec<(String, String)>,
    /// Open incidents: (id, subject, verdict, opened).
    pub incidents: Vec<(u64, String, String, i64)>,
    /// Changes of the last 7 days, newest first (at most [`MAX_CHANGES`]).
    pub changes: Vec<ChangeView>,
}

/// Changes listed on the page.
pub const MAX_CHANGES: usize = 50;

/// One change on the status page.
#[derive(Debug, Serialize)]
pub struct ChangeView {
    /// The check.
    pub check: String,
    /// When regions agreed on the new value (ms since the epoch).
    pub at_ms: i64,
    /// Old → new.
    pub summary: String,
    /// critical, warning, info; `ignored` when on_change = "ignore".
    pub severity: String,
}

/// Builds the view of the checks `filter` selects (after `after`, at
/// most `limit`; 0: all) from replicated state.
pub fn view(
    state: &Replicated,
    leader: Option<u64>,
    now: i64,
    filter: &Filter,
    after: &str,
    limit: usize,
) -> StatusView {
    let page = select(state, filter, after, limit);
    let checks = page
        .checks
        .iter()
        .map(|(c, v)| {
            let uptime_pct = [DAY_MS, 7 * DAY_MS, 30 * DAY_MS].map(|window| {
                let t = v.time_since(now - window, now);
                let decided = t.up_ms + t.degraded_ms + t.down_ms;
                (decided > 0).then(|| (t.up_ms + t.degraded_ms) as f64 * 100.0 / decided as f64)
            });
            CheckView {
                name: c.name.clone(),
                verdict: v.verdict.name().to_owned(),
                since_ms: v.since_ms,
                regions: v
                    .regions
                    .iter()
                    .filter(|(r, _)| filter.shows_region(r))
                    .map(|(r, t)| (r.to_string(), t.state.name().to_owned()))
                    .collect(),
                uptime_pct,
                incident: state.incidents.open.get(&c.name).copied(),
            }
        })
        .collect();
    let changes: Vec<ChangeView> =
        crate::state::changes::since(&state.verdicts, None, now - 7 * DAY_MS)
            .into_iter()
            .rev()
            .take(MAX_CHANGES)
            .map(|(check, c)| ChangeView {
                check: check.to_owned(),
                at_ms: c.at_ms,
                summary: c.summary.clone(),
                severity: c.severity.map_or("ignored".into(), |s| s.to_string()),
            })
            .collect();
    StatusView {
        changes,
        now_ms: now,
        leader,
        checks,
        next: page.next,
        matched: page.matched,
        verdicts: page.verdicts,
        impaired: state
            .impaired
            .iter()
            .map(|(r, i)| (r.clone(), i.reason.clone()))
            .collect(),
        incidents: state
            .incidents
            .open
            .values()
            .filter_map(|id| state.incidents.all.get(id))
            .map(|i| {
                (
                    i.id,
                    i.check.clone(),
                    i.verdict.name().to_owned(),
                    i.opened_ms,
                )
            })
            .collect(),
    }
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(p: Option<f64>) -> String {
    p.map_or("–".into(), |p| format!("{p:.2} %"))
}

/// Renders the HTML page.
pub fn html(v: &StatusView) -> String {
    let mut rows = String::new();
    for c in &v.checks {
        let regions: Vec<String> = c
            .regions
            .iter()
            .map(|(r, s)| format!("<span class=\"r {}\">{}: {}</span>", esc(s), esc(r), esc(s)))
            .collect();
        let incident = c.incident.map_or(String::new(), |id| format!("#{id}"));
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=\"v {}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&c.name),
            esc(&c.verdict),
            esc(&c.verdict.to_uppercase()),
            regions.join(" "),
            pct(c.uptime_pct[0]),
            pct(c.uptime_pct[1]),
            pct(c.uptime_pct[2]),
            incident
        ));
    }
    let mut verdicts: Vec<(&&str, &usize)> = v.verdicts.iter().collect();
    verdicts.sort_by_key(|(name, _)| std::cmp::Reverse(severity(name)));
    let counts: Vec<String> = verdicts
        .iter()
        .map(|(name, n)| format!("{n} {}", esc(name)))
        .collect();
    let mut summary = format!(
        "<p class=\"summary\">{} checks: {}. Listed: {} of {} selected{}.</p>\n",
        v.verdicts.values().sum::<usize>(),
        counts.join(", "),
        v.checks.len(),
        v.matched,
        if v.next.is_some() {
            " (more: <code>?after=</code>)"
        } else {
            ""
        }
    );
    if v.checks.is_empty() {
        summary.push_str("<p>Nothing to show: no check matches.</p>\n");
    }
    let mut mesh = String::new();
    for (region, why) in &v.impaired {
        mesh.push_str(&format!(
            "<p class=\"impaired\">vantage {} impaired (its results do not vote): {}</p>\n",
            esc(region),
            esc(why)
        ));
    }
    let mut incidents = String::new();
    for (id, subject, verdict, opened) in &v.incidents {
        incidents.push_str(&format!(
            "<li>#{id} {} — {} since {}</li>\n",
            esc(subject),
            esc(&verdict.to_uppercase()),
            rfc3339(*opened)
        ));
    }
    if incidents.is_empty() {
        incidents.push_str("<li>none</li>\n");
    }
    let mut changes = String::new();
    for c in &v.changes {
        changes.push_str(&format!(
            "<li>{} {} <span class=\"v {}\">{}</span>: {}</li>\n",
            rfc3339(c.at_ms),
            esc(&c.check),
            esc(&c.severity),
            esc(&c.severity),
            esc(&c.summary)
        ));
    }
    if changes.is_empty() {
        changes.push_str("<li>none</li>\n");
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">
<title>vantage status</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: left; }}
.v.ok {{ color: #17803d; }} .v.warning, .v.divergent, .v.blind, .v.changed {{ color: #a15c00; }}
.v.critical {{ color: #b91c1c; }}
.v.regional {{ color: #b45309; }} .v.outage {{ color: #b91c1c; font-weight: bold; }}
.r {{ padding: 0 .3em; border-radius: 3px; }} .r.up {{ background: #dcfce7; }} .r.down {{ background: #fee2e2; }}
.r.stale, .r.unknown {{ background: #eee; }} .impaired {{ color: #a15c00; }}
</style></head><body>
<h1>vantage status</h1>
<p>as of {} · leader {}</p>
{}{}<table>
<tr><th>check</th><th>verdict</th><th>regions</th><th>24 h</th><th>7 d</th><th>30 d</th><th>incident</th></tr>
{}</table>
<h2>open incidents</h2>
<ul>
{}</ul>
<h2>changes (7 days)</h2>
<ul>
{}</ul>
</body></html>
"#,
        rfc3339(v.now_ms),
        v.leader.map_or("unknown".into(), |l| l.to_string()),
        mesh,
        summary,
        rows,
        incidents,
        changes
    )
}

/// What the pages read: the applied state and who leads.
#[derive(Clone)]
struct Source {
    applied: Replica,
    raft: Raft,
}

/// The query parameters of `/` and `/api/status`.
#[derive(Debug, Default, PartialEq, serde::Deserialize)]
struct Params {
    verdict: Option<String>,
    check: Option<String>,
    label: Option<String>,
    region: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

impl Params {
    fn is_empty(&self) -> bool {
        *self == Params::default()
    }

    fn filter(&self) -> Result<Filter, FilterError> {
        let list = |v: &Option<String>| -> Vec<String> {
            v.iter()
                .flat_map(|s| s.split(','))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Filter::new(
            &list(&self.verdict),
            self.check.as_deref().unwrap_or_default(),
            &list(&self.label),
            &list(&self.region),
        )
    }
}

/// Most problems listed on the page by default.
const PAGE_PROBLEMS: usize = 500;

async fn current(source: &Source, filter: &Filter, params: &Params, limit: usize) -> StatusView {
    let leader = source.raft.metrics().borrow().current_leader;
    let applied = source.applied.read().await;
    let after = params.after.as_deref().unwrap_or_default();
    view(&applied.state, leader, now_ms(), filter, after, limit)
}

fn bad_request(e: &FilterError) -> axum::response::Response {
    (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

async fn page(State(source): State<Source>, Query(params): Query<Params>) -> impl IntoResponse {
    // By default: the problems, worst first; the rest counted.
    let (filter, limit) = if params.is_empty() {
        (Filter::problems(), PAGE_PROBLEMS)
    } else {
        match params.filter() {
            Ok(f) => (f, params.limit.unwrap_or(0)),
            Err(e) => return bad_request(&e),
        }
    };
    let mut view = current(&source, &filter, &params, limit).await;
    if params.is_empty() {
        view.checks
            .sort_by_key(|c| std::cmp::Reverse(severity(&c.verdict)));
    }
    Html(html(&view)).into_response()
}

async fn api(State(source): State<Source>, Query(params): Query<Params>) -> impl IntoResponse {
    let filter = match params.filter() {
        Ok(f) => f,
        Err(e) => return bad_request(&e),
    };
    let view = current(&source, &filter, &params, params.limit.unwrap_or(0)).await;
    let body = serde_json::to_string(&view).unwrap_or_else(|_| "{}".into());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `/` and `/api/status`, from `applied`; `raft` says who leads.
pub fn routes(applied: Replica, raft: Raft) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(api))
        .with_state(Source { applied, raft })
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_is_escaped() {
        assert_eq!(
            super::esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
