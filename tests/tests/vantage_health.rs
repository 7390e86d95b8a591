//! Vantage health end to end: RU's resolver is broken (every DNS probe from
//! RU times out, an `error`): no page about the targets, RU reported
//! impaired with a mesh-degraded alert, and RU back to voting once fixed.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_proto::v1::StatusReply;
use vantage_tests::cluster::{Cluster, Timers, wait_for};
use vantage_tests::dns::{BlackHole, DnsServer};
use vantage_tests::receiver::Receiver;

const ZONE: &str = r#"
$ORIGIN example.test.
@       3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
@            IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
a            IN TXT "v=spf1 ip4:192.0.2.1 -all"
b            IN TXT "v=spf1 ip4:192.0.2.2 -all"
c            IN TXT "v=spf1 ip4:192.0.2.3 -all"
"#;

async fn status(cluster: &Cluster) -> Option<StatusReply> {
    cluster.checks_status(1).await
}

#[tokio::test]
async fn a_broken_resolver_in_one_region_pages_nobody_and_marks_that_vantage_impaired() {
    let dns = DnsServer::start(&[ZONE]).await.unwrap();
    let hole = BlackHole::start().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let mut toml = String::new();
    for name in ["a", "b", "c", "d"] {
        let domain = if name == "d" {
            "example.test".to_owned()
        } else {
            format!("{name}.example.test")
        };
        toml.push_str(&format!(
            "[[check]]\nname = \"spf-{name}\"\nkind = \"spf\"\ntarget = \"{domain}\"\ninterval = \"5s\"\ntimeout = \"2s\"\nregions = [\"ru\", \"eu\", \"us\"]\n\n"
        ));
    }
    toml.push_str(&format!(
        "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nsettings = {{ url = \"{}\" }}\n\n[[route]]\nname = \"all\"\nseverities = [\"critical\", \"warning\", \"info\"]\nchannels = [\"hook\"]\n",
        receiver.url("hook")
    ));
    cluster.apply(&toml).await.unwrap();
    let resolver = |addr: std::net::SocketAddr| format!("resolver = \"{addr}\"\n");
    cluster
        .spawn_agent_with("ru-1", "ru", "127.0.0.11", &[], &resolver(hole.addr))
        .await
        .unwrap();
    for (name, region, source) in [("eu-1", "eu", "127.0.0.12"), ("us-1", "us", "127.0.0.13")] {
        cluster
            .spawn_agent_with(name, region, source, &[], &resolver(dns.addr))
            .await
            .unwrap();
    }

    // RU is impaired: its results stop voting; the targets stay OK.
    let reply = match wait_for("ru impaired", || async {
        let s = status(&cluster).await?;
        s.impaired.iter().any(|i| i.region == "ru").then_some(s)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let (_, results, _) = cluster.vantagectl(&[1], &["results", "spf-a"]).await;
            panic!("{e}\n{results}\n{:#?}", status(&cluster).await);
        }
    };
    let ru = reply.impaired.iter().find(|i| i.region == "ru").unwrap();
    assert!(ru.reason.contains("from ru only"), "{}", ru.reason);
    let ok = wait_for("every target OK from eu and us", || async {
        let s = status(&cluster).await?;
        s.checks
            .iter()
            .all(|c| {
                c.verdict == "ok"
                    && c.regions
                        .iter()
                        .filter(|r| r.region != "ru")
                        .all(|r| r.state == "up")
            })
            .then_some(())
    })
    .await;
    if let Err(e) = ok {
        panic!("{e}: {:#?}", status(&cluster).await);
    }

    // A mesh-degraded alert names the vantage; no page about any target.
    wait_for("the mesh-degraded alert", || async {
        receiver
            .received("/hook")
            .iter()
            .any(|r| r.json()["check"] == "vantage/ru" && r.json()["severity"] == "warning")
            .then_some(())
    })
    .await
    .unwrap();
    let incidents = cluster.incidents(2, true).await.unwrap();
    // Before the burst is recognised, a check RU already saw DOWN may be
    // noted as REGIONAL (info): never an outage, never a page.
    assert!(
        incidents.iter().any(|i| i.check == "vantage/ru"),
        "{incidents:?}"
    );
    for i in &incidents {
        assert!(
            i.check == "vantage/ru" || i.worst == "regional",
            "only regional notes about targets: {i:?}"
        );
    }
    for r in receiver.received("/hook") {
        let j = r.json();
        assert!(
            j["check"] == "vantage/ru" || j["severity"] == "info",
            "no page about a target: {j}"
        );
    }
    let (code, out, err) = cluster.vantagectl(&[3], &["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("vantage ru impaired"), "{out}");

    // The resolver is fixed: RU votes again, the mesh incident resolves.
    cluster.kill_agent("ru-1").await.unwrap();
    cluster
        .spawn_agent_with("ru-1", "ru", "127.0.0.11", &[], &resolver(dns.addr))
        .await
        .unwrap();
    wait_for("ru up everywhere", || async {
        let s = status(&cluster).await?;
        s.checks
            .iter()
            .all(|c| c.regions.iter().all(|r| r.state == "up"))
            .then_some(())
    })
    .await
    .unwrap();
    // Healthy once the cause has been gone for 30 s (no flapping incidents).
    wait_for("ru healthy", || async {
        status(&cluster).await?.impaired.is_empty().then_some(())
    })
    .await
    .unwrap();
    wait_for("the mesh incident resolved", || async {
        cluster.incidents(1, false).await?.is_empty().then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn split_horizon_dns_is_reported_with_the_answer_per_region() {
    // RU's resolver serves another version of the zone.
    let main = DnsServer::start(&[ZONE]).await.unwrap();
    let other = ZONE.replace("ip4:192.0.2.0/24", "ip4:203.0.113.0/24");
    let split = DnsServer::start(&[&other]).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let toml = "[[check]]\nname = \"spf\"\nkind = \"spf\"\ntarget = \"example.test\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\n";
    cluster.apply(toml).await.unwrap();
    let resolver = |addr: std::net::SocketAddr| format!("resolver = \"{addr}\"\n");
    let agents = [
        ("ru-1", "ru", "127.0.0.11", split.addr),
        ("eu-1", "eu", "127.0.0.12", main.addr),
        ("us-1", "us", "127.0.0.13", main.addr),
    ];
    for (name, region, source, dns) in agents {
        cluster
            .spawn_agent_with(name, region, source, &[], &resolver(dns))
            .await
            .unwrap();
    }
    wait_for("the check divergent", || async {
        let s = status(&cluster).await?;
        (s.checks.first()?.verdict == "divergent").then_some(())
    })
    .await
    .unwrap();
    let incidents = cluster.incidents(2, false).await.unwrap();
    assert_eq!(incidents.len(), 1);
    let story: Vec<&str> = incidents[0]
        .timeline
        .iter()
        .map(|e| e.what.as_str())
        .collect();
    assert!(
        story[0].starts_with("opened: DIVERGENT DNS answers"),
        "{story:?}"
    );
    // Once every region answered, the finding names each answer.
    wait_for("every region's answer", || async {
        let i = cluster.incidents(3, false).await?;
        i.first()?
            .timeline
            .iter()
            .any(|e| {
                e.what.contains("ru: \"v=spf1 ip4:203.0.113.0/24 -all\"")
                    && e.what.contains("eu: \"v=spf1 ip4:192.0.2.0/24 -all\"")
                    && e.what.contains("us: \"v=spf1 ip4:192.0.2.0/24 -all\"")
            })
            .then_some(())
    })
    .await
    .unwrap();
}
