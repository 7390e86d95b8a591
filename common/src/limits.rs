//! File descriptors: a daemon raises its soft limit to the hard one at
//! start, and the gRPC port holds at most what leaves the rest of the
//! process its headroom (the Raft store and peers, the HTTP side port,
//! outgoing probes and deliveries).

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors kept out of the gRPC port's reach (at least; a quarter of
/// the limit when that is more).
pub const RESERVED_FDS: u64 = 256;
/// Fewest connections the gRPC port holds, however low the limit.
const MIN_CONNECTIONS: u64 = 16;
/// Highest soft limit asked for (an unlimited hard limit is not a target).
const MAX_NOFILE: u64 = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (capped at 2^20);
/// returns the soft limit in force.
pub fn raise_nofile() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    let want = hard.min(MAX_NOFILE);
    if soft < want && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
        return want;
    }
    soft
}

/// How many connections the gRPC port may hold under the current soft
/// limit.
pub fn grpc_connections() -> usize {
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft.min(MAX_NOFILE));
    let reserve = RESERVED_FDS.max(soft / 4);
    usize::try_from(soft.saturating_sub(reserve).max(MIN_CONNECTIONS)).unwrap_or(usize::MAX)
}
