//! The cross-region vote, pure and deterministic (no I/O, no clock: times
//! come from the log), so every replica reaches the same verdicts.
//!
//! Per (check, region): `fail_after` consecutive failures ⇒ DOWN,
//! `recover_after` consecutive passes ⇒ UP, no result for three intervals ⇒
//! STALE. `warn` counts as up (it raises warnings, not votes); `error` (the
//! vantage could not tell) counts for nothing.
//!
//! Per check, over the regions that can vote: OUTAGE when at least the
//! quorum is DOWN, BLIND when too few regions can vote to decide, REGIONAL
//! when some but fewer than the quorum are DOWN, OK otherwise.

use serde::{Deserialize, Serialize};
use vantage_common::Status;

use crate::declared::Quorum;

/// What one region currently says about one check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegionState {
    /// No verdict yet.
    #[default]
    Unknown,
    /// Working from here.
    Up,
    /// Broken from here.
    Down,
    /// No fresh result from here.
    Stale,
}

/// Streaks and state of one (check, region).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionTracker {
    /// Current state.
    pub state: RegionState,
    /// Consecutive failures.
    pub fails: u32,
    /// Consecutive passes (warn included).
    pub passes: u32,
    /// Start time of the last result counted (ms since the epoch).
    pub last_result_ms: i64,
}

impl RegionTracker {
    /// Counts one result; returns the new state if it changed.
    pub fn observe(
        &mut self,
        status: Status,
        at_ms: i64,
        fail_after: u32,
        recover_after: u32,
    ) -> Option<RegionState> {
        if at_ms < self.last_result_ms {
            return None; // late result: the newer one already counted
        }
        self.last_result_ms = at_ms;
        match status {
            Status::Pass | Status::Warn => {
                self.passes += 1;
                self.fails = 0;
            }
            Status::Fail => {
                self.fails += 1;
                self.passes = 0;
            }
            // The vantage could not tell: no vote either way, but it is alive.
            Status::Error => {
                return self.revive();
            }
        }
        let next = match self.state {
            _ if self.fails >= fail_after.max(1) => RegionState::Down,
            RegionState::Down if self.passes >= recover_after.max(1) => RegionState::Up,
            RegionState::Down => RegionState::Down,
            // Nothing to recover from: the first pass is enough.
            RegionState::Unknown | RegionState::Stale | RegionState::Up if self.passes > 0 => {
                RegionState::Up
            }
            other => other,
        };
        self.set(next)
    }

    /// A stale region that reports again returns to what it was before.
    fn revive(&mut self) -> Option<RegionState> {
        if self.state == RegionState::Stale {
            return self.set(RegionState::Unknown);
        }
        None
    }

    /// Marks the region stale when nothing came for three intervals.
    pub fn expire(&mut self, now_ms: i64, interval_ms: i64) -> Option<RegionState> {
        let silent = now_ms.saturating_sub(self.last_result_ms) > 3 * interval_ms;
        if silent && self.state != RegionState::Stale {
            self.fails = 0;
            self.passes = 0;
            return self.set(RegionState::Stale);
        }
        None
    }

    fn set(&mut self, next: RegionState) -> Option<RegionState> {
        (next != self.state).then(|| {
            self.state = next;
            next
        })
    }
}

/// The verdict of one check across its regions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// No voting region sees it down.
    Ok,
    /// Down in some regions, fewer than the quorum: a routing or regional
    /// fault, noted, never paged.
    Regional {
        /// Regions that see it down.
        down: Vec<String>,
    },
    /// Down in at least the quorum: page.
    Outage {
        /// Regions that see it down.
        down: Vec<String>,
    },
    /// Too few regions can vote to reach the quorum: say so about the
    /// vantages, not the target.
    Blind {
        /// Regions able to vote.
        voting: Vec<String>,
        /// Regions the quorum needs.
        needed: usize,
    },
    /// No vote against the target, but `warn` results (an expiring
    /// certificate, a slow server): a fact about the target, no vote needed.
    Warning {
        /// Regions whose latest result warns.
        regions: Vec<String>,
        /// The latest warning (not part of the verdict's identity).
        message: String,
    },
    /// No vote against the target, but regions get different DNS answers
    /// for the same question (split horizon, hijack, stale secondary).
    Divergent {
        /// The answer seen from each region.
        answers: std::collections::BTreeMap<String, String>,
    },
    /// Not a check's verdict: what a quorum of regions observes (a record,
    /// a certificate) changed. The subject of a one-shot incident, opened
    /// and resolved at once, notified once, never reminded.
    Changed {
        /// `SPF example.org: -all → ~all; removed ip4:192.0.2.62`.
        summary: String,
        /// Its routing severity (`on_change`; `info` for a renewal).
        severity: crate::notification::Severity,
    },
    /// Not a check's verdict: a region's vantage is impaired (the subject
    /// of a mesh-degraded incident, `vantage/<region>`).
    Impaired {
        /// The region.
        region: String,
        /// Why.
        reason: String,
    },
}

/// Verdict names from least to most severe.
pub const SEVERITY: [&str; 8] = [
    "ok",
    "changed",
    "warning",
    "divergent",
    "blind",
    "regional",
    "impaired",
    "outage",
];

/// Position of a verdict name in [`SEVERITY`] (unknown names rank lowest).
pub fn severity(name: &str) -> usize {
    SEVERITY.iter().position(|n| *n == name).unwrap_or(0)
}

impl Verdict {
    /// Lower-case name: `ok`, `regional`, `outage`, `blind`, `impaired`,
    /// `warning`, `divergent`, `changed`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Regional { .. } => "regional",
            Verdict::Outage { .. } => "outage",
            Verdict::Blind { .. } => "blind",
            Verdict::Impaired { .. } => "impaired",
            Verdict::Warning { .. } => "warning",
            Verdict::Divergent { .. } => "divergent",
            Verdict::Changed { .. } => "changed",
        }
    }

    /// Is it an event rather than a state (a change): its incident opens
    /// and resolves at once, is notified once and never reminded?
    pub fn is_event(&self) -> bool {
        matches!(self, Verdict::Changed { .. })
    }

    /// The same situation (a warning's changing message aside): no new
    /// timeline line, no new notification.
    pub fn same_as(&self, other: &Verdict) -> bool {
        match (self, other) {
            (Verdict::Warning { regions: a, .. }, Verdict::Warning { regions: b, .. }) => a == b,
            (a, b) => a == b,
        }
    }
}

impl RegionState {
    /// Lower-case name: `unknown`, `up`, `down`, `stale`.
    pub fn name(self) -> &'static str {
        match self {
            RegionState::Unknown => "unknown",
            RegionState::Up => "up",
            RegionState::Down => "down",
            RegionState::Stale => "stale",
        }
    }
}

/// One region's input to the vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballot<'a> {
    /// Region name.
    pub region: &'a str,
    /// Its state for the check.
    pub state: RegionState,
    /// False when this region's vantage is impaired.
    pub trusted: bool,
}

/// Regions the quorum needs out of `assigned`.
pub fn needed(quorum: &Quorum, assigned: usize) -> usize {
    match quorum {
        Quorum::Count(n) => *n as usize,
        Quorum::All => assigned,
        Quorum::Any => 1,
        Quorum::Majority => assigned / 2 + 1,
    }
    .max(1)
}

/// Votes over the regions assigned to a check.
pub fn vote(ballots: &[Ballot<'_>], quorum: &Quorum) -> Verdict {
    let needed = needed(quorum, ballots.len());
    let voting: Vec<&Ballot<'_>> = ballots
        .iter()
        .filter(|b| b.trusted && matches!(b.state, RegionState::Up | RegionState::Down))
        .collect();
    let down: Vec<String> = voting
        .iter()
        .filter(|b| b.state == RegionState::Down)
        .map(|b| b.region.to_owned())
        .collect();
    if down.len() >= needed {
        return Verdict::Outage { down };
    }
    if voting.len() < needed {
        return Verdict::Blind {
            voting: voting.iter().map(|b| b.region.to_owned()).collect(),
            needed,
        };
    }
    if down.is_empty() {
        Verdict::Ok
    } else {
        Verdict::Regional { down }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegionState::*;
    use Status::{Error as E, Fail as F, Pass as P, Warn as W};

    fn run(statuses: &[Status], fail_after: u32, recover_after: u32) -> Vec<RegionState> {
        let mut t = RegionTracker::default();
        statuses
            .iter()
            .enumerate()
            .map(|(i, s)| {
                t.observe(*s, i as i64 * 1000, fail_after, recover_after);
                t.state
            })
            .collect()
    }

    #[test]
    fn region_transitions_table() {
        let cases: &[(&[Status], u32, u32, &[RegionState])] = &[
            (&[P], 2, 2, &[Up]),
            (&[F], 2, 2, &[Unknown]),
            (&[F, F], 2, 2, &[Unknown, Down]),
            (&[P, F, F], 2, 2, &[Up, Up, Down]),
            (&[P, F, P, F, P, F], 2, 2, &[Up, Up, Up, Up, Up, Up]), // flapping never goes down
            (&[F, F, P], 2, 2, &[Unknown, Down, Down]),
            (&[F, F, P, P], 2, 2, &[Unknown, Down, Down, Up]),
            (
                &[F, F, P, F, P, P],
                2,
                2,
                &[Unknown, Down, Down, Down, Down, Up],
            ),
            (&[F, F, E, E, F], 2, 2, &[Unknown, Down, Down, Down, Down]), // errors do not vote
            (&[P, E, E, E], 2, 2, &[Up, Up, Up, Up]),
            (&[F, E, F], 2, 2, &[Unknown, Unknown, Down]), // an error does not break a streak
            (&[F, F, W, W], 2, 2, &[Unknown, Down, Down, Up]), // warn counts as up
            (&[F], 1, 1, &[Down]),
            (&[F, P], 1, 1, &[Down, Up]),
            (
                &[F, F, F, P, P, P],
                3,
                3,
                &[Unknown, Unknown, Down, Down, Down, Up],
            ),
        ];
        for (statuses, fa, ra, expected) in cases {
            assert_eq!(
                run(statuses, *fa, *ra),
                *expected,
                "{statuses:?} fail_after={fa} recover_after={ra}"
            );
        }
    }

    #[test]
    fn silence_makes_a_region_stale_and_a_late_result_counts_nothing() {
        let mut t = RegionTracker::default();
        t.observe(P, 10_000, 2, 2);
        assert_eq!(t.expire(10_000 + 3 * 60_000, 60_000), None);
        assert_eq!(t.expire(10_001 + 3 * 60_000, 60_000), Some(Stale));
        assert_eq!(
            t.observe(P, 5_000, 2, 2),
            None,
            "older than the last result"
        );
        assert_eq!(t.observe(P, 300_000, 2, 2), Some(Up));
        t.expire(10_000_000, 60_000);
        assert_eq!(
            t.observe(E, 10_000_001, 2, 2),
            Some(Unknown),
            "an error proves the vantage alive, not the target"
        );
    }

    /// (region, state, trusted)
    type Region<'a> = (&'a str, RegionState, bool);

    fn ballots<'a>(states: &[Region<'a>]) -> Vec<Ballot<'a>> {
        states
            .iter()
            .map(|(region, state, trusted)| Ballot {
                region,
                state: *state,
                trusted: *trusted,
            })
            .collect()
    }

    fn majority() -> Quorum {
        Quorum::Majority
    }

    #[test]
    fn vote_table() {
        let all = Quorum::All;
        let any = Quorum::Any;
        let cases: Vec<(Vec<Region<'_>>, Quorum, Verdict)> = vec![
            (
                vec![("ru", Up, true), ("eu", Up, true), ("us", Up, true)],
                majority(),
                Verdict::Ok,
            ),
            (
                vec![("ru", Down, true), ("eu", Up, true), ("us", Up, true)],
                majority(),
                Verdict::Regional {
                    down: vec!["ru".into()],
                },
            ),
            (
                vec![("ru", Down, true), ("eu", Down, true), ("us", Up, true)],
                majority(),
                Verdict::Outage {
                    down: vec!["ru".into(), "eu".into()],
                },
            ),
            (
                vec![("ru", Down, true), ("eu", Down, true), ("us", Up, true)],
                all,
                Verdict::Regional {
                    down: vec!["ru".into(), "eu".into()],
                },
            ),
            (
                vec![("ru", Down, true), ("eu", Down, true), ("us", Down, true)],
                all,
                Verdict::Outage {
                    down: vec!["ru".into(), "eu".into(), "us".into()],
                },
            ),
            (
                vec![("ru", Down, true), ("eu", Up, true), ("us", Up, true)],
                any,
                Verdict::Outage {
                    down: vec!["ru".into()],
                },
            ),
            // An impaired vantage does not vote.
            (
                vec![("ru", Down, false), ("eu", Up, true), ("us", Up, true)],
                majority(),
                Verdict::Ok,
            ),
            // Too few voters: blind, whatever the one voter says.
            (
                vec![
                    ("ru", Down, true),
                    ("eu", Stale, true),
                    ("us", Unknown, true),
                ],
                majority(),
                Verdict::Blind {
                    voting: vec!["ru".into()],
                    needed: 2,
                },
            ),
            (
                vec![("ru", Up, true), ("eu", Down, false), ("us", Stale, true)],
                majority(),
                Verdict::Blind {
                    voting: vec!["ru".into()],
                    needed: 2,
                },
            ),
            // Down in a quorum is an outage even if another region is stale.
            (
                vec![("ru", Down, true), ("eu", Down, true), ("us", Stale, true)],
                majority(),
                Verdict::Outage {
                    down: vec!["ru".into(), "eu".into()],
                },
            ),
            (
                vec![("ru", Down, true), ("eu", Up, true)],
                Quorum::Count(1),
                Verdict::Outage {
                    down: vec!["ru".into()],
                },
            ),
        ];
        for (states, quorum, expected) in cases {
            assert_eq!(
                vote(&ballots(&states), &quorum),
                expected,
                "{states:?} {quorum:?}"
            );
        }
    }

    /// Every combination of states and trust over up to five regions, for
    /// every quorum: fewer DOWN voters than the quorum never yields OUTAGE,
    /// and at least the quorum always does.
    #[test]
    fn outage_exactly_when_the_quorum_is_down() {
        let states = [Unknown, Up, Down, Stale];
        let names = ["r0", "r1", "r2", "r3", "r4"];
        for n in 1..=5usize {
            let mut quorums = vec![majority(), Quorum::All, Quorum::Any];
            quorums.extend((1..=n as u32).map(Quorum::Count));
            for code in 0..(8usize.pow(n as u32)) {
                let mut c = code;
                let regions: Vec<Region<'_>> = (0..n)
                    .map(|i| {
                        let (state, trusted) = (states[c % 4], (c / 4) % 2 == 0);
                        c /= 8;
                        (names[i], state, trusted)
                    })
                    .collect();
                let b = ballots(&regions);
                let down = regions.iter().filter(|(_, s, t)| *t && *s == Down).count();
                for q in &quorums {
                    let verdict = vote(&b, q);
                    let is_outage = matches!(verdict, Verdict::Outage { .. });
                    assert_eq!(
                        is_outage,
                        down >= needed(q, n),
                        "{regions:?} {q:?} => {verdict:?}"
                    );
                    if down > 0 && !is_outage {
                        assert!(
                            matches!(verdict, Verdict::Regional { .. } | Verdict::Blind { .. }),
                            "{verdict:?}"
                        );
                    }
                }
            }
        }
    }
}
