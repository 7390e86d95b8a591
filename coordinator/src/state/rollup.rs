//! Roll-ups: sums over the last 24 hours by hour and the last 30 days by
//! day (UTC), kept as short ordered lists — bounded whatever the history,
//! and no larger than the history there is.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Deserializer, Serialize};

/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in ms.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// Hourly buckets kept.
pub const HOURS: usize = 24;
/// Daily buckets kept.
pub const DAYS: usize = 30;

/// What a bucket sums.
pub trait Tally: Copy + Default {
    /// Adds `other` in.
    fn merge(&mut self, other: &Self);
}

/// Sums by hour (24) and by day (30). Each bucket is keyed by its number
/// since the epoch (hours or days), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollups<T> {
    hours: VecDeque<(i64, T)>,
    days: VecDeque<(i64, T)>,
}

impl<T> Default for Rollups<T> {
    fn default() -> Self {
        Rollups {
            hours: VecDeque::new(),
            days: VecDeque::new(),
        }
    }
}

impl<T: Tally> Rollups<T> {
    /// Adds `value` at `at_ms` to its hour and its day.
    pub fn add(&mut self, at_ms: i64, value: &T) {
        add(&mut self.hours, at_ms.div_euclid(HOUR_MS), HOURS, value);
        add(&mut self.days, at_ms.div_euclid(DAY_MS), DAYS, value);
    }

    /// The sum from `since_ms` on: by the hour when the hourly buckets reach
    /// back that far, else by the day (`since_ms` rounded down to its day).
    pub fn since(&self, since_ms: i64) -> T {
        let hour = since_ms.div_euclid(HOUR_MS);
        let newest = self.hours.back().map_or(i64::MIN, |(h, _)| *h);
        let (buckets, from) = if hour > newest.saturating_sub(HOURS as i64) {
            (&self.hours, hour)
        } else {
            (&self.days, since_ms.div_euclid(DAY_MS))
        };
        let mut total = T::default();
        for (_, v) in buckets.iter().filter(|(n, _)| *n >= from) {
            total.merge(v);
        }
        total
    }

    /// Hourly buckets, oldest first: (start in ms since the epoch, sum).
    pub fn hours(&self) -> impl Iterator<Item = (i64, &T)> {
        self.hours.iter().map(|(h, v)| (h * HOUR_MS, v))
    }

    /// Daily buckets, oldest first: (start in ms since the epoch, sum).
    pub fn days(&self) -> impl Iterator<Item = (i64, &T)> {
        self.days.iter().map(|(d, v)| (d * DAY_MS, v))
    }
}

/// Reads either this form or the one before 0.8: a map of hour starts (ms)
/// to sums, 30 days by the hour.
impl<'de, T: Tally + Deserialize<'de>> Deserialize<'de> for Rollups<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Now<T> {
            hours: VecDeque<(i64, T)>,
            days: VecDeque<(i64, T)>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            Now(Now<T>),
            // Keys are numbers in strings (read through a buffer, they do
            // not parse as numbers directly).
            Hourly(BTreeMap<String, T>),
        }
        Ok(match Either::deserialize(deserializer)? {
            Either::Now(Now { hours, days }) => Rollups { hours, days },
            Either::Hourly(hours) => {
                let mut r = Rollups::default();
                for (at_ms, v) in &hours {
                    let at_ms = at_ms.parse().map_err(|_| {
                        serde::de::Error::custom(format!("roll-up hour {at_ms:?} is not a number"))
                    })?;
                    r.add(at_ms, v);
                }
                r
            }
        })
    }
}

/// Adds into the bucket numbered `n`, keeping the newest `keep` numbers.
fn add<T: Tally>(buckets: &mut VecDeque<(i64, T)>, n: i64, keep: usize, value: &T) {
    match buckets.back_mut() {
        Some((last, v)) if *last == n => v.merge(value),
        Some((last, _)) if *last > n => {
            // Late: into its bucket if it is still kept.
            if n <= *last - keep as i64 {
                return;
            }
            match buckets.binary_search_by_key(&n, |(b, _)| *b) {
                Ok(i) => buckets[i].1.merge(value),
                Err(i) => buckets.insert(i, (n, *value)),
            }
        }
        _ => buckets.push_back((n, *value)),
    }
    let newest = buckets.back().map_or(n, |(b, _)| *b);
    while buckets
        .front()
        .is_some_and(|(b, _)| *b <= newest - keep as i64)
    {
        buckets.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Tally for u64 {
        fn merge(&mut self, other: &Self) {
            *self += other;
        }
    }

    #[test]
    fn buckets_stay_bounded_and_sums_read_by_hour_then_by_day() {
        let mut r = Rollups::<u64>::default();
        // One a minute for 40 days.
        for minute in 0..40 * 24 * 60 {
            r.add(minute * 60_000, &1);
        }
        assert_eq!(r.hours().count(), HOURS);
        assert_eq!(r.days().count(), DAYS);
        let now = 40 * DAY_MS;
        // The last 3 hours by the hour, the last 10 days by the day.
        assert_eq!(r.since(now - 3 * HOUR_MS), 180);
        assert_eq!(r.since(now - 10 * DAY_MS), 10 * 24 * 60);
        // Before what is kept: all of the 30 days.
        assert_eq!(r.since(0), 30 * 24 * 60);
        // A late result lands in its bucket; one older than what is kept
        // is dropped.
        r.add(now - 2 * HOUR_MS, &5);
        r.add(now - 11 * DAY_MS, &7);
        r.add(now - 31 * DAY_MS, &1000);
        assert_eq!(r.since(now - 3 * HOUR_MS), 185);
        assert_eq!(r.since(now - 11 * DAY_MS), 11 * 24 * 60 + 5 + 7);
        // A gap: buckets older than the window go.
        r.add(now + 20 * DAY_MS, &1);
        assert_eq!((r.hours().count(), r.days().count()), (1, 10));
    }

    #[test]
    fn the_hourly_map_of_earlier_builds_is_read() {
        let old = format!(r#"{{"0": 2, "{HOUR_MS}": 3, "{}": 4}}"#, 2 * DAY_MS);
        let r = match serde_json::from_str::<Rollups<u64>>(&old) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.since(0), 9);
        assert_eq!(
            r.days().map(|(d, v)| (d, *v)).collect::<Vec<_>>(),
            [(0, 5), (2 * DAY_MS, 4)]
        );
        let again = serde_json::to_string(&r).unwrap_or_default();
        assert!(serde_json::from_str::<Rollups<u64>>(&again).is_ok_and(|back| back == r));
    }
}
