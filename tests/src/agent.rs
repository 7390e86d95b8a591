//! Runs the real `vantage-agent` binary, as an operator or a monitoring
//! system would, and captures exit code and output.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

/// One finished run of the binary.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// stdout parsed as JSON; panics with the output when it is not JSON
    /// (test helper).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Path of the agent binary built for these tests: cargo builds
/// `vantage-agent-under-test` for this package's integration tests into
/// `target/<profile>/`, and the tests run from `target/<profile>/deps/`.
pub fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    profile_dir.join("vantage-agent-under-test")
}

/// Runs `vantage-agent probe <args>`.
pub async fn probe(args: &[&str]) -> Run {
    let output = tokio::process::Command::new(agent_bin())
        .arg("probe")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", agent_bin().display()));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
