//! Running a plan and printing its outcomes; exit codes.

use vantage_common::outcome::worst_status;
use vantage_common::{Outcome, Status};

use super::Format;
use super::plan::Plan;
use crate::context::ProbeContext;

/// Runs the plan and returns the outcomes in order.
pub async fn run(plan: &Plan, ctx: &ProbeContext) -> Vec<Outcome> {
    match plan {
        Plan::Single(spec) => vec![crate::check::run(spec, ctx).await],
        Plan::Audit(audit) => audit.run(ctx).await,
    }
}

/// Renders outcomes for stdout.
pub fn render(outcomes: &[Outcome], format: Format, array: bool) -> String {
    match format {
        Format::Json if array => serde_json::to_string(outcomes).unwrap_or_else(|e| json_error(&e)),
        Format::Json => outcomes
            .first()
            .map(|o| serde_json::to_string(o).unwrap_or_else(|e| json_error(&e)))
            .unwrap_or_default(),
        Format::Text if array => outcomes
            .iter()
            .map(Outcome::summary_line)
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Text => outcomes
            .iter()
            .map(text_block)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn json_error(e: &serde_json::Error) -> String {
    serde_json::json!({"status": "error", "message": format!("serialising outcome: {e}")})
        .to_string()
}

fn text_block(o: &Outcome) -> String {
    let mut out = o.summary_line();
    let phases: Vec<String> = o
        .phases
        .iter()
        .map(|(n, d)| format!("{n} {:.1}ms", d.as_secs_f64() * 1000.0))
        .collect();
    if !phases.is_empty() {
        out.push_str(&format!("\n  phases: {}", phases.join(", ")));
    }
    for (k, v) in &o.details {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("\n  {k}: {v}"));
    }
    out
}

/// Exit code for a set of outcomes.
pub fn exit_code(outcomes: &[Outcome]) -> u8 {
    if outcomes.is_empty() {
        return Status::Error.exit_code();
    }
    worst_status(outcomes).exit_code()
}
