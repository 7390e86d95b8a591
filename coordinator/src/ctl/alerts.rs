//! `vantagectl alerts test`, `silence add|list|expire` and
//! `maintenance add|list`.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use vantage_proto::v1::{
    AddSilenceRequest, ExpireSilenceRequest, ListSilencesRequest, SilenceInfo, TestChannelRequest,
};

use super::{ConnArgs, Format, explain};
use crate::state::silences::{FIRST_MONDAY_MS, WEEK_MS};
use vantage_common::clock::rfc3339;
use vantage_common::duration::Period;

/// Alert channel commands.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Send a clearly marked synthetic alert through a channel, end to end,
    /// from the coordinator reached (with its secrets).
    Test {
        /// Channel name (from `[[channel]]`).
        channel: String,
    },
}

/// Silence commands.
#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Hold back notifications of matching incidents from now on (results,
    /// verdicts and timelines go on).
    Add {
        /// label=value an incident must carry (check=NAME, severity=critical,
        /// any check label); repeat for several.
        #[arg(long = "match", required = true)]
        matchers: Vec<String>,
        /// How long, e.g. 30m, 2h, 1d.
        #[arg(long = "for")]
        duration: String,
        /// Why (shown in listings).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Silences and maintenance windows, active, upcoming and recently ended.
    List,
    /// End a silence or maintenance window now.
    Expire {
        /// Its id.
        id: u64,
    },
}

/// Maintenance window commands.
#[derive(Debug, Subcommand)]
pub enum MaintenanceCommand {
    /// Plan a window: one-off (`--start`) or weekly (`--weekly "sun 02:00"`), in UTC.
    Add {
        /// label=value an incident must carry; repeat for several.
        #[arg(long = "match", required = true)]
        matchers: Vec<String>,
        /// Start of a one-off window, RFC 3339 (2026-12-01T02:00:00Z).
        #[arg(long, conflicts_with = "weekly", required_unless_present = "weekly")]
        start: Option<String>,
        /// Weekly window start: weekday and UTC time, e.g. "sun 02:00".
        #[arg(long)]
        weekly: Option<String>,
        /// Stop a weekly window recurring at this time (RFC 3339).
        #[arg(long, requires = "weekly")]
        until: Option<String>,
        /// Length of the window, e.g. 2h.
        #[arg(long = "for")]
        duration: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Silences and maintenance windows.
    List,
}

fn matchers(list: &[String]) -> Result<HashMap<String, String>> {
    list.iter()
        .map(|m| match m.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok((k.trim().to_owned(), v.trim().to_owned()))
            }
            _ => bail!("--match {m:?}: expected label=value"),
        })
        .collect()
}

fn duration_ms(d: &str) -> Result<i64> {
    match d.parse::<Period>() {
        Ok(p) if p.secs() > 0 => Ok(p.ms()),
        _ => bail!("--for {d:?}: expected a duration such as 30m, 2h, 1d"),
    }
}

fn timestamp_ms(flag: &str, t: &str) -> Result<i64> {
    let parsed = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--{flag} {t:?}: expected RFC 3339, e.g. 2026-12-01T02:00:00Z"))?;
    Ok((parsed.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The latest start of a weekly window "DAY HH:MM" at or before `now_ms`.
fn weekly_start(spec: &str, now_ms: i64) -> Result<i64> {
    let bad = || {
        anyhow::anyhow!("--weekly {spec:?}: expected a weekday and UTC time, e.g. \"sun 02:00\"")
    };
    let (day, hm) = spec.trim().split_once(' ').ok_or_else(bad)?;
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let day = day.to_lowercase();
    let index = days
        .iter()
        .position(|d| day.starts_with(d))
        .ok_or_else(bad)? as i64;
    let (h, m) = hm.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    let offset = index * 86_400_000 + (h * 60 + m) * 60_000;
    let this_week = now_ms - (now_ms - FIRST_MONDAY_MS).rem_euclid(WEEK_MS);
    let start = this_week + offset;
    Ok(if start > now_ms {
        start - WEEK_MS
    } else {
        start
    })
}

fn print_silences(list: &[SilenceInfo], kind: Option<&str>, format: Format) {
    let list: Vec<&SilenceInfo> = list
        .iter()
        .filter(|s| kind.is_none_or(|k| s.kind == k))
        .collect();
    match format {
        Format::Json => {
            let items: Vec<serde_json::Value> = list
                .iter()
                .map(|s| {
                    serde_json::json!({"id": s.id, "kind": s.kind, "matchers": s.matchers,
                        "starts": rfc3339(s.starts_ms),
                        "ends": (s.ends_ms > 0).then(|| rfc3339(s.ends_ms)),
                        "weekly": s.weekly, "duration_s": s.duration_ms / 1000,
                        "comment": s.comment, "by": s.by, "active": s.active,
                        "expired": s.expired_ms.map(rfc3339)})
                })
                .collect();
            println!("{}", serde_json::Value::Array(items));
        }
        Format::Text => {
            println!(
                "{:>4} {:<11} {:<7} {:<30} {:<24} {:<10} COMMENT",
                "ID", "KIND", "ACTIVE", "MATCH", "WHEN (UTC)", "BY"
            );
            for s in list {
                let mut m: Vec<String> =
                    s.matchers.iter().map(|(k, v)| format!("{k}={v}")).collect();
                m.sort();
                let when = if s.weekly {
                    format!(
                        "weekly {}s from {}",
                        s.duration_ms / 1000,
                        &rfc3339(s.starts_ms)[..16]
                    )
                } else {
                    format!("{} +{}s", &rfc3339(s.starts_ms)[..16], s.duration_ms / 1000)
                };
                let active = match (s.active, s.expired_ms) {
                    (true, _) => "yes",
                    (false, Some(_)) => "expired",
                    (false, None) => "no",
                };
                println!(
                    "{:>4} {:<11} {:<7} {:<30} {:<24} {:<10} {}",
                    s.id,
                    s.kind,
                    active,
                    m.join(","),
                    when,
                    s.by,
                    s.comment
                );
            }
        }
    }
}

/// Runs `alerts ...`.
pub async fn alerts(command: AlertsCommand, conn: &ConnArgs) -> Result<()> {
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    match command {
        AlertsCommand::Test { channel } => {
            let reply = client
                .operator
                .test_channel(TestChannelRequest {
                    channel: channel.clone(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{at}: {}", explain(&s)))?
                .into_inner();
            println!(
                "test alert sent to {channel} in {} ms (key {})",
                reply.elapsed_ms, reply.key
            );
        }
    }
    Ok(())
}

async fn add(conn: &ConnArgs, request: AddSilenceRequest) -> Result<()> {
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let kind = request.kind.clone();
    let reply = client
        .operator
        .add_silence(request)
        .await
        .map_err(|s| anyhow::anyhow!("{at}: {}", explain(&s)))?
        .into_inner();
    println!("{kind} {} added", reply.id);
    Ok(())
}

async fn list(conn: &ConnArgs, kind: Option<&str>, format: Format) -> Result<()> {
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let reply = client
        .operator
        .list_silences(ListSilencesRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{at}: {}", explain(&s)))?
        .into_inner();
    print_silences(&reply.silences, kind, format);
    Ok(())
}

/// Runs `silence ...`.
pub async fn silence(command: SilenceCommand, conn: &ConnArgs, format: Format) -> Result<()> {
    match command {
        SilenceCommand::Add {
            matchers: m,
            duration,
            comment,
        } => {
            let request = AddSilenceRequest {
                kind: "silence".into(),
                matchers: matchers(&m)?,
                starts_ms: 0,
                duration_ms: duration_ms(&duration)?,
                weekly: false,
                until_ms: 0,
                comment,
            };
            add(conn, request).await
        }
        SilenceCommand::List => list(conn, None, format).await,
        SilenceCommand::Expire { id } => {
            let mut client = conn.connect().await?;
            let at = client.endpoint.clone();
            client
                .operator
                .expire_silence(ExpireSilenceRequest { id })
                .await
                .map_err(|s| anyhow::anyhow!("{at}: {}", explain(&s)))?;
            println!("silence {id} expired");
            Ok(())
        }
    }
}

/// Runs `maintenance ...`.
pub async fn maintenance(
    command: MaintenanceCommand,
    conn: &ConnArgs,
    format: Format,
) -> Result<()> {
    match command {
        MaintenanceCommand::Add {
            matchers: m,
            start,
            weekly,
            until,
            duration,
            comment,
        } => {
            let now = vantage_common::clock::now_ms();
            let starts_ms = match (&start, &weekly) {
                (Some(s), _) => timestamp_ms("start", s)?,
                (None, Some(w)) => weekly_start(w, now)?,
                (None, None) => bail!("pass --start or --weekly"),
            };
            let request = AddSilenceRequest {
                kind: "maintenance".into(),
                matchers: matchers(&m)?,
                starts_ms,
                duration_ms: duration_ms(&duration)?,
                weekly: weekly.is_some(),
                until_ms: until
                    .map(|u| timestamp_ms("until", &u))
                    .transpose()?
                    .unwrap_or(0),
                comment,
            };
            add(conn, request).await
        }
        MaintenanceCommand::List => list(conn, Some("maintenance"), format).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekly_start_is_the_latest_occurrence() {
        // 2026-11-25T12:00:00Z is a Wednesday.
        let now = timestamp_ms("start", "2026-11-25T12:00:00Z").unwrap_or(0);
        let sun = weekly_start("sun 02:00", now).unwrap_or(0);
        assert_eq!(rfc3339(sun), "2026-11-22T02:00:00.000Z");
        let wed = weekly_start("Wednesday 11:30", now).unwrap_or(0);
        assert_eq!(rfc3339(wed), "2026-11-25T11:30:00.000Z");
        let later = weekly_start("wed 13:00", now).unwrap_or(0);
        assert_eq!(rfc3339(later), "2026-11-18T13:00:00.000Z");
        assert!(weekly_start("someday 02:00", now).is_err());
        assert!(weekly_start("sun 25:00", now).is_err());
        assert!(matchers(&["check".into()]).is_err());
    }
}
