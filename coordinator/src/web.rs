//! The read-only status page (`/`), a page per check (`/check/NAME`) and
//! the JSON status API (`/api/status`) on a coordinator's HTTP port.
//!
//! The status page shows per check its global verdict, per-region state,
//! a bar of the last 30 days (a cell a day, the last 24 hours by the hour
//! on hovering it) coloured by the worst verdict, uptime over 30 d / 24 h
//! / 7 d, a latency sparkline per region and its open incident; then
//! impaired vantages, the incidents of the last 30 days and the changes of
//! the last 7. A check's page adds the bars at full size, the per-region
//! table (latest result, latency, 30 days of results) and its incidents
//! with their timelines. Server-rendered HTML with inline CSS and SVG: no
//! JavaScript, no external assets. Built from the node's applied state;
//! no channels, settings or secrets are ever shown (incident timelines
//! leave out the notifications and who acknowledged).
//!
//! `/` and `/api/status` take the filters of `vantagectl status` as query
//! parameters (`verdict`, `label` and `region` comma-separated; `check` a
//! glob; `limit`, `after` to page). Without any, the API lists every check
//! and the page lists the problems, worst first, then OK checks up to a
//! page, and counts the rest.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde::Serialize;
use vantage_common::clock::{now_ms, rfc3339};

use crate::node::Replica;
use crate::selection::{Filter, FilterError, Page, select};
use crate::state::State as Replicated;
use crate::state::rollup::DAY_MS;
use crate::verdict::severity;

mod check;
mod history;

use history::{History, IncidentLine, bar_with_hours, sparkline};

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
    page_view(
        state,
        leader,
        now,
        filter,
        select(state, filter, after, limit),
    )
}

/// The view of `page` (selected by `filter`).
fn page_view(
    state: &Replicated,
    leader: Option<u64>,
    now: i64,
    filter: &Filter,
    page: Page<'_>,
) -> StatusView {
    let checks = page
        .checks
        .iter()
        .map(|(c, v)| {
            let uptime_pct = [DAY_MS, 7 * DAY_MS, 30 * DAY_MS]
                .map(|window| v.time_since(now - window, now).uptime_pct());
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

/// `2026-11-19 08:00 UTC`.
fn when(ms: i64) -> String {
    let t = rfc3339(ms);
    format!("{} {} UTC", &t[..10], &t[11..16])
}

fn pct(p: Option<f64>) -> String {
    p.map_or("–".into(), |p| format!("{p:.2} %"))
}

/// The page's style: no external assets, nothing that needs JavaScript.
const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
a { color: inherit; }
table { border-collapse: collapse; } td, th { padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: left; vertical-align: middle; }
th { white-space: nowrap; }
.v.ok { color: #17803d; } .v.warning, .v.divergent, .v.blind, .v.changed { color: #a15c00; }
.v.critical { color: #b91c1c; }
.v.regional { color: #b45309; } .v.outage { color: #b91c1c; font-weight: bold; }
.r { padding: 0 .3em; border-radius: 3px; white-space: nowrap; } .r.up { background: #dcfce7; } .r.down { background: #fee2e2; }
.r.stale, .r.unknown { background: #eee; } .impaired { color: #a15c00; }
.bar { display: inline-flex; gap: 1px; vertical-align: middle; }
.c { display: inline-block; width: 10px; height: 10px; border-radius: 1px; }
.bar .c { width: 6px; height: 18px; }
.big .bar .c { width: 16px; height: 30px; }
.c.ok { background: #22a34a; } .c.noted { background: #f59e0b; } .c.down { background: #dc2626; } .c.none { background: #d4d4d4; }
.history { position: relative; display: inline-block; }
.history .pop { display: none; position: absolute; left: 0; top: 100%; z-index: 1; background: #fff; border: 1px solid #ccc; padding: .3em; white-space: nowrap; font-size: small; }
.history:hover .pop { display: block; }
.up30 { font-weight: bold; } .small { font-size: small; color: #666; }
.spark { display: flex; align-items: center; gap: .3em; white-space: nowrap; }
.spark .rn { min-width: 2em; font-size: small; } .spark .ms { font-size: small; color: #444; }
svg.sl polyline { fill: none; stroke: #2563eb; stroke-width: 1.5; } svg.sl circle { fill: #2563eb; }
.legend .c { margin: 0 .2em 0 .8em; vertical-align: middle; }
ol.timeline { font-size: small; color: #444; margin: .2em 0 .8em; }
"#;

/// The shell around a page's body.
fn document(title: &str, refresh: bool, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{}\n<title>{}</title>\n<style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        if refresh {
            "<meta http-equiv=\"refresh\" content=\"30\">"
        } else {
            ""
        },
        esc(title)
    )
}

/// What the colours of the bars mean.
fn legend() -> String {
    [
        ("ok", "OK"),
        ("noted", "regional, warning or changed"),
        ("down", "outage"),
        ("none", "no data"),
    ]
    .iter()
    .map(|(c, what)| format!("<span class=\"c {c}\"></span>{what}"))
    .collect::<Vec<_>>()
    .join(" ")
}

fn region_states(regions: &[(String, String)]) -> String {
    regions
        .iter()
        .map(|(r, s)| format!("<span class=\"r {}\">{}: {}</span>", esc(s), esc(r), esc(s)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn incident_list(incidents: &[IncidentLine], now_ms: i64) -> String {
    let mut out = String::new();
    for i in incidents {
        out.push_str(&format!(
            "<li>#{} <a href=\"/check/{}\">{}</a> — worst <span class=\"v {}\">{}</span>, {}, opened {}: {}",
            i.id,
            esc(&i.check),
            esc(&i.check),
            esc(&i.worst),
            esc(&i.worst.to_uppercase()),
            i.duration(now_ms),
            when(i.opened_ms),
            esc(&i.summary)
        ));
        if !i.timeline.is_empty() {
            out.push_str("<ol class=\"timeline\">");
            for (at, what) in &i.timeline {
                out.push_str(&format!("<li>{} {}</li>", when(*at), esc(what)));
            }
            out.push_str("</ol>");
        }
        out.push_str("</li>\n");
    }
    if out.is_empty() {
        out.push_str("<li>none</li>\n");
    }
    out
}

/// The status page: `v` with each listed check's history (`histories`,
/// in the same order) and the incidents of the last 30 days; `listed`
/// says what is listed of what (HTML).
fn html(v: &StatusView, histories: &[History], incidents: &[IncidentLine], listed: &str) -> String {
    let mut rows = String::new();
    for (c, h) in v.checks.iter().zip(histories) {
        let incident = c.incident.map_or(String::new(), |id| format!("#{id}"));
        let mut sparks: String = h.latency.iter().map(|l| sparkline(l, 72, 18)).collect();
        if sparks.is_empty() {
            sparks.push('–'); // no passing result in 24 h
        }
        rows.push_str(&format!(
            "<tr><td><a href=\"/check/{}\">{}</a></td><td class=\"v {}\">{}</td><td>{}</td><td>{}</td><td><span class=\"up30\">{}</span><br><span class=\"small\">24 h {}<br>7 d {}</span></td><td>{}</td><td>{}</td></tr>\n",
            esc(&c.name),
            esc(&c.name),
            esc(&c.verdict),
            esc(&c.verdict.to_uppercase()),
            region_states(&c.regions),
            bar_with_hours(h),
            pct(c.uptime_pct[2]),
            pct(c.uptime_pct[0]),
            pct(c.uptime_pct[1]),
            sparks,
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
        "<p class=\"summary\">{} checks: {}. Listed: {listed}.</p>\n",
        v.verdicts.values().sum::<usize>(),
        counts.join(", "),
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
    let mut changes = String::new();
    for c in &v.changes {
        changes.push_str(&format!(
            "<li>{} <a href=\"/check/{}\">{}</a> <span class=\"v {}\">{}</span>: {}</li>\n",
            when(c.at_ms),
            esc(&c.check),
            esc(&c.check),
            esc(&c.severity),
            esc(&c.severity),
            esc(&c.summary)
        ));
    }
    if changes.is_empty() {
        changes.push_str("<li>none</li>\n");
    }
    let body = format!(
        r#"<h1>vantage status</h1>
<p>as of {} · leader {}</p>
{}{}<p class="legend small">last 30 days, a day a cell (hover the bar for the last 24 hours by the hour): {}</p>
<table>
<tr><th>check</th><th>verdict</th><th>regions</th><th>30 days</th><th>uptime 30 d</th><th>latency, 24 h</th><th>incident</th></tr>
{}</table>
<h2>incidents (30 days)</h2>
<ul>
{}</ul>
<h2>changes (7 days)</h2>
<ul>
{}</ul>
"#,
        when(v.now_ms),
        v.leader.map_or("unknown".into(), |l| l.to_string()),
        mesh,
        summary,
        legend(),
        rows,
        incident_list(incidents, v.now_ms),
        changes
    );
    document("vantage status", true, &body)
}

/// Who leads, as far as this node knows.
type Leader = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// What the pages read: the applied state and who leads.
#[derive(Clone)]
struct Source {
    applied: Replica,
    leader: Leader,
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

    /// The query of the page after `next`, with the same filters.
    fn next_page(&self, next: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("verdict", &self.verdict),
            ("check", &self.check),
            ("label", &self.label),
            ("region", &self.region),
        ] {
            if let Some(v) = value {
                q.append_pair(key, v);
            }
        }
        if let Some(limit) = self.limit {
            q.append_pair("limit", &limit.to_string());
        }
        q.append_pair("after", next);
        q.finish()
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

/// Most problems listed on the page by default (the worst).
const PAGE_PROBLEMS: usize = 100;
/// Rows the default page fills with OK checks after the problems.
const PAGE_ROWS: usize = 50;
/// Checks listed on a page with filters and no `limit`.
const PAGE_LIMIT: usize = 100;
/// Incidents listed on the page.
const PAGE_INCIDENTS: usize = 50;

fn bad_request(e: &FilterError) -> axum::response::Response {
    (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

async fn page(State(source): State<Source>, Query(params): Query<Params>) -> impl IntoResponse {
    let leader = (source.leader)();
    let applied = source.applied.read().await;
    let state = &applied.state;
    let now = now_ms();
    let (filter, page, more) = if params.is_empty() {
        // By default: the problems, worst first, then OK checks up to a
        // page; the rest counted.
        let mut page = select(state, &Filter::problems(), "", 0);
        page.checks
            .sort_by_key(|(_, v)| std::cmp::Reverse(severity(v.verdict.name())));
        page.checks.truncate(PAGE_PROBLEMS);
        let room = PAGE_ROWS.saturating_sub(page.checks.len());
        let ok = select(state, &Filter::healthy(), "", room.max(1));
        let listed = if room == 0 { 0 } else { ok.checks.len() };
        let mut more = format!("{} of {} problems", page.checks.len(), page.matched);
        if page.checks.len() < page.matched {
            more.push_str(&format!(
                " (the worst; by name: <a href=\"?verdict={0}\"><code>?verdict={0}</code></a>)",
                crate::selection::problem_verdicts().join(",")
            ));
        }
        if listed < ok.matched {
            more.push_str(&format!(
                " and {listed} of {} OK (all: <a href=\"?verdict=ok\"><code>?verdict=ok</code></a>)",
                ok.matched
            ));
        } else if listed > 0 {
            more.push_str(&format!(" and {listed} OK"));
        }
        if room > 0 {
            page.checks.extend(ok.checks);
        }
        (Filter::default(), page, more)
    } else {
        let filter = match params.filter() {
            Ok(f) => f,
            Err(e) => return bad_request(&e),
        };
        let after = params.after.as_deref().unwrap_or_default();
        let limit = params.limit.unwrap_or(PAGE_LIMIT);
        let page = select(state, &filter, after, limit);
        let more = format!(
            "{} of {} selected{}",
            page.checks.len(),
            page.matched,
            page.next.as_deref().map_or(String::new(), |next| {
                format!(
                    " (<a href=\"?{}\">next page</a>)",
                    esc(&params.next_page(next))
                )
            })
        );
        (filter, page, more)
    };
    let histories: Vec<History> = page
        .checks
        .iter()
        .map(|(c, v)| History::of(state, &c.name, v, now))
        .collect();
    let status = page_view(state, leader, now, &filter, page);
    let incidents: Vec<IncidentLine> = history::incidents(state, now)
        .take(PAGE_INCIDENTS)
        .map(|i| IncidentLine::of(i, false))
        .collect();
    Html(html(&status, &histories, &incidents, &more)).into_response()
}

async fn check_page(State(source): State<Source>, Path(name): Path<String>) -> impl IntoResponse {
    let leader = (source.leader)();
    let applied = source.applied.read().await;
    match check::html(&applied.state, &name, leader, now_ms()) {
        Some(page) => Html(page).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Html(document(
                "no such check",
                false,
                &format!(
                    "<h1>no check named {}</h1>\n<p><a href=\"/\">all checks</a></p>\n",
                    esc(&name)
                ),
            )),
        )
            .into_response(),
    }
}

async fn api(State(source): State<Source>, Query(params): Query<Params>) -> impl IntoResponse {
    let filter = match params.filter() {
        Ok(f) => f,
        Err(e) => return bad_request(&e),
    };
    let leader = (source.leader)();
    let applied = source.applied.read().await;
    let after = params.after.as_deref().unwrap_or_default();
    let limit = params.limit.unwrap_or(0);
    let view = view(&applied.state, leader, now_ms(), &filter, after, limit);
    drop(applied);
    let body = serde_json::to_string(&view).unwrap_or_else(|_| "{}".into());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `/`, `/check/NAME` and `/api/status`, from `applied`; `leader` says
/// who leads.
pub fn routes(
    applied: Replica,
    leader: impl Fn() -> Option<u64> + Send + Sync + 'static,
) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/check/{name}", get(check_page))
        .route("/api/status", get(api))
        .with_state(Source {
            applied,
            leader: Arc::new(leader),
        })
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
