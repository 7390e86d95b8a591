//! # vantage-tests
//!
//! The testkit, integration tests and benchmarks of vantage.
//!
//! ## Layout
//! - [`certs`] — test PKI with rcgen (valid, expired, expiring, wrong-name,
//!   untrusted certificates).
//! - [`smtp`] — a scriptable in-process SMTP server, hostile modes included.
//! - [`dns`] — an authoritative hickory DNS server loaded with zone text,
//!   SERVFAIL names, and a black-hole resolver address.
//! - [`agent`] — runs the real `vantage-agent` binary and parses its output.
//! - [`measure`] — CPU and peak memory of this process and of children.
//! - `tests/` — integration tests, one file per area (`probe_smtp.rs`,
//!   `probe_dns.rs`, `hostile.rs`, ...).
//! - `src/bin/vantage-bench.rs` — benchmark programs that print figures.

pub mod agent;
pub mod certs;
pub mod dns;
pub mod measure;
pub mod smtp;
