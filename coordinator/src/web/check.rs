//! `/check/NAME`: one check's page — its verdict, the last 24 hours by the
//! hour and 30 days by the day at full size, uptime, per region its state,
//! latest result, latency sparkline and 30 days of results, its incidents
//! of the last 30 days with their timelines, and its changes.

use super::history::{self, History, IncidentLine, bar, sparkline};
use super::{document, esc, incident_list, legend, pct, when};
use crate::state::State;
use crate::state::rollup::DAY_MS;

/// The page of check `name`, or `None` if there is no such check (or it
/// has no verdict yet).
pub(super) fn html(state: &State, name: &str, leader: Option<u64>, now_ms: i64) -> Option<String> {
    let decl = state.declared.check(name)?;
    let v = state.verdicts.get(name)?;
    let h = History::of(state, name, v, now_ms);
    let results = state.results.get(name);
    let uptime =
        [DAY_MS, 7 * DAY_MS].map(|window| v.time_since(now_ms - window, now_ms).uptime_pct());
    let mut rows = String::new();
    for (region, tracker) in v.regions.iter() {
        let state_name = tracker.state.name();
        let latest =
            results
                .and_then(|r| r.latest.get(region.as_str()))
                .map_or("–".to_owned(), |l| {
                    let e = &l.entry;
                    format!(
                        "{} {} <span class=\"small\">({} ms, {})</span>",
                        e.status.as_str(),
                        esc(&e.message),
                        e.duration_ms,
                        when(e.started_at_ms)
                    )
                });
        let spark = h
            .latency
            .iter()
            .find(|l| l.region == region.as_str())
            .map_or("–".to_owned(), |l| sparkline(l, 160, 32));
        let counts = results
            .and_then(|r| r.rollups.get(region.as_str()))
            .map(|r| r.since(now_ms - 30 * DAY_MS));
        let (counted, ok_pct) = counts.map_or(("–".to_owned(), None), |c| {
            let all = c.pass + c.warn + c.fail;
            (
                format!(
                    "{} pass, {} warn, {} fail, {} error",
                    c.pass, c.warn, c.fail, c.error
                ),
                (all > 0).then(|| f64::from(c.pass + c.warn) * 100.0 / f64::from(all)),
            )
        });
        rows.push_str(&format!(
            "<tr><td>{}</td><td><span class=\"r {state_name}\">{state_name}</span></td><td>{latest}</td><td>{spark}</td><td>{counted}</td><td>{}</td></tr>\n",
            esc(region.as_str()),
            pct(ok_pct)
        ));
    }
    let incidents: Vec<IncidentLine> = history::incidents(state, now_ms)
        .filter(|i| i.check == name)
        .map(|i| IncidentLine::of(i, true))
        .collect();
    let mut changes = String::new();
    for c in v.drift.changes.iter().rev() {
        changes.push_str(&format!("<li>{} {}</li>\n", when(c.at_ms), esc(&c.summary)));
    }
    if changes.is_empty() {
        changes.push_str("<li>none</li>\n");
    }
    let labels: Vec<String> = decl
        .labels
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect();
    let verdict = v.verdict.name();
    let body = format!(
        r#"<p><a href="/">all checks</a></p>
<h1>{name}</h1>
<p><span class="v {verdict}">{}</span> since {} · {} {} · {}</p>
<p class="legend small">{}</p>
<h2>last 24 hours</h2>
<p class="big">{}</p>
<p class="small">an hour a cell, from {} to now; hover a cell for its figures</p>
<h2>last 30 days</h2>
<p class="big">{}</p>
<p class="small">a day a cell (UTC), from {} to today</p>
<p>uptime: <span class="up30">{}</span> over 30 days · {} over 7 days · {} over 24 hours</p>
<h2>regions</h2>
<table>
<tr><th>region</th><th>state</th><th>latest result</th><th>latency, 24 h</th><th>results, 30 days</th><th>passing</th></tr>
{rows}</table>
<h2>incidents (30 days)</h2>
<ul>
{}</ul>
<h2>changes</h2>
<ul>
{changes}</ul>
<p class="small">as of {} · leader {}</p>
"#,
        esc(&verdict.to_uppercase()),
        when(v.since_ms),
        esc(decl.kind.name()),
        esc(&decl.target),
        if labels.is_empty() {
            "no labels".to_owned()
        } else {
            labels.join(", ")
        },
        legend(),
        bar(&h.hours, "hours"),
        h.hours.first().map_or(String::new(), |c| when(c.start_ms)),
        bar(&h.days, "days"),
        h.days
            .first()
            .map_or(String::new(), |c| when(c.start_ms)[..10].to_owned()),
        pct(h.uptime_pct),
        pct(uptime[1]),
        pct(uptime[0]),
        incident_list(&incidents, now_ms),
        when(now_ms),
        leader.map_or("unknown".into(), |l| l.to_string()),
        name = esc(name),
    );
    Some(document(&format!("{name} · vantage"), true, &body))
}
