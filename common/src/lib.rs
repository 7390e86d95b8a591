//! # vantage-common
//!
//! What agents, coordinators and `vantagectl` share.
//!
//! ## Layout
//! - [`outcome`] — `Outcome`, `Status` (pass/warn/fail/error), `FailureClass`,
//!   per-phase timings: the result of one probe.
//! - [`wire`] — conversion of outcomes to and from their protobuf form.
//! - [`logging`] — the one tracing subscriber setup of every binary.

pub mod logging;
pub mod outcome;
pub mod wire;

pub use outcome::{FailureClass, Outcome, Phases, Status};
