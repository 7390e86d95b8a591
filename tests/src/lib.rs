//! # vantage-tests
//!
//! The testkit, integration tests and benchmarks of vantage.
//!
//! ## Layout
//! - [`certs`] — test PKI with rcgen (valid, expired, expiring, wrong-name,
//!   untrusted certificates).
//! - [`smtp`] — a scriptable in-process SMTP server, hostile modes included.
//! - [`https`] — a scripted HTTPS server (MTA-STS policies, redirects).
//! - [`imap`] — an in-process IMAP server over the testkit SMTP server's
//!   messages (IDLE, UID SEARCH/FETCH/STORE/EXPUNGE), hostile modes included.
//! - [`dns`] — an authoritative hickory DNS server loaded with zone text,
//!   SERVFAIL names, and a black-hole resolver address.
//! - [`agent`] — runs the real `vantage-agent` binary and parses its output.
//! - [`cluster`] — N real coordinator processes on loopback: start, kill -9,
//!   restart, operator clients, polling waits.
//! - [`mail`] — a real Postfix and Dovecot (Debian packages) on loopback
//!   ports with a test mailbox and Dovecot SASL (root only).
//! - [`measure`] — CPU and peak memory of this process and of children.
//! - [`netns`] — network namespaces joined by a bridge for the
//!   real-network suite (root only).
//! - [`otlp`] — a recording OTLP/gRPC trace collector.
//! - [`receiver`] — a recording HTTP receiver for alert sinks (accept,
//!   fail N times, hang).
//! - `tests/` — integration tests, one file per area (`probe_smtp.rs`,
//!   `probe_dns.rs`, `hostile.rs`, ...).
//! - `src/bin/vantage-bench.rs` — benchmark programs that print figures.

pub mod agent;
pub mod certs;
pub mod chaos;
pub mod cluster;
pub mod dns;
pub mod https;
pub mod imap;
pub mod mail;
pub mod measure;
pub mod netns;
pub mod otlp;
pub mod prometheus;
pub mod receiver;
pub mod smtp;

/// A test that needs a third-party program (`what`) that is missing: it
/// prints why it skips, unless `VANTAGE_REQUIRE_SERVERS` is set (as
/// `.ci/run` does), where a missing server is a failure.
pub fn missing(what: &str) {
    let why = format!("{what} is not installed (.ci/run installs it)");
    if std::env::var_os("VANTAGE_REQUIRE_SERVERS").is_some() {
        panic!("VANTAGE_REQUIRE_SERVERS is set but {why}");
    }
    println!("SKIP: {why}");
}

/// The `vantage_*` series the panels of `deploy/grafana/FILE` query.
pub fn dashboard_series(file: &str) -> std::collections::BTreeSet<String> {
    let path = format!("{}/../deploy/grafana/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut queried = std::collections::BTreeSet::new();
    let panels = dashboard["panels"].as_array().into_iter().flatten();
    for target in panels.flat_map(|p| p["targets"].as_array().into_iter().flatten()) {
        let expr = target["expr"].as_str().unwrap_or_default();
        for (i, _) in expr.match_indices("vantage_") {
            let name: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            queried.insert(name);
        }
    }
    queried
}

/// The first of `paths` that exists.
pub fn find_program(paths: &[&'static str]) -> Option<&'static str> {
    paths
        .iter()
        .copied()
        .find(|p| std::path::Path::new(p).exists())
}

static SELF_EXEC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the harness run this very executable in each role (with
/// `VANTAGE_ROLE=coordinator|agent|ctl`) instead of the binaries built next
/// to the tests: `vantage-demo` is one self-contained program.
pub fn self_exec() {
    SELF_EXEC.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The program to start for `role`: `bin` built next to the tests, or this
/// executable in that role after [`self_exec`].
pub fn role_command(role: &str, bin: &str) -> tokio::process::Command {
    role_command_in(None, role, bin)
}

/// Like [`role_command`], run inside network namespace `netns` when given
/// (`ip netns exec`, which execs the program: the child is the program).
pub fn role_command_in(netns: Option<&str>, role: &str, bin: &str) -> tokio::process::Command {
    let prefix: Vec<String> = match netns {
        Some(ns) => ["ip", "netns", "exec", ns].map(String::from).to_vec(),
        None => Vec::new(),
    };
    role_command_after(&prefix, role, bin)
}

/// Like [`role_command`], started through `prefix` (a program that execs
/// the rest of its arguments: `ip netns exec NS`, `prlimit --nofile=N --`).
pub fn role_command_after(prefix: &[String], role: &str, bin: &str) -> tokio::process::Command {
    let self_exec = SELF_EXEC.load(std::sync::atomic::Ordering::Relaxed);
    let program = if self_exec {
        std::env::current_exe().unwrap_or_else(|_| built_bin(bin))
    } else {
        built_bin(bin)
    };
    let mut c = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = tokio::process::Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => tokio::process::Command::new(program),
    };
    if self_exec {
        c.env("VANTAGE_ROLE", role);
    }
    c
}

/// Path of one of this package's binaries: cargo builds them for the
/// integration tests into `target/<profile>/`, and the tests run from
/// `target/<profile>/deps/` (benchmarks from `target/<profile>/`).
pub fn built_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(std::path::Path::new("."));
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    profile_dir.join(name)
}

/// A small tmpfs mounted at a directory (root only), to fill a disk on
/// purpose; unmounted on drop.
#[derive(Debug)]
pub struct TinyDisk(std::path::PathBuf);

impl TinyDisk {
    /// Mounts a tmpfs of `kib` KiB at `dir` (which must exist); `None`
    /// where that is not allowed (not root).
    pub fn mount(dir: &std::path::Path, kib: u64) -> Option<Self> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| TinyDisk(dir.to_owned()))
    }

    /// [`TinyDisk::mount`] for a test: says why it skips when it cannot,
    /// and fails instead where root suites are required
    /// (`VANTAGE_REQUIRE_NETNS`, set by CI).
    pub fn mount_or_skip(dir: &std::path::Path, kib: u64) -> Option<Self> {
        let disk = Self::mount(dir, kib);
        if disk.is_none() {
            let why = "needs root to mount a small tmpfs";
            assert!(
                std::env::var_os("VANTAGE_REQUIRE_NETNS").is_none(),
                "VANTAGE_REQUIRE_NETNS is set but: {why}"
            );
            println!("SKIP: {why}");
        }
        disk
    }

    /// Fills the rest of the disk; returns the filler file (remove it to
    /// give the space back).
    pub fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        if let Ok(mut f) = std::fs::File::create(&path) {
            let block = vec![0u8; 4096];
            while f.write_all(&block).and_then(|()| f.sync_all()).is_ok() {}
        }
        path
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
