//! What all probes of one process share: timeout override, source address
//! and the resolver settings (read once; every probe run gets a resolver
//! of its own, so nothing it is told was cached by an earlier run), and
//! the endpoints' answers to the legacy-TLS test (reused for an hour).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hickory_resolver::config::{ResolverConfig, ResolverOpts};

use crate::check::Finding;
use crate::resolver::{LookupError, Resolver, ResolverSettings};

/// Settings and shared clients for probes.
#[derive(Debug, Default)]
pub struct ProbeContext {
    /// Hard deadline for each probe; `None` uses each kind's default.
    pub timeout: Option<Duration>,
    /// Bind outgoing connections (and DNS queries) to this address.
    pub source_address: Option<IpAddr>,
    resolver_settings: ResolverSettings,
    resolver_config: OnceLock<Result<(ResolverConfig, ResolverOpts), LookupError>>,
    /// What each endpoint said to a legacy ClientHello, and when.
    legacy_tls: Mutex<HashMap<LegacyKey, (Instant, Option<&'static str>)>>,
    /// Who is probing (the agent's name; the host's for a one-shot
    /// probe): delivery probes mark their messages with it.
    pub vantage: String,
}

/// An endpoint as the legacy-TLS test reaches it: address, TLS from the
/// first byte or after STARTTLS, SNI.
pub type LegacyKey = (SocketAddr, bool, Option<String>);

/// How long a legacy-TLS answer is reused: which protocol versions a
/// server accepts changes with its configuration, not by the minute, and
/// the test costs the target a connection of its own.
pub const LEGACY_TLS_REUSE: Duration = Duration::from_secs(3600);

impl ProbeContext {
    /// A context sending DNS to `resolver` (or the system's), binding to
    /// `source_address`, with an optional deadline override.
    pub fn new(
        timeout: Option<Duration>,
        source_address: Option<IpAddr>,
        resolver: Option<SocketAddr>,
    ) -> Self {
        ProbeContext {
            timeout,
            source_address,
            resolver_settings: ResolverSettings {
                server: resolver,
                source_address,
            },
            resolver_config: OnceLock::new(),
            legacy_tls: Mutex::default(),
            vantage: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
        }
    }

    /// The same, probing as `vantage` (an agent's name).
    pub fn named(mut self, vantage: &str) -> Self {
        vantage.clone_into(&mut self.vantage);
        self
    }

    /// The legacy-TLS answer of `key` seen within [`LEGACY_TLS_REUSE`].
    pub fn legacy_tls(&self, key: &LegacyKey) -> Option<Option<&'static str>> {
        let seen = self.legacy_tls.lock().ok()?;
        seen.get(key)
            .filter(|(at, _)| at.elapsed() < LEGACY_TLS_REUSE)
            .map(|(_, answer)| *answer)
    }

    /// Remembers the legacy-TLS answer of `key` (forgetting stale ones).
    pub fn remember_legacy_tls(&self, key: LegacyKey, answer: Option<&'static str>) {
        if let Ok(mut seen) = self.legacy_tls.lock() {
            seen.retain(|_, (at, _)| at.elapsed() < LEGACY_TLS_REUSE);
            seen.insert(key, (Instant::now(), answer));
        }
    }

    /// Resolver settings, for libraries (mail-auth) that build their own.
    pub fn resolver_settings(&self) -> &ResolverSettings {
        &self.resolver_settings
    }

    /// A new resolver with nothing cached, from the settings (read on
    /// first use).
    pub fn resolver(&self) -> Result<Resolver, Finding> {
        let (config, opts) = self
            .resolver_config
            .get_or_init(|| self.resolver_settings.config())
            .as_ref()
            .map_err(LookupError::finding)?;
        Resolver::new(config, opts).map_err(|e| e.finding())
    }
}
