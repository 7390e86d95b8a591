//! `ptr`: reverse DNS of an address, forward-confirmed (the PTR name must
//! resolve back to the address, as receiving MTAs check).

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Map, Value};
use vantage_common::FailureClass;
use vantage_common::observed::Observed;

use vantage_common::spec::Kind;

use super::{Check, CheckResult, Finding, Probe};

pub use vantage_common::spec::ptr::PtrCheck;

impl Check for PtrCheck {
    const KIND: Kind = Kind::Ptr;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    fn target(&self) -> String {
        self.ip.to_string()
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let resolver = probe.resolver()?;
        let ip = self.ip;
        let names = probe
            .step("ptr", async {
                resolver.ptr(ip).await.map_err(|e| e.finding())
            })
            .await?;
        probe.detail("names", names.clone());
        probe.observed(
            &format!("PTR {ip}"),
            Observed::names(&names),
            self.pin().as_ref(),
        )?;
        let forward = probe
            .step("forward", async {
                Ok(join_all(names.iter().map(|n| resolver.addresses(n))).await)
            })
            .await?;

        let mut seen = Map::new();
        let mut confirmed = None;
        for (name, addrs) in names.iter().zip(forward) {
            let addrs = addrs.unwrap_or_default();
            if confirmed.is_none() && addrs.contains(&ip) {
                confirmed = Some(name.clone());
            }
            seen.insert(
                name.clone(),
                Value::from(addrs.iter().map(ToString::to_string).collect::<Vec<_>>()),
            );
        }
        probe.detail("forward", Value::Object(seen));
        match confirmed {
            Some(name) => Ok(Finding::pass(format!(
                "{ip} → {name} → {ip} (forward-confirmed)"
            ))),
            None => Ok(Finding::fail(
                FailureClass::Dns,
                format!(
                    "{ip} → {} does not resolve back to {ip} (not forward-confirmed)",
                    names.join(", ")
                ),
            )),
        }
    }
}
