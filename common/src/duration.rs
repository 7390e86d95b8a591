//! Durations as operators write them — `90s`, `5m`, `4h`, `1d`, or a bare
//! number of seconds — parsed once, where they enter (a config file, a
//! command line), into [`Period`]. Nothing downstream parses text again.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A whole number of seconds, written with an optional unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    secs: u64,
}

/// Text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration (like 90s, 5m, 4h, 1d)")]
pub struct PeriodError(pub String);

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];

impl Period {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Period { secs }
    }

    /// Whole seconds.
    pub const fn secs(self) -> u64 {
        self.secs
    }

    /// Milliseconds, saturating at `i64::MAX` (log time is `i64` ms).
    pub fn ms(self) -> i64 {
        i64::try_from(self.secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
    }

    /// As a [`Duration`].
    pub const fn duration(self) -> Duration {
        Duration::from_secs(self.secs)
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PeriodError(s.to_owned());
        let t = s.trim();
        let (num, mult) = match t.char_indices().last() {
            None => return Err(err()),
            Some((i, c)) => match UNITS.iter().find(|(u, _)| *u == c) {
                Some((_, mult)) => (&t[..i], *mult),
                None => (t, 1),
            },
        };
        // Digits only: no sign, no spaces between number and unit.
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let secs = num
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .ok_or_else(err)?;
        Ok(Period { secs })
    }
}

impl fmt::Display for Period {
    /// The largest unit that divides it: `90s`, `5m`, `4h`, `1d` (`0s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, size) = UNITS
            .into_iter()
            .find(|(_, size)| self.secs.is_multiple_of(*size) && self.secs > 0)
            .unwrap_or(('s', 1));
        write!(f, "{}{unit}", self.secs / size)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Text with a unit, or a bare integer of seconds.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Secs(u64),
        }
        match Written::deserialize(d)? {
            Written::Text(t) => t.parse().map_err(serde::de::Error::custom),
            Written::Secs(secs) => Ok(Period { secs }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        let table = [
            ("90s", Some(90)),
            ("5m", Some(300)),
            ("4h", Some(14_400)),
            ("1d", Some(86_400)),
            ("45", Some(45)),
            (" 2m ", Some(120)),
            ("0s", Some(0)),
            ("", None),
            ("s", None),
            ("m5", None),
            ("5x", None),
            ("-5s", None),
            ("+5s", None),
            ("5 m", None),
            ("1.5h", None),
            ("99999999999999999999d", None),
            ("213503982334602d", None), // overflows u64 seconds
        ];
        for (text, want) in table {
            assert_eq!(
                text.parse::<Period>().ok().map(Period::secs),
                want,
                "{text:?}"
            );
        }
        assert!(
            "5x".parse::<Period>()
                .err()
                .is_some_and(|e| e.to_string().contains("\"5x\" is not a duration"))
        );
    }

    #[test]
    fn displays_the_largest_exact_unit_and_round_trips() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (90, "90s"),
            (60, "1m"),
            (3600, "1h"),
            (5400, "90m"),
            (86_400, "1d"),
        ] {
            let p = Period::from_secs(secs);
            assert_eq!(p.to_string(), text);
            assert_eq!(text.parse::<Period>(), Ok(p));
        }
        assert_eq!(Period::from_secs(u64::MAX).ms(), i64::MAX, "saturates");
        assert_eq!(Period::from_secs(2).ms(), 2000);
    }

    #[test]
    fn serde_takes_text_or_seconds_and_writes_text() {
        #[derive(Debug, PartialEq, Deserialize, Serialize)]
        struct T {
            every: Period,
        }
        let t: T = toml::from_str("every = \"5m\"").unwrap_or(T {
            every: Period::default(),
        });
        assert_eq!(t.every.secs(), 300);
        let t: T = toml::from_str("every = 30").unwrap_or(T {
            every: Period::default(),
        });
        assert_eq!(t.every.secs(), 30);
        assert!(
            toml::from_str::<T>("every = \"soon\"")
                .err()
                .is_some_and(|e| e.message().contains("not a duration"))
        );
        assert_eq!(
            serde_json::to_string(&T {
                every: Period::from_secs(7200)
            })
            .ok()
            .as_deref(),
            Some(r#"{"every":"2h"}"#)
        );
    }
}
