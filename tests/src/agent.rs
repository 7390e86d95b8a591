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

/// Path of the agent binary built for these tests.
pub fn agent_bin() -> PathBuf {
    crate::built_bin("vantage-agent-under-test")
}

/// Runs `vantage-agent probe <args>`.
pub async fn probe(args: &[&str]) -> Run {
    probe_env(&[], args).await
}

/// Runs `vantage-agent probe <args>` with extra environment variables.
pub async fn probe_env(env: &[(&str, &str)], args: &[&str]) -> Run {
    let output = tokio::process::Command::new(agent_bin())
        .arg("probe")
        .args(args)
        .envs(env.iter().copied())
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

/// Runs `vantage-agent probe <args>` and also returns the child's peak
/// resident memory in KiB (from `wait4`'s rusage).
pub async fn probe_measured(args: &[&str]) -> (Run, u64) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || run_measured(&agent_bin(), &args))
        .await
        .unwrap_or_else(|e| panic!("measuring thread failed: {e}"))
}

/// Runs `<bin> probe <args>` (blocking) and returns the run and the child's
/// peak RSS in KiB.
pub fn run_measured(bin: &Path, args: &[String]) -> (Run, u64) {
    let (run, usage) = run_usage(bin, args);
    (run, usage.max_rss_kib)
}

/// Runs `<bin> probe <args>` (blocking) and returns the run and the
/// child's CPU time and peak RSS.
// The child is reaped by wait4 in `wait_with_rusage`, which std cannot see.
#[allow(clippy::zombie_processes)]
pub fn run_usage(bin: &Path, args: &[String]) -> (Run, crate::measure::Usage) {
    use std::io::Read;
    let mut child = std::process::Command::new(bin)
        .arg("probe")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let mut err_pipe = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Ok(s) = err_reader.join() {
        stderr = s;
    }
    let (code, usage) = crate::measure::wait_with_rusage(child.id());
    (
        Run {
            code,
            stdout,
            stderr,
        },
        usage,
    )
}

/// The value of sample `name` (with no labels) on the Prometheus endpoint
/// at `addr` (an agent's `metrics_listen`).
pub async fn metric(addr: &str, name: &str) -> Option<f64> {
    let http = vantage_coordinator::alert::http_client().ok()?;
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}
