//! `tcp`: connect, and optionally read until expected text arrives.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use vantage_common::FailureClass;

use vantage_common::spec::Kind;

use super::{Check, CheckResult, Finding, Probe};
use crate::net;

/// Most octets read while waiting for expected text.
const MAX_READ: usize = 4096;

pub use vantage_common::spec::tcp::TcpCheck;

impl Check for TcpCheck {
    const KIND: Kind = Kind::Tcp;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn target(&self) -> String {
        super::host_port(&self.host, self.port)
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let addr = probe.endpoint(&self.host, self.port).await?;
        let source = probe.ctx.source_address;
        let mut stream = probe.step("connect", net::connect(addr, source)).await?;
        if self.expect.is_empty() {
            return Ok(Finding::pass(format!("{addr} accepts connections")));
        }
        let expect = &self.expect;
        let received = probe
            .step("read", async {
                let mut buf = Vec::with_capacity(512);
                let mut chunk = [0u8; 512];
                loop {
                    let text = String::from_utf8_lossy(&buf);
                    if expect.iter().all(|e| text.contains(e.as_str())) {
                        return Ok(text.into_owned());
                    }
                    if buf.len() >= MAX_READ {
                        return Err(Finding::fail(
                            FailureClass::Protocol,
                            format!("expected text not in the first {MAX_READ} octets"),
                        ));
                    }
                    let room = (MAX_READ - buf.len()).min(chunk.len());
                    let n = stream
                        .read(&mut chunk[..room])
                        .await
                        .map_err(|e| Finding::fail(FailureClass::Protocol, format!("read: {e}")))?;
                    if n == 0 {
                        return Err(Finding::fail(
                            FailureClass::Protocol,
                            "connection closed before the expected text arrived",
                        ));
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            })
            .await?;
        let first_line = received
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect::<String>();
        probe.detail("received", first_line);
        Ok(Finding::pass(format!(
            "{addr} answered with the expected text"
        )))
    }
}
