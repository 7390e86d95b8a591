//! A check's history as the status page draws it: the last 30 days by the
//! day and the last 24 hours by the hour, each cell coloured by the worst
//! verdict in it (green OK, amber REGIONAL, WARNING, DIVERGENT or a change,
//! red OUTAGE, grey no data); the uptime; per region the mean latency of
//! each hour; the incidents of the last 30 days. Read from the verdict and
//! result roll-ups the state keeps, so it costs the same whatever the
//! history.

use std::collections::BTreeMap;

use vantage_common::clock::human_duration;

use crate::state::State;
use crate::state::incidents::Incident;
use crate::state::rollup::{DAY_MS, DAYS, HOUR_MS, HOURS};
use crate::state::verdicts::{CheckVerdict, VerdictSpans};

use super::{esc, when};

/// How a cell is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shade {
    /// OK all along.
    Ok,
    /// REGIONAL, WARNING, DIVERGENT or a change, no OUTAGE.
    Noted,
    /// Some OUTAGE.
    Down,
    /// Nothing decided (no results yet, or BLIND).
    NoData,
}

impl Shade {
    /// Its CSS class (and the word for it).
    pub(super) fn class(self) -> &'static str {
        match self {
            Shade::Ok => "ok",
            Shade::Noted => "noted",
            Shade::Down => "down",
            Shade::NoData => "none",
        }
    }
}

/// One day or hour.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cell {
    /// Its start (ms since the epoch).
    pub(super) start_ms: i64,
    /// Its colour.
    pub(super) shade: Shade,
    /// What hovering it says: when, the uptime, the time not OK, changes.
    pub(super) title: String,
}

/// One region's latency over the last 24 hours.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Latency {
    /// The region.
    pub(super) region: String,
    /// Mean latency (ms) of each hour, oldest first; `None` for an hour
    /// without a passing or warning result.
    pub(super) hourly_ms: Vec<Option<f64>>,
}

/// One incident as listed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct IncidentLine {
    /// Its id.
    pub(super) id: u64,
    /// The check.
    pub(super) check: String,
    /// Worst verdict seen.
    pub(super) worst: String,
    /// Opened (ms since the epoch).
    pub(super) opened_ms: i64,
    /// Resolved, or `None` while open.
    pub(super) resolved_ms: Option<i64>,
    /// What it says now (or said last).
    pub(super) summary: String,
    /// The events about the check itself (no notifications, no names of
    /// who acknowledged): (at, what).
    pub(super) timeline: Vec<(i64, String)>,
}

impl IncidentLine {
    /// The line of `i`, with its timeline if `timeline`.
    pub(super) fn of(i: &Incident, timeline: bool) -> Self {
        IncidentLine {
            id: i.id,
            check: i.check.clone(),
            worst: i.worst.clone(),
            opened_ms: i.opened_ms,
            resolved_ms: i.resolved_ms,
            summary: crate::state::incidents::describe(&i.verdict),
            timeline: if timeline {
                i.timeline
                    .iter()
                    .filter(|e| e.is_about_the_check())
                    .map(|e| (e.at_ms, e.what.clone()))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// `lasted 12m00s` or `open for 3h02m`.
    pub(super) fn duration(&self, now_ms: i64) -> String {
        match self.resolved_ms {
            Some(end) => format!("lasted {}", human_duration(end - self.opened_ms)),
            None => format!("open for {}", human_duration(now_ms - self.opened_ms)),
        }
    }
}

/// A check's history.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct History {
    /// The last 30 days, oldest first, today last.
    pub(super) days: Vec<Cell>,
    /// The last 24 hours, oldest first, this hour last.
    pub(super) hours: Vec<Cell>,
    /// Uptime over the 30 days (REGIONAL counts as up, BLIND is left out).
    pub(super) uptime_pct: Option<f64>,
    /// Per region.
    pub(super) latency: Vec<Latency>,
}

impl History {
    /// The history of `check` (whose verdict is `v`) as of `now_ms`.
    pub(super) fn of(state: &State, check: &str, v: &CheckVerdict, now_ms: i64) -> Self {
        let spans = v.rollups_until(now_ms);
        let changes: Vec<i64> = v.drift.changes.iter().map(|c| c.at_ms).collect();
        let today = now_ms - now_ms.rem_euclid(DAY_MS);
        let this_hour = now_ms - now_ms.rem_euclid(HOUR_MS);
        let first_day = today - (DAYS as i64 - 1) * DAY_MS;
        let first_hour = this_hour - (HOURS as i64 - 1) * HOUR_MS;
        let days = cells(spans.days(), &changes, first_day, DAY_MS, DAYS);
        let hours = cells(spans.hours(), &changes, first_hour, HOUR_MS, HOURS);
        let uptime_pct = v.time_since(first_day, now_ms).uptime_pct();
        let latency = state
            .results
            .get(check)
            .map(|r| {
                r.latency
                    .iter()
                    .map(|(region, _)| {
                        let mut hourly_ms = vec![None; HOURS];
                        for (at, mean) in r.hourly_latency(region) {
                            let hour = usize::try_from((at - first_hour) / HOUR_MS).ok();
                            if let Some(slot) = hour.and_then(|h| hourly_ms.get_mut(h)) {
                                *slot = Some(mean);
                            }
                        }
                        Latency {
                            region: region.to_string(),
                            hourly_ms,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        History {
            days,
            hours,
            uptime_pct,
            latency,
        }
    }
}

/// `n` cells of `len` from `first`, from the roll-up buckets `buckets`
/// (start, spans) and the times of changes.
fn cells<'a>(
    buckets: impl Iterator<Item = (i64, &'a VerdictSpans)>,
    changes: &[i64],
    first: i64,
    len: i64,
    n: usize,
) -> Vec<Cell> {
    let spans: BTreeMap<i64, VerdictSpans> = buckets
        .filter(|(at, _)| *at >= first)
        .map(|(at, s)| (at, *s))
        .collect();
    (0..n as i64)
        .map(|i| {
            let start = first + i * len;
            let s = spans.get(&start).copied().unwrap_or_default();
            let changed = changes
                .iter()
                .filter(|at| (start..start + len).contains(*at))
                .count();
            cell(start, len, &s, changed)
        })
        .collect()
}

fn cell(start: i64, len: i64, s: &VerdictSpans, changed: usize) -> Cell {
    let shade = if s.down_ms > 0 {
        Shade::Down
    } else if s.degraded_ms > 0 || s.noted_ms > 0 || changed > 0 {
        Shade::Noted
    } else if s.up_ms > 0 {
        Shade::Ok
    } else {
        Shade::NoData
    };
    let mut title = if len == DAY_MS {
        when(start)[..10].to_owned()
    } else {
        when(start)
    };
    let up = i64::from(s.up_ms) + i64::from(s.noted_ms) + i64::from(s.degraded_ms);
    let decided = up + i64::from(s.down_ms);
    if decided == 0 {
        title.push_str(": no data");
    } else {
        title.push_str(&format!(": {:.2} % up", up as f64 * 100.0 / decided as f64));
    }
    for (ms, what) in [
        (s.down_ms, "outage"),
        (s.degraded_ms, "regional"),
        (s.noted_ms, "warning"),
        (s.unknown_ms, "blind"),
    ] {
        if ms > 0 {
            title.push_str(&format!(", {what} {}", human_duration(i64::from(ms))));
        }
    }
    match changed {
        0 => {}
        1 => title.push_str(", 1 change"),
        n => title.push_str(&format!(", {n} changes")),
    }
    Cell {
        start_ms: start,
        shade,
        title,
    }
}

/// The incidents (but one-shot changes, listed as changes) opened in the
/// last 30 days or still open, newest first.
pub(super) fn incidents(state: &State, now_ms: i64) -> impl Iterator<Item = &Incident> {
    let since = now_ms - DAYS as i64 * DAY_MS;
    state
        .incidents
        .all
        .values()
        .rev()
        .filter(|i| i.worst != "changed")
        .filter(move |i| i.resolved_ms.is_none() || i.opened_ms >= since)
}

/// A bar of cells (`class` says which: `days` or `hours`), each with its
/// title for hovering.
pub(super) fn bar(cells: &[Cell], class: &str) -> String {
    let mut out = format!("<span class=\"bar {class}\">");
    for c in cells {
        out.push_str(&format!(
            "<span class=\"c {}\" title=\"{}\"></span>",
            c.shade.class(),
            esc(&c.title)
        ));
    }
    out.push_str("</span>");
    out
}

/// The 30-day bar with the 24-hour one shown on hovering it (CSS only).
pub(super) fn bar_with_hours(h: &History) -> String {
    format!(
        "<span class=\"history\">{}<span class=\"pop\">last 24 h {}</span></span>",
        bar(&h.days, "days"),
        bar(&h.hours, "hours")
    )
}

/// An inline SVG sparkline of `l` (`width` × `height` px), scaled to its
/// own highest hour, with the latest hour's mean after it.
pub(super) fn sparkline(l: &Latency, width: u32, height: u32) -> String {
    let max = l.hourly_ms.iter().flatten().fold(0.0_f64, |m, v| m.max(*v));
    let latest = l.hourly_ms.iter().rev().flatten().next();
    let n = l.hourly_ms.len().max(2) as f64;
    let (w, h) = (f64::from(width), f64::from(height));
    let point = |i: usize, v: f64| {
        let x = i as f64 * (w - 2.0) / (n - 1.0) + 1.0;
        let y = if max > 0.0 {
            h - 1.0 - v / max * (h - 2.0)
        } else {
            h - 1.0
        };
        format!("{x:.1},{y:.1}")
    };
    // One line per run of hours with data; a lone hour is a dot.
    let mut lines = String::new();
    let mut run: Vec<String> = Vec::new();
    let mut flush = |run: &mut Vec<String>| {
        match run.len() {
            0 => {}
            1 => {
                if let Some((x, y)) = run[0].split_once(',') {
                    lines.push_str(&format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"1.5\"/>"));
                }
            }
            _ => lines.push_str(&format!("<polyline points=\"{}\"/>", run.join(" "))),
        }
        run.clear();
    };
    for (i, v) in l.hourly_ms.iter().enumerate() {
        match v {
            Some(v) => run.push(point(i, *v)),
            None => flush(&mut run),
        }
    }
    flush(&mut run);
    let title = match latest {
        Some(ms) => format!(
            "{}: {ms:.0} ms in the latest hour with results, at most {max:.0} ms an hour over 24 h",
            l.region
        ),
        None => format!("{}: no passing result in 24 h", l.region),
    };
    format!(
        "<span class=\"spark\"><span class=\"rn\">{}</span><svg class=\"sl\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\"><title>{}</title>{lines}</svg><span class=\"ms\">{}</span></span>",
        esc(&l.region),
        esc(&title),
        latest.map_or("–".into(), |ms| format!("{ms:.0} ms"))
    )
}
