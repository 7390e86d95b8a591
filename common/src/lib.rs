//! # vantage-common
//!
//! What agents, coordinators and `vantagectl` share.
//!
//! ## Layout
//! - [`outcome`] — `Outcome`, `Status` (pass/warn/fail/error), `FailureClass`,
//!   per-phase timings: the result of one probe.
//! - [`wire`] — conversion of outcomes to and from their protobuf form.
//! - [`spec`] — the check specification agent and coordinator share: the
//!   registry of kinds ([`spec::Kind`]), one file of parameters per kind
//!   under `spec/`, [`spec::CheckSpec`] built and validated from a
//!   declaration.
//! - [`observed`] — what a check saw, normalised: compared across runs and
//!   regions, pinned by `expect`, and described as a change.
//! - [`duration`] — `90s`/`5m`/`4h`/`1d` parsed once into [`duration::Period`].
//! - [`clock`] — wall-clock milliseconds for timestamps.
//! - [`config`] — the one TOML loader: unknown fields rejected, errors name
//!   file, line and field.
//! - [`logging`] — the one tracing subscriber setup of every binary.
//! - [`metrics`] — the HTTP side port: `/metrics`, `/healthz`, `/readyz`.
//! - [`hash`] — a stable hash for schedules and assignments.
//! - [`identity`] — roles from certificates (`spiffe://vantage/...` URI SANs).
//! - [`pki`] — the deployment CA: create, issue, inspect (rcgen, x509-parser).
//! - [`secret`] — secrets named by reference (`<name>_env`/`<name>_file`),
//!   read where and when they are needed, never printed.
//! - [`tls`] — rustls server/client configs for mTLS, reloaded when the
//!   certificate files change.
//! - [`transport`] — gRPC over mTLS: the accepting side tags every request
//!   with the peer's identity; the dialing side presents ours.

pub mod clock;
pub mod config;
pub mod duration;
pub mod hash;
pub mod identity;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod observed;
pub mod outcome;
pub mod pki;
pub mod secret;
pub mod spec;
pub mod tls;
pub mod transport;
pub mod wire;

pub use outcome::{FailureClass, Outcome, Phases, Status};
