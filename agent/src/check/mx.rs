//! `mx`: MX records → hosts → addresses; with `probe`, an `smtp` check of
//! every host.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use vantage_common::observed::Observed;
use vantage_common::{FailureClass, Status};

use vantage_common::spec::Kind;

use super::smtp::SmtpCheck;
use super::{Check, CheckResult, Finding, Probe, execute};
use crate::authoritative::Question;
use hickory_resolver::proto::rr::RecordType;

pub use vantage_common::spec::mx::MxCheck;

impl Check for MxCheck {
    const KIND: Kind = Kind::Mx;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

    fn target(&self) -> String {
        self.domain.clone()
    }

    fn authoritative(&self, _probe: &Probe<'_>) -> Option<Question> {
        self.authoritative
            .then(|| Question::all(self.domain.clone(), RecordType::MX))
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let resolver = probe.resolver()?;
        let domain = self.domain.as_str();
        let mx = probe
            .step("mx", async {
                resolver.mx(domain).await.map_err(|e| e.finding())
            })
            .await?;
        if mx.len() == 1 && mx[0].1.is_empty() {
            probe.detail("null_mx", true);
            return Ok(Finding::fail(
                FailureClass::Policy,
                format!("{domain} publishes a null MX (RFC 7505): it accepts no mail"),
            ));
        }
        let pin = self
            .pin()
            .map_err(|e| Finding::error(FailureClass::Policy, e))?;
        let listing: Vec<String> = mx.iter().map(|(p, h)| format!("{p} {h}")).collect();
        probe.observed(
            &format!("MX {domain}"),
            Observed::names(&listing),
            pin.as_ref(),
        )?;
        let lookups = probe
            .step("addresses", async {
                Ok(join_all(mx.iter().map(|(_, host)| resolver.addresses(host))).await)
            })
            .await?;

        let mut hosts = Vec::new();
        let mut missing = Vec::new();
        let mut reachable = Vec::new();
        for ((pref, host), addrs) in mx.iter().zip(lookups) {
            match addrs {
                Ok(addrs) => {
                    hosts.push(json!({"preference": pref, "host": host, "addresses": addrs}));
                    reachable.push(host.clone());
                }
                Err(e) => {
                    hosts.push(json!({"preference": pref, "host": host, "error": e.to_string()}));
                    missing.push((host.clone(), e));
                }
            }
        }
        probe.detail("hosts", hosts);
        if let Some((host, e)) = missing.first() {
            if e.is_absent() {
                return Ok(Finding::fail(
                    FailureClass::Dns,
                    format!("MX host {host} has no address"),
                ));
            }
            return Err(e.finding().during(&format!("MX host {host}")));
        }

        if !self.probe {
            return Ok(Finding::pass(format!(
                "{} MX: {}",
                mx.len(),
                listing.join(", ")
            )));
        }

        let ctx = probe.ctx;
        let port = self.port;
        let outcomes = probe
            .step("smtp", async {
                let checks: Vec<SmtpCheck> = reachable
                    .iter()
                    .map(|h| SmtpCheck::new(h.clone(), port))
                    .collect();
                Ok(join_all(checks.iter().map(|c| execute(c, ctx))).await)
            })
            .await?;
        let down: Vec<_> = outcomes
            .iter()
            .filter(|o| o.status == Status::Fail)
            .collect();
        probe.detail(
            "smtp",
            outcomes
                .iter()
                .map(|o| json!({"target": o.target, "status": o.status, "class": o.class, "message": o.message}))
                .collect::<Vec<_>>(),
        );
        let class = down
            .first()
            .and_then(|o| o.class)
            .unwrap_or(FailureClass::Unreachable);
        match down.len() {
            0 => Ok(Finding::pass(format!(
                "{} MX answer SMTP: {}",
                mx.len(),
                listing.join(", ")
            ))),
            n if n == outcomes.len() => Ok(Finding::fail(
                class,
                format!("all {n} MX hosts down: {}", down[0].message),
            )),
            n => Ok(Finding::warn(
                class,
                format!(
                    "{n} of {} MX hosts down: {} {}",
                    outcomes.len(),
                    down[0].target,
                    down[0].message
                ),
            )),
        }
    }
}
