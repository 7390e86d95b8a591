//! A stable 64-bit hash (FNV-1a): the same on every build and platform, for
//! schedules and assignments that must not move when vantage is upgraded.

/// FNV-1a over `a`, a separator byte, then `b`.
pub fn fnv1a_pair(a: &str, separator: u8, b: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([separator]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
