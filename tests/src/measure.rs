//! Resource usage of this process and of children, for benchmarks and the
//! memory bounds of the hostile-server tests; signals to children.

use std::time::Duration;

/// CPU time and peak memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU time.
    pub cpu: Duration,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
}

fn from_rusage(u: &libc::rusage) -> Usage {
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Usage {
        cpu: tv(u.ru_utime) + tv(u.ru_stime),
        max_rss_kib: u64::try_from(u.ru_maxrss).unwrap_or(0),
    }
}

/// Usage of this process so far.
#[allow(unsafe_code)]
pub fn self_usage() -> Usage {
    // SAFETY: rusage is plain old data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Usage::default();
    }
    from_rusage(&usage)
}

/// Reaps child `pid` and returns its exit code (-1 when killed by a
/// signal) and its own usage. `std::process::Child` must not be waited on
/// afterwards: the child is gone.
#[allow(unsafe_code)]
pub fn wait_with_rusage(pid: u32) -> (i32, Usage) {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; wait4 fills it and `status` for our
    // own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if rc <= 0 {
        return (-1, Usage::default());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, from_rusage(&usage))
}

/// Sends `signal` to process `pid` (a child of the test).
#[allow(unsafe_code)]
pub fn signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: kill(2) with a pid we spawned; no memory is shared.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
