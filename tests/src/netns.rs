//! Network namespaces for the real-network suite: one per host (a region's
//! agent, a coordinator), each joined by a veth pair to a bridge in the
//! namespace the tests run in (the core: the harness and the targets live
//! there, on [`HUB`]). Links can be cut and healed, routes withdrawn, and,
//! where the kernel has `sch_netem`, delay and loss added.
//!
//! Needs root and iproute2; [`Net::create`] says why it cannot otherwise,
//! so a test can print the reason and skip.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Result, bail};

/// The core namespace's address on the bridge (harness and targets).
pub const HUB: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// A second core address, for the mail target.
pub const TARGET: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

const BRIDGE: &str = "vt-br";

/// One host namespace.
#[derive(Debug, Clone)]
pub struct Host {
    /// Short name (`ru`, `c1`...).
    pub name: String,
    /// Namespace name (`vt-<name>`).
    pub netns: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    /// The veth end on the core side, attached to the bridge.
    link: String,
}

/// The namespaces and the bridge; removed when dropped.
#[derive(Debug)]
pub struct Net {
    hosts: Vec<Host>,
}

fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Net {
    /// Creates a namespace per `(name, address)` on 10.77.0.0/24 and the
    /// bridge joining them to the core. `Err` carries why it cannot (not
    /// root, no iproute2...): the reason a test prints when it skips.
    pub fn create(hosts: &[(&str, Ipv4Addr)]) -> std::result::Result<Net, String> {
        if Command::new("ip").arg("-V").output().is_err() {
            return Err("iproute2 (`ip`) is not installed".into());
        }
        let hosts: Vec<Host> = hosts
            .iter()
            .map(|(name, ip)| Host {
                name: (*name).to_owned(),
                netns: format!("vt-{name}"),
                ip: *ip,
                link: format!("vt-h-{name}"),
            })
            .collect();
        // What a killed earlier run may have left behind.
        for h in &hosts {
            let _ = ip(&["netns", "del", &h.netns]);
        }
        let _ = ip(&["link", "del", BRIDGE]);
        let net = Net { hosts };
        net.build()
            .map_err(|e| format!("cannot build network namespaces (root needed): {e:#}"))?;
        Ok(net)
    }

    fn build(&self) -> Result<()> {
        let hub = format!("{HUB}/24");
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["addr", "add", &hub, "dev", BRIDGE])?;
        ip(&["addr", "add", &format!("{TARGET}/24"), "dev", BRIDGE])?;
        ip(&["link", "set", BRIDGE, "up"])?;
        for h in &self.hosts {
            let addr = format!("{}/24", h.ip);
            ip(&["netns", "add", &h.netns])?;
            ip(&["-n", &h.netns, "link", "set", "lo", "up"])?;
            ip(&[
                "link", "add", &h.link, "type", "veth", "peer", "name", "eth0", "netns", &h.netns,
            ])?;
            ip(&["link", "set", &h.link, "master", BRIDGE])?;
            ip(&["link", "set", &h.link, "up"])?;
            ip(&["-n", &h.netns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &h.netns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// Host `name`.
    pub fn host(&self, name: &str) -> Result<&Host> {
        match self.hosts.iter().find(|h| h.name == name) {
            Some(h) => Ok(h),
            None => bail!("no host {name}"),
        }
    }

    /// Cuts host `name` off the network (its link down), or heals it.
    pub fn cut(&self, name: &str, cut: bool) -> Result<()> {
        let h = self.host(name)?;
        ip(&["link", "set", &h.link, if cut { "down" } else { "up" }])
    }

    /// Withdraws (or restores) host `name`'s route to `to`, as a routing
    /// fault between one region and a target would.
    pub fn unroute(&self, name: &str, to: Ipv4Addr, withdrawn: bool) -> Result<()> {
        let h = self.host(name)?;
        let dest = format!("{to}/32");
        let verb = if withdrawn { "add" } else { "del" };
        ip(&["-n", &h.netns, "route", verb, "unreachable", &dest])
    }

    /// Adds `delay_ms` of latency and `loss_pct` % loss to everything host
    /// `name` sends (`tc netem`). `Err` when the kernel has no netem.
    pub fn shape(&self, name: &str, delay_ms: u32, loss_pct: f32) -> Result<()> {
        let h = self.host(name)?;
        let delay = format!("{delay_ms}ms");
        let loss = format!("{loss_pct}%");
        run(
            "ip",
            &[
                "netns", "exec", &h.netns, "tc", "qdisc", "replace", "dev", "eth0", "root",
                "netem", "delay", &delay, "loss", &loss,
            ],
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.netns]);
        }
        let _ = ip(&["link", "del", BRIDGE]);
    }
}
