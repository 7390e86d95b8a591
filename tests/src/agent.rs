//! Runs the real `vantage-agent` binary, as an operator or a monitoring
//! system would, and captures exit code and output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

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

/// Path of the `vantage-agent` binary of this build, built on first use
/// (a workspace `cargo test` does not build other packages' binaries).
pub fn agent_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        // target/<profile>/deps/<test-binary>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.current_dir(workspace).args([
            "build",
            "--quiet",
            "-p",
            "vantage-agent",
            "--bin",
            "vantage-agent",
        ]);
        if release {
            build.arg("--release");
        }
        let status = build.status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "building vantage-agent failed: {status:?}"
        );
        profile_dir.join("vantage-agent")
    })
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
