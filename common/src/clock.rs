//! The one place that reads wall-clock time as protocol timestamps, and
//! the one that formats them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC time of `ms` since the epoch (clamped to years 0–9999).
pub fn rfc3339(ms: i64) -> String {
    let ms = ms.clamp(-62_167_219_200_000, 253_402_300_799_999);
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// `2h13m`, `4m05s`, `12s`: a span of `ms` for people.
pub fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_and_clamps() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MIN), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn human_durations() {
        for (ms, text) in [
            (-5, "0s"),
            (12_999, "12s"),
            (245_000, "4m05s"),
            (7_980_000, "2h13m"),
        ] {
            assert_eq!(human_duration(ms), text);
        }
    }
}
