//! Network namespaces for the real-network suite: one per host (a region's
//! agent, a coordinator), each joined to a bridge in the namespace the
//! tests run in (the core: the harness and the targets live there, on
//! [`HUB`] and [`TARGET`]). Links can be cut and healed, routes withdrawn.
//!
//! A plain host gets a veth pair. A host with a [`Shape`] (latency and
//! loss, like a far-away VPS) gets a pair of TAP devices with a delay line
//! between them in this process: every Ethernet frame either way waits the
//! shape's one-way delay and is dropped with its loss probability. That is
//! what `tc qdisc ... netem` would do, done in user space because kernels
//! built without `CONFIG_NET_SCH_NETEM` (this machine's) cannot.
//!
//! Needs root, iproute2 and /dev/net/tun; [`Net::create`] says why it
//! cannot otherwise, so a test can print the reason and skip.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::task::JoinHandle;
use tokio_tun::Tun;

/// The core namespace's address on the bridge (harness and targets).
pub const HUB: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// A second core address, for the mail target.
pub const TARGET: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

const BRIDGE: &str = "vt-br";

/// Latency and loss of a host's link, each way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// One-way delay (a round trip takes twice this).
    pub delay: Duration,
    /// Probability that a frame is lost, each way.
    pub loss: f64,
}

/// One host namespace.
#[derive(Debug, Clone)]
pub struct Host {
    /// Short name (`ru`, `c1`...).
    pub name: String,
    /// Namespace name (`vt-<name>`).
    pub netns: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    /// Its link's shape, if any.
    pub shape: Option<Shape>,
    /// The link's end on the core side, attached to the bridge.
    link: String,
}

/// The namespaces and the bridge; removed when dropped.
#[derive(Debug)]
pub struct Net {
    hosts: Vec<Host>,
    /// The delay lines of shaped links.
    lines: Vec<JoinHandle<()>>,
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
    /// Creates a namespace per `(name, address, shape)` on 10.77.0.0/24
    /// and the bridge joining them to the core (call it inside a Tokio
    /// runtime: delay lines run on it). `Err` carries why it cannot (not
    /// root, no iproute2...): the reason a test prints when it skips.
    pub fn create(hosts: &[(&str, Ipv4Addr, Option<Shape>)]) -> std::result::Result<Net, String> {
        if Command::new("ip").arg("-V").output().is_err() {
            return Err("iproute2 (`ip`) is not installed".into());
        }
        let hosts: Vec<Host> = hosts
            .iter()
            .map(|(name, ip, shape)| Host {
                name: (*name).to_owned(),
                netns: format!("vt-{name}"),
                ip: *ip,
                shape: *shape,
                link: format!("vt-h-{name}"),
            })
            .collect();
        // What a killed earlier run may have left behind.
        for h in &hosts {
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &h.netns])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = run("kill", &["-9", pid]);
                }
            }
            let _ = ip(&["link", "del", &h.link]);
            let _ = ip(&["link", "del", &format!("vt-i-{}", h.name)]);
            let _ = ip(&["netns", "del", &h.netns]);
        }
        let _ = ip(&["link", "del", BRIDGE]);
        let mut net = Net {
            hosts,
            lines: Vec::new(),
        };
        net.build()
            .map_err(|e| format!("cannot build network namespaces (root needed): {e:#}"))?;
        Ok(net)
    }

    fn build(&mut self) -> Result<()> {
        let hub = format!("{HUB}/24");
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["addr", "add", &hub, "dev", BRIDGE])?;
        ip(&["addr", "add", &format!("{TARGET}/24"), "dev", BRIDGE])?;
        ip(&["link", "set", BRIDGE, "up"])?;
        for h in &self.hosts {
            let addr = format!("{}/24", h.ip);
            ip(&["netns", "add", &h.netns])?;
            ip(&["-n", &h.netns, "link", "set", "lo", "up"])?;
            match h.shape {
                None => ip(&[
                    "link", "add", &h.link, "type", "veth", "peer", "name", "eth0", "netns",
                    &h.netns,
                ])?,
                Some(shape) => {
                    // Both TAPs are made here; the inner one then moves into
                    // the namespace (its file descriptor stays ours).
                    let inner_name = format!("vt-i-{}", h.name);
                    let inner = tap(&inner_name)?;
                    let outer = tap(&h.link)?;
                    ip(&["link", "set", &inner_name, "netns", &h.netns])?;
                    ip(&["-n", &h.netns, "link", "set", &inner_name, "name", "eth0"])?;
                    let seed = u64::from(h.ip.to_bits());
                    self.lines.push(tokio::spawn(delay_line(
                        inner.clone(),
                        outer.clone(),
                        shape,
                        seed,
                    )));
                    self.lines
                        .push(tokio::spawn(delay_line(outer, inner, shape, !seed)));
                }
            }
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
}

/// A TAP device named `name` in this namespace, frames without a header.
fn tap(name: &str) -> Result<Arc<Tun>> {
    let mut taps = Tun::builder()
        .name(name)
        .tap()
        .close_on_exec()
        .build()
        .with_context(|| format!("creating TAP {name} (/dev/net/tun)"))?;
    match taps.pop() {
        Some(t) => Ok(Arc::new(t)),
        None => bail!("no queue for TAP {name}"),
    }
}

/// Carries frames from `from` to `to`, each `shape.delay` late, dropping
/// each with probability `shape.loss`; order is kept.
async fn delay_line(from: Arc<Tun>, to: Arc<Tun>, shape: Shape, seed: u64) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let deliver = async move {
        while let Some((due, frame)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            // A link that is down refuses the frame: lost, like on a wire.
            let _ = to.send(&frame).await;
        }
    };
    let take = async move {
        // xorshift64*: a loss pattern of its own per direction.
        let mut state = seed | 1;
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = from.recv(&mut buf).await {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let draw =
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
            if draw < shape.loss {
                continue;
            }
            let due = tokio::time::Instant::now() + shape.delay;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    tokio::join!(deliver, take);
}

impl Drop for Net {
    fn drop(&mut self) {
        for line in &self.lines {
            line.abort();
        }
        for h in &self.hosts {
            // Gone with its namespace too, but only once the kernel has
            // torn that down, which can take a while.
            let _ = ip(&["link", "del", &h.link]);
            let _ = ip(&["netns", "del", &h.netns]);
        }
        let _ = ip(&["link", "del", BRIDGE]);
    }
}
