//! Roll-ups: sums over the last 24 hours by hour and the last 30 days by
//! day (UTC), kept as two short runs of consecutive buckets — bounded
//! whatever the history, no larger than the history there is, and sized
//! exactly (a bucket is its sum alone: no key, no spare capacity).

use std::collections::{BTreeMap, VecDeque};

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in ms.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// Hourly buckets kept.
pub const HOURS: usize = 24;
/// Daily buckets kept.
pub const DAYS: usize = 30;

/// What a bucket sums: kept small (an hour or a day of counts fits in 16
/// bits), summed over many buckets in a wider [`Tally::Sum`].
pub trait Tally: Copy + Default + PartialEq {
    /// A sum over any number of buckets.
    type Sum: Default;
    /// Adds `other` in (saturating).
    fn merge(&mut self, other: &Self);
    /// Adds this bucket to `sum`.
    fn add_to(&self, sum: &mut Self::Sum);
}

/// Sums by hour (24) and by day (30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollups<T> {
    hours: Run<T>,
    days: Run<T>,
}

impl<T> Default for Rollups<T> {
    fn default() -> Self {
        Rollups {
            hours: Run::default(),
            days: Run::default(),
        }
    }
}

impl<T: Tally> Rollups<T> {
    /// Adds `value` at `at_ms` to its hour and its day.
    pub fn add(&mut self, at_ms: i64, value: &T) {
        self.hours.add(at_ms.div_euclid(HOUR_MS), HOURS, value);
        self.days.add(at_ms.div_euclid(DAY_MS), DAYS, value);
    }

    /// The sum from `since_ms` on: by the hour when the hourly buckets reach
    /// back that far, else by the day (`since_ms` rounded down to its day).
    pub fn since(&self, since_ms: i64) -> T::Sum {
        let hour = since_ms.div_euclid(HOUR_MS);
        let newest = if self.hours.sums.is_empty() {
            i64::MIN
        } else {
            i64::from(self.hours.newest)
        };
        let (run, from) = if hour > newest.saturating_sub(HOURS as i64) {
            (&self.hours, hour)
        } else {
            (&self.days, since_ms.div_euclid(DAY_MS))
        };
        let mut total = T::Sum::default();
        for (_, v) in run.buckets().filter(|(n, _)| *n >= from) {
            v.add_to(&mut total);
        }
        total
    }

    /// Hourly buckets with something in them, oldest first: (start in ms
    /// since the epoch, sum).
    pub fn hours(&self) -> impl Iterator<Item = (i64, &T)> {
        self.hours.buckets().map(|(h, v)| (h * HOUR_MS, v))
    }

    /// Daily buckets with something in them, oldest first: (start in ms
    /// since the epoch, sum).
    pub fn days(&self) -> impl Iterator<Item = (i64, &T)> {
        self.days.buckets().map(|(d, v)| (d * DAY_MS, v))
    }
}

/// Sums by hour over the last 24 hours only (no days): for what only the
/// last day is shown of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hourly<T>(Run<T>);

impl<T> Default for Hourly<T> {
    fn default() -> Self {
        Hourly(Run::default())
    }
}

impl<T: Tally> Hourly<T> {
    /// Adds `value` at `at_ms` to its hour.
    pub fn add(&mut self, at_ms: i64, value: &T) {
        self.0.add(at_ms.div_euclid(HOUR_MS), HOURS, value);
    }

    /// Buckets with something in them, oldest first: (start in ms since
    /// the epoch, sum).
    pub fn hours(&self) -> impl Iterator<Item = (i64, &T)> {
        self.0.buckets().map(|(h, v)| (h * HOUR_MS, v))
    }
}

/// Written as `[[hour, sum], ...]`, non-empty buckets only.
impl<T: Tally + Serialize> Serialize for Hourly<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.buckets())
    }
}

impl<'de, T: Tally + Deserialize<'de>> Deserialize<'de> for Hourly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut h = Hourly::default();
        for (n, v) in Vec::<(i64, T)>::deserialize(deserializer)? {
            h.0.add(n, HOURS, &v);
        }
        Ok(h)
    }
}

/// Milliseconds (a latency sum): saturates rather than wraps.
impl Tally for u32 {
    type Sum = u64;

    fn merge(&mut self, other: &Self) {
        *self = self.saturating_add(*other);
    }

    fn add_to(&self, sum: &mut u64) {
        *sum += u64::from(*self);
    }
}

/// Consecutive buckets, the last numbered `newest` (hours or days since
/// the epoch); empty ones stand for gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run<T> {
    newest: u32,
    sums: VecDeque<T>,
}

impl<T> Default for Run<T> {
    fn default() -> Self {
        Run {
            newest: 0,
            sums: VecDeque::new(),
        }
    }
}

impl<T: Tally> Run<T> {
    /// Buckets with something in them, oldest first, with their numbers.
    fn buckets(&self) -> impl Iterator<Item = (i64, &T)> {
        let oldest = i64::from(self.newest) + 1 - self.sums.len() as i64;
        let empty = T::default();
        self.sums
            .iter()
            .enumerate()
            .filter(move |(_, v)| **v != empty)
            .map(move |(i, v)| (oldest + i as i64, v))
    }

    /// Adds into the bucket numbered `n`, keeping the newest `keep`
    /// numbers; what is older than that, or before 1970, is dropped.
    fn add(&mut self, n: i64, keep: usize, value: &T) {
        let Ok(n) = u32::try_from(n) else {
            return;
        };
        if self.sums.is_empty() {
            self.sums.reserve_exact(1);
            self.sums.push_back(*value);
            self.newest = n;
            return;
        }
        if n > self.newest {
            let gap = (n - self.newest) as usize;
            // What stays: the buckets still within `keep` of `n`.
            let stay = self.sums.len().min(keep.saturating_sub(gap));
            self.sums.drain(..self.sums.len() - stay);
            while self.sums.front().is_some_and(|v| *v == T::default()) {
                self.sums.pop_front();
            }
            // Empty buckets for the hours (days) between, if any stayed.
            let fill = if self.sums.is_empty() { 0 } else { gap - 1 };
            self.grow(fill + 1);
            self.sums.extend(std::iter::repeat_n(T::default(), fill));
            self.sums.push_back(*value);
            self.newest = n;
            return;
        }
        let age = (self.newest - n) as usize;
        if age >= keep {
            return; // late, and older than what is kept
        }
        if let Some(i) = (self.sums.len() - 1).checked_sub(age) {
            self.sums[i].merge(value);
            return;
        }
        // Late, before the oldest bucket: extend the run back to it.
        let fill = age - self.sums.len();
        self.grow(fill + 1);
        for _ in 0..fill {
            self.sums.push_front(T::default());
        }
        self.sums.push_front(*value);
    }

    /// Room for `more` buckets, and no more than that.
    fn grow(&mut self, more: usize) {
        let need = self.sums.len() + more;
        if need > self.sums.capacity() {
            self.sums.reserve_exact(need - self.sums.len());
        }
    }
}

/// The form 0.8 wrote and reads: `{"hours": [[n, sum], ...], "days": ...}`,
/// non-empty buckets only, by number since the epoch.
impl<T: Tally + Serialize> Serialize for Rollups<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Buckets<'a, T>(&'a Run<T>);
        impl<T: Tally + Serialize> Serialize for Buckets<'_, T> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.buckets())
            }
        }
        let mut s = serializer.serialize_struct("Rollups", 2)?;
        s.serialize_field("hours", &Buckets(&self.hours))?;
        s.serialize_field("days", &Buckets(&self.days))?;
        s.end()
    }
}

/// Reads either this form or the one before 0.8: a map of hour starts (ms)
/// to sums, 30 days by the hour.
impl<'de, T: Tally + Deserialize<'de>> Deserialize<'de> for Rollups<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Now<T> {
            hours: Vec<(i64, T)>,
            days: Vec<(i64, T)>,
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
            Either::Now(Now { hours, days }) => {
                let mut r = Rollups::default();
                for (n, v) in &hours {
                    r.hours.add(*n, HOURS, v);
                }
                for (n, v) in &days {
                    r.days.add(*n, DAYS, v);
                }
                r
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    impl Tally for u64 {
        type Sum = u64;
        fn merge(&mut self, other: &Self) {
            *self += other;
        }
        fn add_to(&self, sum: &mut u64) {
            *sum += self;
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
        // Sized exactly: 24 and 30 sums, no keys, no spare room.
        assert_eq!(
            (r.hours.sums.capacity(), r.days.sums.capacity()),
            (HOURS, DAYS)
        );
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
        assert!(r.hours.sums.capacity() <= HOURS && r.days.sums.capacity() <= DAYS);
    }

    #[test]
    fn gaps_are_written_as_before_and_read_back() {
        let mut r = Rollups::<u64>::default();
        r.add(5 * HOUR_MS, &1);
        r.add(2 * HOUR_MS, &2); // late, before the oldest
        r.add(7 * HOUR_MS + 1, &3);
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(json, r#"{"hours":[[2,2],[5,1],[7,3]],"days":[[0,6]]}"#);
        assert!(serde_json::from_str::<Rollups<u64>>(&json).is_ok_and(|back| back == r));
        assert_eq!(r.since(3 * HOUR_MS), 4);
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
