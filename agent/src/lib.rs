//! # vantage-agent
//!
//! The probe engine and the `vantage-agent` binary.
//!
//! ## Layout
//! - [`check`] — the [`check::Check`] trait, the deadline-enforcing
//!   [`check::execute`], and one file per kind under `check/`: `smtp`
//!   (with `smtp/reply.rs`, the bounded reply reader, and `smtp/session.rs`,
//!   the connection with STARTTLS), `tls`, `dns`, `mx`, `ptr`, `tcp`, `spf`,
//!   `dkim`, `dmarc`, `dnsbl`, `delivery` (the round trip, with
//!   `delivery/imap.rs`, the bounded IMAP client), `mta_sts` (`mta-sts`
//!   and `tlsrpt`), and `domain` (the whole audit). The
//!   parameters of each kind, the registry of kinds and [`check::CheckSpec`]
//!   are the shared contract in `vantage_common::spec`; only the probing
//!   (`impl Check`) is here.
//!   `posture` judges TLS (legacy versions, keys, signatures, AUTH in clear).
//! - [`authoritative`] — the authoritative view of a DNS question: every
//!   NS server of the zone asked directly, lame and disagreeing servers.
//! - [`context`] — what probes share: timeout, source address, resolver.
//! - [`resolver`] — hickory lookups and their mapping to findings.
//! - [`runtime`] — `vantage-agent run`: scheduler, spool writer, coordinator
//!   session.
//! - [`spool`] — the durable, bounded queue of unacknowledged results.
//! - [`net`] — TCP with a source address, the TLS client, chain verification.
//! - [`https`] — one bounded HTTPS GET (MTA-STS policies).
//! - [`cli`] — the `vantage-agent` command line: arguments (`cli.rs`),
//!   per-kind validation into check specs (`cli/plan.rs`), output and exit
//!   codes (`cli/output.rs`), the process entry point (`cli/entry.rs`,
//!   which `main.rs` calls).

pub mod authoritative;
pub mod check;
pub mod cli;
pub mod context;
pub mod https;
pub mod net;
pub mod resolver;
pub mod runtime;
pub mod spool;
