//! `vantage-demo`: the whole mesh on one machine, telling its story.
//!
//! Three coordinators and three agents (`ru`, `eu`, `us`, each probing from
//! its own loopback address), testkit mail targets (SMTP on "25", "587"
//! with STARTTLS and "465" with implicit TLS; DNS with MX, SPF, DKIM,
//! DMARC; a DNSBL zone) and a webhook receiver standing in for chat and a
//! pager. Then: all green; port 25 blocked from RU only (REGIONAL, a
//! notice, no page); the mail server really down (OUTAGE, one page); the
//! leader coordinator killed mid-incident (a new leader, still one page);
//! recovery (resolved). Exits 0 when the story held, 1 otherwise.
//! `--keep-running` leaves the mesh up and prints `vantagectl` commands.
//!
//! One self-contained program: it runs itself as coordinator, agent and
//! `vantagectl` (`VANTAGE_ROLE`).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use vantage_proto::v1::GetIncidentRequest;
use vantage_tests::certs::server_tls;
use vantage_tests::cluster::{Cluster, REGIONS, Timers, wait_for};
use vantage_tests::dns::DnsServer;
use vantage_tests::receiver::Receiver;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn main() -> ExitCode {
    match std::env::var("VANTAGE_ROLE").as_deref() {
        Ok("coordinator") => return vantage_coordinator::daemon::main(),
        Ok("agent") => return vantage_agent::cli::entry::main(),
        Ok("ctl") => return vantage_coordinator::ctl::main(),
        _ => {}
    }
    let keep_running = std::env::args().any(|a| a == "--keep-running");
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "vantage-demo [--keep-running]: a 3-region mesh on loopback telling the story of an outage"
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vantage-demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(keep_running)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vantage-demo: the story did not hold: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Story {
    start: Instant,
}

impl Story {
    fn say(&self, what: &str) {
        println!("[{:>6.1}s] {what}", self.start.elapsed().as_secs_f64());
    }
}

const ZONE: &str = r#"
$ORIGIN demo.test.
@       3600 IN SOA ns.demo.test. hostmaster.demo.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
@            IN MX  10 mx.demo.test.
mx           IN A   127.0.0.1
@            IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc       IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@demo.test"
"#;

const BL_ZONE: &str = r#"
$ORIGIN bl.demo.test.
@       3600 IN SOA ns.demo.test. hostmaster.demo.test. 1 3600 600 86400 300
@            IN NS  ns.demo.test.
2.0.0.127    IN A   127.0.0.2
2.0.0.127    IN TXT "listed for the demo"
"#;

/// Pages (critical notifications) and notices (info) received so far.
fn count(receiver: &Receiver, path: &str, severity: &str) -> usize {
    receiver
        .accepted_keys(path)
        .iter()
        .filter(|k| k.contains(&format!("/{severity}/")))
        .count()
}

/// `check`'s (verdict, down regions) from the first node that answers.
async fn verdict(cluster: &Cluster, check: &str) -> Option<(String, Vec<String>)> {
    for id in cluster.ids() {
        if let Some(v) = cluster.verdict(id, check).await {
            return Some(v);
        }
    }
    None
}

async fn demo(keep_running: bool) -> Result<()> {
    vantage_tests::self_exec();
    let story = Story {
        start: Instant::now(),
    };
    story.say(
        "starting mail targets: SMTP (25, 587 STARTTLS, 465 TLS), DNS (MX, SPF, DMARC), a DNSBL",
    );
    let tls = server_tls(&["mx.demo.test"])?;
    let mx25 = SmtpServer::start(SmtpScript::with_starttls(tls.clone())).await?;
    let sub587 = SmtpServer::start(SmtpScript::with_starttls(tls.clone())).await?;
    let smtps465 = SmtpServer::start(SmtpScript::with_implicit_tls(tls)).await?;
    let dns = DnsServer::start(&[ZONE, BL_ZONE]).await?;
    let receiver = Receiver::start().await?;
    story.say("starting 3 coordinators (Raft over mTLS gRPC)");
    let mut cluster = Cluster::start(3, Timers::default()).await?;
    let checks = format!(
        r#"
[[check]]
name = "mx-smtp-25"
kind = "smtp"
target = "127.0.0.1"
interval = "5s"
regions = ["ru", "eu", "us"]
labels = {{ team = "mail" }}
params = {{ port = {p25}, tls = "starttls" }}

[[check]]
name = "mx-submission-587"
kind = "smtp"
target = "127.0.0.1"
interval = "5s"
regions = ["ru", "eu", "us"]
labels = {{ team = "mail" }}
params = {{ port = {p587}, tls = "starttls" }}

[[check]]
name = "mx-smtps-465"
kind = "smtp"
target = "127.0.0.1"
interval = "5s"
regions = ["ru", "eu", "us"]
labels = {{ team = "mail" }}
params = {{ port = {p465}, tls = "implicit" }}

[[check]]
name = "demo-mx"
kind = "mx"
target = "demo.test"
interval = "10s"
regions = ["ru", "eu", "us"]
labels = {{ team = "mail" }}

[[check]]
name = "demo-spf"
kind = "spf"
target = "demo.test"
interval = "10s"
regions = ["ru", "eu", "us"]
labels = {{ team = "mail" }}

[[check]]
name = "demo-dmarc"
kind = "dmarc"
target = "demo.test"
interval = "10s"
regions = ["ru", "eu", "us"]
labels = {{ team = "mail" }}

[[check]]
name = "mx-not-listed"
kind = "dnsbl"
target = "127.0.0.1"
interval = "10s"
regions = ["eu", "us"]
labels = {{ team = "mail" }}
params = {{ zones = ["bl.demo.test"] }}

[[channel]]
name = "chat"
kind = "webhook"
settings = {{ url = "{chat}" }}

[[channel]]
name = "pager"
kind = "webhook"
settings = {{ url = "{pager}" }}

[[route]]
name = "notices"
match = {{ team = "mail" }}
severities = ["info", "warning"]
channels = ["chat"]

[[route]]
name = "oncall"
match = {{ team = "mail" }}
severities = ["critical"]
channels = ["chat", "pager"]
"#,
        p25 = mx25.addr.port(),
        p587 = sub587.addr.port(),
        p465 = smtps465.addr.port(),
        chat = receiver.url("chat"),
        pager = receiver.url("pager"),
    );
    cluster.apply(&checks).await?;
    story.say("starting agents in ru (127.0.0.11), eu (127.0.0.12), us (127.0.0.13)");
    for (name, region, source) in REGIONS {
        cluster
            .spawn_agent_with(
                name,
                region,
                source,
                &[],
                &format!("resolver = \"{}\"\n", dns.addr),
            )
            .await?;
    }
    wait_for("every check OK from every region", || async {
        let s = cluster.checks_status(1).await?;
        s.checks
            .iter()
            .all(|c| c.verdict == "ok" && c.regions.iter().all(|r| r.state == "up"))
            .then_some(())
    })
    .await?;
    story.say("all green: 7 checks OK from ru, eu and us");

    story.say("port 25 blocked from RU only (a routing fault, not an outage)...");
    mx25.block_from("127.0.0.11".parse()?, true);
    wait_for("REGIONAL naming ru", || async {
        let (v, down) = verdict(&cluster, "mx-smtp-25").await?;
        (v == "regional" && down == ["ru"]).then_some(())
    })
    .await?;
    wait_for("the regional notice", || async {
        (count(&receiver, "/chat", "info") == 1).then_some(())
    })
    .await?;
    if count(&receiver, "/pager", "critical") != 0 {
        bail!("a regional fault paged");
    }
    story.say("mx-smtp-25 is REGIONAL (down from ru): one notice to chat, no page");

    story.say("the mail server really goes down (port 25 refused everywhere)...");
    for (_, _, source) in REGIONS {
        mx25.block_from(source.parse()?, true);
    }
    let down = wait_for("OUTAGE and one page", || async {
        let (v, down) = verdict(&cluster, "mx-smtp-25").await?;
        (v == "outage" && count(&receiver, "/pager", "critical") == 1).then_some(down)
    })
    .await?;
    story.say(&format!(
        "mx-smtp-25 is an OUTAGE (down from {}): the pager got exactly 1 page",
        down.join(", ")
    ));

    let leader = cluster.wait_for_leader(&cluster.ids()).await?;
    story.say(&format!(
        "killing the leader coordinator (node {leader}) mid-incident..."
    ));
    cluster.kill(leader).await?;
    let live: Vec<u64> = cluster.ids().into_iter().filter(|n| *n != leader).collect();
    let new_leader = cluster.wait_for_leader(&live).await?;
    story.say(&format!("node {new_leader} leads now; agents followed it"));

    story.say("the mail server comes back...");
    for (_, _, source) in REGIONS {
        mx25.block_from(source.parse()?, false);
    }
    wait_for("OK and the resolution sent", || async {
        let (v, _) = verdict(&cluster, "mx-smtp-25").await?;
        let resolved = ["/pager", "/chat"].iter().all(|path| {
            receiver
                .accepted_keys(path)
                .iter()
                .any(|k| k.contains("/resolved/"))
        });
        (v == "ok" && resolved).then_some(())
    })
    .await?;
    let pages = count(&receiver, "/pager", "critical");
    if pages != 1 {
        bail!("{pages} pages across the leader change");
    }
    story.say("resolved: one resolution to each channel told; still exactly 1 page across the leader change");

    let incidents = cluster
        .incidents(new_leader, true)
        .await
        .ok_or_else(|| anyhow!("node {new_leader} lists no incidents"))?;
    let Some(first) = incidents.iter().find(|i| i.check == "mx-smtp-25") else {
        bail!("no incident recorded");
    };
    let incident = cluster
        .operator(new_leader)?
        .get_incident(GetIncidentRequest { id: first.id })
        .await?
        .into_inner();
    println!(
        "\nincident #{} on {} (worst: {}):",
        incident.id, incident.check, incident.worst
    );
    for e in &incident.timeline {
        println!("  {}  {}", vantage_common::clock::rfc3339(e.at_ms), e.what);
    }
    println!(
        "\nsummary: regional fault → 1 notice, 0 pages; outage → {} page; leader {} killed → still {} page; recovery → resolved. {:.0} s in all.",
        pages,
        leader,
        pages,
        story.start.elapsed().as_secs_f64()
    );

    if keep_running {
        let endpoints: Vec<String> = cluster
            .ids()
            .iter()
            .filter(|id| **id != leader)
            .filter_map(|id| cluster.nodes.get(id).map(|n| n.addr.to_string()))
            .collect();
        let pki = cluster.pki_dir();
        println!("\nthe mesh keeps running (Ctrl-C ends it). Explore it with vantagectl:");
        println!(
            "  export VANTAGE_ENDPOINTS={} VANTAGE_CA={} VANTAGE_CERT={} VANTAGE_KEY={}",
            endpoints.join(","),
            pki.join("ca.pem").display(),
            pki.join("operator-tester.pem").display(),
            pki.join("operator-tester.key").display()
        );
        for cmd in [
            "vantagectl status",
            "vantagectl incidents list --all",
            &format!("vantagectl incidents show {}", incident.id),
            "vantagectl history mx-smtp-25 --since 1h",
            "vantagectl agents list",
            "vantagectl cluster status",
        ] {
            println!("  {cmd}");
        }
        if let Some(http) = cluster.nodes.get(&new_leader).and_then(|n| n.http) {
            println!("  status page: http://{http}/   metrics: http://{http}/metrics");
        }
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
