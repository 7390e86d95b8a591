//! What all probes of one process share: timeout override, source address
//! and the resolver settings (read once; every probe run gets a resolver
//! of its own, so nothing it is told was cached by an earlier run).

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

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
}

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
