//! `vantagectl apply` and `vantagectl checks`: the declared configuration.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use vantage_proto::v1::{
    AckIncidentRequest, ApplyRequest, ChangeInfo, CheckInfo, GetCheckRequest, GetIncidentRequest,
    GetResultsRequest, HistoryRequest, IncidentInfo, ListChangesRequest, ListChecksRequest,
    ListIncidentsRequest, ResultInfo, StatusReply, StatusRequest,
};

use vantage_common::clock::rfc3339;

use super::{ConnArgs, Format, explain};

/// Check listing commands.
#[derive(Debug, Subcommand)]
pub enum ChecksCommand {
    /// All declared checks.
    List,
    /// One check in full.
    Get {
        /// Check name.
        name: String,
    },
}

/// `vantagectl apply -f FILE [--dry-run]`.
pub async fn apply(file: PathBuf, dry_run: bool, conn: &ConnArgs, format: Format) -> Result<()> {
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut client = conn.connect().await?;
    let request = ApplyRequest {
        source_name: file.display().to_string(),
        toml: text,
        dry_run,
    };
    let reply = match client.operator.apply(request).await {
        Ok(r) => r.into_inner(),
        // Validation errors already name file, line and field.
        Err(s) if s.code() == tonic::Code::InvalidArgument => anyhow::bail!("{}", s.message()),
        Err(s) => anyhow::bail!("{}: {}", client.endpoint, explain(&s)),
    };
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"created": reply.created, "changed": reply.changed, "deleted": reply.deleted,
                "routing_changed": reply.routing_changed, "applied": reply.applied})
        ),
        Format::Text => {
            for (sign, names) in [
                ("+", &reply.created),
                ("~", &reply.changed),
                ("-", &reply.deleted),
            ] {
                for n in names {
                    println!("{sign} check {n}");
                }
            }
            if reply.routing_changed {
                println!("~ channels/routes");
            }
            let total = reply.created.len() + reply.changed.len() + reply.deleted.len();
            let verb = if reply.applied {
                "applied"
            } else {
                "dry run, nothing written"
            };
            println!(
                "{} created, {} changed, {} deleted ({verb}; {total} check changes)",
                reply.created.len(),
                reply.changed.len(),
                reply.deleted.len()
            );
        }
    }
    Ok(())
}

fn json(c: &CheckInfo) -> serde_json::Value {
    let params: serde_json::Value = serde_json::from_str(&c.params_json).unwrap_or_default();
    serde_json::json!({"name": c.name, "kind": c.kind, "target": c.target, "interval": c.interval,
        "timeout": c.timeout, "regions": c.regions, "labels": c.labels, "fail_after": c.fail_after,
        "recover_after": c.recover_after, "quorum": c.quorum, "severity": c.severity, "routes": c.routes,
        "on_change": c.on_change, "params": params,
        "baseline": (!c.baseline.is_empty()).then_some(&c.baseline),
        "baseline_since": (c.baseline_since_ms > 0).then(|| rfc3339(c.baseline_since_ms))})
}

fn change_json(c: &ChangeInfo) -> serde_json::Value {
    serde_json::json!({"check": c.check, "at": rfc3339(c.at_ms), "at_ms": c.at_ms,
        "summary": c.summary, "severity": (!c.severity.is_empty()).then_some(&c.severity),
        "renewal": c.renewal, "regions": c.regions,
        "incident": (c.incident > 0).then_some(c.incident), "old": c.old, "new": c.new})
}

/// One line per change: time, check, severity, what changed.
fn print_changes(changes: &[ChangeInfo], indent: &str) {
    for c in changes {
        let severity = match (c.severity.as_str(), c.renewal) {
            ("", _) => "ignored".to_owned(),
            (s, true) => format!("{s} (renewal)"),
            (s, false) => s.to_owned(),
        };
        let incident = match c.incident {
            0 => String::new(),
            id => format!("  #{id}"),
        };
        println!(
            "{indent}{}  {:<20} {:<16} {}{incident}",
            rfc3339(c.at_ms),
            c.check,
            severity,
            c.summary
        );
    }
}

/// The start of a `--since` window (`24h`, `7d`), ms since the epoch.
fn window_start(since: &str) -> Result<i64> {
    let window = since
        .parse::<vantage_common::duration::Period>()
        .ok()
        .filter(|p| p.secs() > 0)
        .ok_or_else(|| {
            anyhow::anyhow!("--since {since:?}: expected a duration such as 24h, 7d, 30d")
        })?;
    Ok(vantage_common::clock::now_ms().saturating_sub(window.ms()))
}

/// Runs `changes [CHECK] --since D`.
pub async fn changes(
    check: Option<String>,
    since: String,
    conn: &ConnArgs,
    format: Format,
) -> Result<()> {
    let since_ms = window_start(&since)?;
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let changes = client
        .operator
        .list_changes(ListChangesRequest {
            check: check.unwrap_or_default(),
            since_ms,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{at}: {}", explain(&s)))?
        .into_inner()
        .changes;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::Value::Array(changes.iter().map(change_json).collect())
        ),
        Format::Text if changes.is_empty() => println!("no changes since {}", rfc3339(since_ms)),
        Format::Text => {
            println!("{:<20}  {:<20} {:<16} CHANGE", "AT", "CHECK", "SEVERITY");
            print_changes(&changes, "");
        }
    }
    Ok(())
}

/// Runs a checks command.
pub async fn run(command: ChecksCommand, conn: &ConnArgs, format: Format) -> Result<()> {
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let fail = |s: tonic::Status| anyhow::anyhow!("{at}: {}", explain(&s));
    match command {
        ChecksCommand::List => {
            let checks = client
                .operator
                .list_checks(ListChecksRequest {})
                .await
                .map_err(fail)?
                .into_inner()
                .checks;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::Value::Array(checks.iter().map(json).collect())
                ),
                Format::Text => {
                    println!(
                        "{:<24} {:<6} {:<32} {:>8} {:<16} {:<9}",
                        "NAME", "KIND", "TARGET", "INTERVAL", "REGIONS", "SEVERITY"
                    );
                    for c in &checks {
                        println!(
                            "{:<24} {:<6} {:<32} {:>8} {:<16} {:<9}",
                            c.name,
                            c.kind,
                            c.target,
                            c.interval,
                            c.regions.join(","),
                            c.severity
                        );
                    }
                }
            }
        }
        ChecksCommand::Get { name } => {
            let c = client
                .operator
                .get_check(GetCheckRequest { name })
                .await
                .map_err(fail)?
                .into_inner();
            match format {
                Format::Json => println!("{}", json(&c)),
                Format::Text => {
                    let j = json(&c);
                    if let Some(map) = j.as_object() {
                        for (k, v) in map {
                            println!("{k:<14} {v}");
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// `vantagectl results CHECK [--region R] [--recent N]`.
pub async fn results(
    check: String,
    region: Option<String>,
    recent: u32,
    conn: &ConnArgs,
    format: Format,
) -> Result<()> {
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let request = GetResultsRequest {
        check,
        region: region.unwrap_or_default(),
        recent,
    };
    let reply = client
        .operator
        .get_results(request)
        .await
        .map_err(|s| anyhow::anyhow!("{at}: {}", explain(&s)))?
        .into_inner();
    let now = reply.now_ms;
    let row = |r: &ResultInfo| {
        serde_json::json!({"region": r.region, "agent": r.agent, "status": r.status,
            "class": if r.class.is_empty() { None } else { Some(&r.class) }, "message": r.message,
            "duration_ms": r.duration_ms, "started_at_ms": r.started_at_ms, "age_s": (now - r.started_at_ms).max(0) / 1000})
    };
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"latest": reply.latest.iter().map(row).collect::<Vec<_>>(),
                "recent": reply.recent.iter().map(row).collect::<Vec<_>>()})
        ),
        Format::Text => {
            println!(
                "{:<8} {:<16} {:<6} {:<12} {:>6}  MESSAGE",
                "REGION", "AGENT", "STATUS", "CLASS", "AGE"
            );
            for r in reply.latest.iter().chain(reply.recent.iter()) {
                println!(
                    "{:<8} {:<16} {:<6} {:<12} {:>5}s  {}",
                    r.region,
                    r.agent,
                    r.status,
                    if r.class.is_empty() { "-" } else { &r.class },
                    (now - r.started_at_ms).max(0) / 1000,
                    r.message
                );
            }
            if reply.latest.is_empty() {
                println!("(no results yet)");
            }
        }
    }
    Ok(())
}

/// Filters of `vantagectl status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only checks with this verdict (ok, changed, warning, divergent,
    /// blind, impaired, regional, outage); repeatable.
    #[arg(long)]
    verdict: Vec<String>,
    /// Only checks not OK (every verdict but ok).
    #[arg(long, conflicts_with = "verdict")]
    problems: bool,
    /// Only checks whose name matches this glob (`*`, `?`), e.g. 'mx-*'.
    #[arg(long)]
    check: Option<String>,
    /// Only checks with this label, KEY=VALUE; repeatable (all must match).
    #[arg(long)]
    label: Vec<String>,
    /// Only checks run from this region, showing that region's state;
    /// repeatable.
    #[arg(long)]
    region: Vec<String>,
    /// At most this many checks.
    #[arg(long)]
    limit: Option<u32>,
}

/// Checks asked of the cluster per call.
const STATUS_PAGE: u32 = 1000;

/// `vantagectl status`: the selected checks' verdicts and per-region
/// state, fetched a page at a time.
pub async fn status(args: &StatusArgs, conn: &ConnArgs, format: Format) -> Result<()> {
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let verdict = if args.problems {
        crate::selection::problem_verdicts()
    } else {
        args.verdict.clone()
    };
    let mut request = StatusRequest {
        verdict,
        check: args.check.clone().unwrap_or_default(),
        label: args.label.clone(),
        region: args.region.clone(),
        limit: 0,
        after: String::new(),
    };
    let mut reply = StatusReply::default();
    loop {
        let wanted = args.limit.map_or(STATUS_PAGE, |l| {
            l.saturating_sub(reply.checks.len() as u32).min(STATUS_PAGE)
        });
        if wanted == 0 {
            break;
        }
        request.limit = wanted;
        let page = client
            .operator
            .status(request.clone())
            .await
            .map_err(|s| anyhow::anyhow!("{at}: {}", explain(&s)))?
            .into_inner();
        reply.checks.extend(page.checks);
        reply.now_ms = page.now_ms;
        reply.impaired = page.impaired;
        reply.matched = page.matched;
        reply.verdicts = page.verdicts;
        if page.next.is_empty() {
            break;
        }
        request.after = page.next;
    }
    match format {
        Format::Json => {
            let checks: Vec<_> = reply
                .checks
                .iter()
                .map(|c| {
                    let regions: serde_json::Map<String, serde_json::Value> = c
                        .regions
                        .iter()
                        .map(|r| (r.region.clone(), serde_json::Value::from(r.state.clone())))
                        .collect();
                    serde_json::json!({"name": c.name, "verdict": c.verdict, "down": c.down,
                        "since_ms": c.since_ms, "regions": regions})
                })
                .collect();
            let impaired: serde_json::Map<String, serde_json::Value> = reply
                .impaired
                .iter()
                .map(|i| {
                    let v = serde_json::json!({"reason": i.reason, "since_ms": i.since_ms});
                    (i.region.clone(), v)
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"checks": checks, "impaired": impaired,
                    "matched": reply.matched, "verdicts": reply.verdicts})
            );
        }
        Format::Text => {
            println!("{:<24} {:<9} {:>8}  REGIONS", "CHECK", "VERDICT", "FOR");
            for c in &reply.checks {
                let regions: Vec<String> = c
                    .regions
                    .iter()
                    .map(|r| format!("{}={}", r.region, r.state))
                    .collect();
                println!(
                    "{:<24} {:<9} {:>7}s  {}",
                    c.name,
                    c.verdict.to_uppercase(),
                    (reply.now_ms - c.since_ms).max(0) / 1000,
                    regions.join(" ")
                );
            }
            for i in &reply.impaired {
                println!(
                    "vantage {} impaired for {}s (its results do not vote): {}",
                    i.region,
                    (reply.now_ms - i.since_ms).max(0) / 1000,
                    i.reason
                );
            }
            let mut verdicts: Vec<(&String, &u32)> = reply.verdicts.iter().collect();
            verdicts.sort_by_key(|(v, _)| crate::verdict::severity(v));
            let counts: Vec<String> = verdicts
                .iter()
                .rev()
                .map(|(v, n)| format!("{n} {v}"))
                .collect();
            println!(
                "{} of {} matching checks shown; all checks: {}",
                reply.checks.len(),
                reply.matched,
                counts.join(", ")
            );
        }
    }
    Ok(())
}

/// Incident commands.
#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// Open incidents (`--all`: resolved ones too).
    List {
        /// Include resolved incidents.
        #[arg(long)]
        all: bool,
    },
    /// One incident with its timeline.
    Show {
        /// Incident id.
        id: u64,
    },
    /// Acknowledge an incident (stops escalation).
    Ack {
        /// Incident id.
        id: u64,
    },
}

fn incident_json(i: &IncidentInfo) -> serde_json::Value {
    serde_json::json!({"id": i.id, "check": i.check, "verdict": i.verdict, "worst": i.worst,
        "severity": i.severity,
        "deliveries": i.deliveries.iter().map(|d| serde_json::json!({"key": d.key, "channel": d.channel,
            "event": d.event, "state": d.state, "attempts": d.attempts,
            "last_error": if d.last_error.is_empty() { None } else { Some(&d.last_error) }})).collect::<Vec<_>>(),
        "opened_ms": i.opened_ms, "resolved_ms": i.resolved_ms,
        "acked_by": if i.acked_by.is_empty() { None } else { Some(&i.acked_by) },
        "timeline": i.timeline.iter().map(|e| serde_json::json!({"at_ms": e.at_ms, "what": e.what})).collect::<Vec<_>>()})
}

/// Runs an incidents command.
pub async fn incidents(command: IncidentsCommand, conn: &ConnArgs, format: Format) -> Result<()> {
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let fail = |s: tonic::Status| anyhow::anyhow!("{at}: {}", explain(&s));
    match command {
        IncidentsCommand::List { all } => {
            let reply = client
                .operator
                .list_incidents(ListIncidentsRequest { all })
                .await
                .map_err(fail)?
                .into_inner();
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::Value::Array(reply.incidents.iter().map(incident_json).collect())
                ),
                Format::Text => {
                    println!(
                        "{:>5} {:<24} {:<9} {:<9} {:>8} {:<10} {:<8}",
                        "ID", "CHECK", "VERDICT", "WORST", "AGE", "STATE", "ACKED"
                    );
                    for i in &reply.incidents {
                        println!(
                            "{:>5} {:<24} {:<9} {:<9} {:>7}s {:<10} {:<8}",
                            i.id,
                            i.check,
                            i.verdict,
                            i.worst,
                            (reply.now_ms - i.opened_ms).max(0) / 1000,
                            if i.resolved_ms.is_some() {
                                "resolved"
                            } else {
                                "open"
                            },
                            if i.acked_by.is_empty() {
                                "-"
                            } else {
                                &i.acked_by
                            }
                        );
                    }
                }
            }
        }
        IncidentsCommand::Show { id } => {
            let i = client
                .operator
                .get_incident(GetIncidentRequest { id })
                .await
                .map_err(fail)?
                .into_inner();
            match format {
                Format::Json => println!("{}", incident_json(&i)),
                Format::Text => {
                    println!(
                        "incident {} on {}: {} (worst {})",
                        i.id, i.check, i.verdict, i.worst
                    );
                    for e in &i.timeline {
                        println!("  {}  {}", vantage_common::clock::rfc3339(e.at_ms), e.what);
                    }
                    if !i.deliveries.is_empty() {
                        println!("notifications:");
                    }
                    for d in &i.deliveries {
                        let error = if d.last_error.is_empty() {
                            String::new()
                        } else {
                            format!(" (last error: {})", d.last_error)
                        };
                        println!(
                            "  {:<10} {:<9} {:<10} attempts {}  {}{error}",
                            d.channel, d.event, d.state, d.attempts, d.key
                        );
                    }
                }
            }
        }
        IncidentsCommand::Ack { id } => {
            client
                .operator
                .ack_incident(AckIncidentRequest { id })
                .await
                .map_err(fail)?;
            println!("incident {id} acknowledged");
        }
    }
    Ok(())
}

/// Runs `history CHECK --since D`.
pub async fn history(check: String, since: String, conn: &ConnArgs, format: Format) -> Result<()> {
    let since_ms = window_start(&since)?;
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let h = client
        .operator
        .history(HistoryRequest { check, since_ms })
        .await
        .map_err(|s| anyhow::anyhow!("{at}: {}", explain(&s)))?
        .into_inner();
    match format {
        Format::Json => {
            let regions: Vec<_> = h
                .regions
                .iter()
                .map(|r| {
                    serde_json::json!({"region": r.region, "uptime_pct": r.uptime_pct,
                        "pass": r.pass, "warn": r.warn, "fail": r.fail, "error": r.error})
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"check": h.check, "since_ms": h.since_ms, "now_ms": h.now_ms,
                    "up_pct": h.up_pct, "degraded_pct": h.degraded_pct, "down_pct": h.down_pct,
                    "unknown_ms": h.unknown_ms, "regions": regions,
                    "incidents": h.incidents.iter().map(incident_json).collect::<Vec<_>>(),
                    "changes": h.changes.iter().map(change_json).collect::<Vec<_>>()})
            );
        }
        Format::Text => {
            println!(
                "{} since {} ({since})",
                h.check,
                vantage_common::clock::rfc3339(h.since_ms)
            );
            println!(
                "  uptime {:.3} % (of which degraded, REGIONAL: {:.3} %)   down (OUTAGE) {:.3} %   undecided {}",
                h.up_pct + h.degraded_pct,
                h.degraded_pct,
                h.down_pct,
                vantage_common::clock::human_duration(h.unknown_ms)
            );
            println!(
                "  {:<8} {:>9} {:>8} {:>6} {:>6} {:>6}",
                "REGION", "UPTIME", "PASS", "WARN", "FAIL", "ERROR"
            );
            for r in &h.regions {
                println!(
                    "  {:<8} {:>7.3} % {:>8} {:>6} {:>6} {:>6}",
                    r.region, r.uptime_pct, r.pass, r.warn, r.fail, r.error
                );
            }
            println!("  incidents: {}", h.incidents.len());
            for i in &h.incidents {
                let end = match i.resolved_ms {
                    Some(end) => format!(
                        "resolved after {}",
                        vantage_common::clock::human_duration(end - i.opened_ms)
                    ),
                    None => "open".into(),
                };
                println!(
                    "    #{:<4} {:<9} opened {}  {end}",
                    i.id,
                    i.worst,
                    vantage_common::clock::rfc3339(i.opened_ms)
                );
            }
            println!("  changes: {}", h.changes.len());
            print_changes(&h.changes, "    ");
        }
    }
    Ok(())
}
