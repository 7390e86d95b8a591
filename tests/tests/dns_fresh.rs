//! DNS answers are never a cache's: records served with a TTL of an hour
//! change on the testkit server and the very next run of a check sees the
//! new value — one-shot, in a long-lived probe context and in the agent
//! runtime — without a divergence while the change reaches the regions
//! seconds apart; and a region whose resolver stops answering is impaired
//! on its next control runs, with no page about the targets.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_agent::check::{CheckSpec, run};
use vantage_agent::context::ProbeContext;
use vantage_common::spec::dns::{DnsCheck, RecordType};
use vantage_common::spec::spf::SpfCheck;
use vantage_proto::v1::{GetCheckRequest, GetResultsRequest};
use vantage_tests::agent::probe;
use vantage_tests::cluster::{Cluster, Timers, wait_for};
use vantage_tests::dns::DnsServer;
use vantage_tests::receiver::Receiver;

/// Every record lives an hour: a cached answer would outlive the test.
fn zone(www: &str, spf_all: &str) -> String {
    format!(
        r#"
$ORIGIN example.test.
@       3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 3600
@       3600 IN NS  ns
ns      3600 IN A   127.0.0.1
www     3600 IN A   {www}
@       3600 IN TXT "v=spf1 ip4:192.0.2.0/24 {spf_all}"
"#
    )
}

fn www() -> CheckSpec {
    CheckSpec::Dns(DnsCheck {
        name: "www.example.test".into(),
        rtype: RecordType::A,
        expect: vec![],
        authoritative: false,
    })
}

#[tokio::test]
async fn a_changed_record_shows_on_the_next_run_whatever_its_ttl() {
    let dns = DnsServer::start(&[&zone("192.0.2.1", "-all")])
        .await
        .unwrap();
    // One context for both runs, as the agent runtime keeps one.
    let ctx = ProbeContext::new(None, None, Some(dns.addr));
    let spf = CheckSpec::Spf(SpfCheck {
        domain: "example.test".into(),
        ip: None,
        expect: None,
        authoritative: false,
    });

    let before = run(&www(), &ctx).await;
    assert!(before.message.contains("192.0.2.1"), "{before:?}");
    assert_eq!(
        before.details["ttl"]["www.example.test A"], 3600,
        "the answer's TTL is reported: {:?}",
        before.details
    );
    let spf_before = run(&spf, &ctx).await;
    assert_eq!(spf_before.details["record"], "v=spf1 ip4:192.0.2.0/24 -all");

    dns.set_zones(&[&zone("192.0.2.2", "~all")]).unwrap();
    let after = run(&www(), &ctx).await;
    assert!(after.message.contains("192.0.2.2"), "{after:?}");
    assert!(!after.message.contains("192.0.2.1"), "{after:?}");
    let spf_after = run(&spf, &ctx).await;
    assert_eq!(spf_after.details["record"], "v=spf1 ip4:192.0.2.0/24 ~all");

    // One-shot, through the command line.
    let oneshot = |dns: &DnsServer| {
        let addr = dns.addr.to_string();
        async move {
            let json = probe(&["dns", "www.example.test", "-o", "json", "--resolver", &addr])
                .await
                .json();
            (
                json["details"]["records"][0]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                json["details"]["ttl"]["www.example.test A"].clone(),
            )
        }
    };
    assert_eq!(oneshot(&dns).await, ("192.0.2.2".into(), 3600.into()));
    dns.set_zones(&[&zone("192.0.2.3", "~all")]).unwrap();
    assert_eq!(oneshot(&dns).await.0, "192.0.2.3");
}

/// The latest message of `check` from `region`.
async fn latest(cluster: &Cluster, check: &str, region: &str) -> Option<String> {
    let reply = cluster
        .operator(1)
        .ok()?
        .get_results(GetResultsRequest {
            check: check.into(),
            region: region.into(),
            recent: 0,
        })
        .await
        .ok()?
        .into_inner();
    reply.latest.first().map(|r| r.message.clone())
}

#[tokio::test]
async fn the_runtime_sees_a_changed_record_and_a_dead_resolver_on_the_next_run() {
    let regions = [
        ("ru", "127.0.0.11"),
        ("eu", "127.0.0.12"),
        ("us", "127.0.0.13"),
    ];
    // Each region asks its own server, so one can die alone.
    let mut servers = Vec::new();
    for _ in regions {
        servers.push(
            DnsServer::start(&[&zone("192.0.2.1", "-all")])
                .await
                .unwrap(),
        );
    }
    let receiver = Receiver::start().await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    cluster
        .apply(&format!(
            "[[check]]\nname = \"www\"\nkind = \"dns\"\ntarget = \"www.example.test\"\ninterval = \"5s\"\ntimeout = \"2s\"\nregions = [\"ru\", \"eu\", \"us\"]\n\n\
             [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nsettings = {{ url = \"{}\" }}\n\n\
             [[route]]\nname = \"all\"\nseverities = [\"critical\", \"warning\", \"info\"]\nchannels = [\"hook\"]\n",
            receiver.url("hook")
        ))
        .await
        .unwrap();
    for ((region, source), dns) in regions.iter().zip(&servers) {
        let extra = format!(
            "resolver = \"{}\"\n\n[[control]]\nname = \"resolver\"\nkind = \"dns\"\ntarget = \"ns.example.test\"\ninterval = \"5s\"\n",
            dns.addr
        );
        cluster
            .spawn_agent_with(&format!("{region}-1"), region, source, &[], &extra)
            .await
            .unwrap();
    }
    wait_for("every region sees 192.0.2.1", || async {
        for (region, _) in regions {
            latest(&cluster, "www", region)
                .await?
                .contains("192.0.2.1")
                .then_some(())?;
        }
        Some(())
    })
    .await
    .unwrap();

    // The regions agreed on it: the baseline a change is told against.
    wait_for("a baseline of 192.0.2.1", || async {
        let check = cluster
            .operator(2)
            .ok()?
            .get_check(GetCheckRequest { name: "www".into() })
            .await
            .ok()?
            .into_inner();
        check.baseline.contains_key("192.0.2.1").then_some(())
    })
    .await
    .unwrap();

    // The record changes at its source; an hour-long TTL changes nothing.
    for dns in &servers {
        dns.set_zones(&[&zone("192.0.2.2", "-all")]).unwrap();
    }
    let changed_at = std::time::Instant::now();
    wait_for("every region sees 192.0.2.2", || async {
        for (region, _) in regions {
            latest(&cluster, "www", region)
                .await?
                .contains("192.0.2.2")
                .then_some(())?;
        }
        Some(())
    })
    .await
    .unwrap();
    println!(
        "the change reached every region after {:.1?}",
        changed_at.elapsed()
    );

    // RU's resolver dies: its control check fails, RU is impaired.
    servers[0].set_silent(true);
    let died_at = std::time::Instant::now();
    wait_for("ru impaired", || async {
        let s = cluster.checks_status(1).await?;
        s.impaired.iter().any(|i| i.region == "ru").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#?}", cluster.agent_log("ru-1")));
    println!(
        "ru impaired {:.1?} after its resolver died",
        died_at.elapsed()
    );
    let (code, out, err) = cluster
        .vantagectl(&[2], &["agents", "list", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let agents: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ru = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "ru-1")
        .unwrap();
    let control = ru["controls"]["resolver"].as_str().unwrap_or("");
    assert!(control.starts_with("fail"), "the failing control: {ru}");

    // Nobody is paged about the target.
    wait_for("the mesh-degraded alert", || async {
        receiver
            .received("/hook")
            .iter()
            .any(|r| r.json()["check"] == "vantage/ru")
            .then_some(())
    })
    .await
    .unwrap();
    // The change reached the regions seconds apart: no divergence either.
    for r in receiver.received("/hook") {
        let j = r.json();
        assert!(
            j["check"] == "vantage/ru" || j["severity"] == "info" || j["verdict"] == "changed",
            "nothing but notes and the change about the target: {j}"
        );
    }
    // The record's change itself is reported, once (after recover_after
    // results from a quorum).
    wait_for("the change reported", || async {
        let incidents = cluster.incidents(3, true).await?;
        incidents.iter().any(|i| i.worst == "changed").then_some(())
    })
    .await
    .unwrap();
    let incidents = cluster.incidents(3, true).await.unwrap();
    assert!(
        incidents
            .iter()
            .all(|i| i.check == "vantage/ru" || i.worst == "regional" || i.worst == "changed"),
        "{incidents:?}"
    );
    let changed: Vec<&str> = incidents
        .iter()
        .filter(|i| i.worst == "changed")
        .filter_map(|i| i.timeline.first().map(|e| e.what.as_str()))
        .collect();
    assert_eq!(changed.len(), 1, "{incidents:?}");
    assert!(
        changed[0].starts_with(
            "opened: CHANGED DNS www.example.test: removed 192.0.2.1; added 192.0.2.2"
        ),
        "{changed:?}"
    );
}
