//! Change alerts on a 3-coordinator, 3-region mesh: records changed on the
//! testkit DNS server (SPF, MX, DKIM, DMARC) and certificates swapped on a
//! testkit STARTTLS server are reported once each as CHANGED with old →
//! new, never as a divergence; restoring a record is one more change; a
//! certificate renewal is an `info` change, a new issuer a warning.
//! `vantagectl changes`, `history`, `checks get` and the webhook show them.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use vantage_proto::v1::{GetCheckRequest, ListChangesRequest};
use vantage_tests::certs::{TestCa, Validity};
use vantage_tests::cluster::{Cluster, Timers, wait_for};
use vantage_tests::dns::DnsServer;
use vantage_tests::receiver::Receiver;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn key(name: &str) -> String {
    let path = format!("{}/data/dkim/{name}.pub.b64", env!("CARGO_MANIFEST_DIR"));
    let b64 = std::fs::read_to_string(&path).unwrap();
    // TXT strings are at most 255 octets.
    b64.trim()
        .as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The zone before (`changed` false) and after the edit.
fn zone(changed: bool) -> String {
    let (spf, mx2, dmarc, dkim) = if changed {
        (
            "v=spf1 ip4:192.0.2.61 ~all",
            "@ 3600 IN MX 20 mx2",
            "p=none",
            format!("\"v=DKIM1; k=ed25519; p=\" {}", key("ed25519")),
        )
    } else {
        (
            "v=spf1 ip4:192.0.2.61 ip4:192.0.2.62 -all",
            "",
            "p=reject",
            format!("\"v=DKIM1; k=rsa; p=\" {}", key("rsa2048")),
        )
    };
    format!(
        r#"
$ORIGIN example.test.
@       3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 3600
@       3600 IN NS  ns
ns      3600 IN A   127.0.0.1
mx1     3600 IN A   127.0.0.1
mx2     3600 IN A   127.0.0.2
@       3600 IN MX  10 mx1
{mx2}
@       3600 IN TXT "{spf}"
_dmarc  3600 IN TXT "v=DMARC1; {dmarc}; rua=mailto:d@example.test"
s1._domainkey 3600 IN TXT {dkim}
"#
    )
}

/// A STARTTLS server on `addr` presenting a certificate for mx.test.
async fn serve_cert(addr: SocketAddr, ca: &TestCa, validity: Validity) -> SmtpServer {
    let tls = ca
        .issue(&["mx.test"], validity)
        .unwrap()
        .server_config()
        .unwrap();
    // The previous server's port is free once its task has gone.
    let mut tries = 0;
    loop {
        match SmtpServer::start_on(addr, SmtpScript::with_starttls(tls.clone())).await {
            Ok(s) => return s,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("rebinding {addr}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{addr}: {e}"),
        }
    }
}

/// Changes so far: (check, severity, renewal, summary).
async fn changes(cluster: &Cluster) -> Option<Vec<(String, String, bool, String)>> {
    let reply = cluster
        .operator(1)
        .ok()?
        .list_changes(ListChangesRequest {
            check: String::new(),
            since_ms: 0,
        })
        .await
        .ok()?
        .into_inner();
    Some(
        reply
            .changes
            .into_iter()
            .map(|c| (c.check, c.severity, c.renewal, c.summary))
            .collect(),
    )
}

async fn wait_changes(cluster: &Cluster, n: usize) -> Vec<(String, String, bool, String)> {
    wait_for(&format!("{n} changes"), || async {
        changes(cluster).await.filter(|c| c.len() >= n)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#?}", agent_log(cluster)))
}

fn agent_log(cluster: &Cluster) -> String {
    format!("agent log ru-1: {:?}", cluster.agent_log("ru-1"))
}

#[tokio::test]
async fn changes_seen_by_every_region_are_reported_once_with_old_and_new() {
    let dns = DnsServer::start(&[&zone(false)]).await.unwrap();
    let (ca, other_ca) = (
        TestCa::new("vantage test CA").unwrap(),
        TestCa::new("another test CA").unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("cas.pem");
    std::fs::write(&ca_file, format!("{}{}", ca.pem(), other_ca.pem())).unwrap();
    let first = serve_cert(
        "127.0.0.1:0".parse().unwrap(),
        &ca,
        Validity::expiring_in(90),
    )
    .await;
    let tls_addr = first.addr;
    let receiver = Receiver::start().await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();

    let common = "interval = \"5s\"\ntimeout = \"3s\"\nregions = [\"ru\", \"eu\", \"us\"]";
    cluster
        .apply(&format!(
            "[[check]]\nname = \"spf\"\nkind = \"spf\"\ntarget = \"example.test\"\n{common}\n\n\
             [[check]]\nname = \"mx\"\nkind = \"mx\"\ntarget = \"example.test\"\n{common}\n\n\
             [[check]]\nname = \"dmarc\"\nkind = \"dmarc\"\ntarget = \"example.test\"\non_change = \"critical\"\n{common}\n\n\
             [[check]]\nname = \"dkim\"\nkind = \"dkim\"\ntarget = \"example.test\"\n{common}\nparams = {{ selector = \"s1\" }}\n\n\
             [[check]]\nname = \"cert\"\nkind = \"tls\"\ntarget = \"127.0.0.1\"\n{common}\n\
             params = {{ port = {port}, tls = \"starttls\", tls_name = \"mx.test\", ca_file = \"{ca}\" }}\n\n\
             [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nsettings = {{ url = \"{hook}\" }}\n\n\
             [[route]]\nname = \"all\"\nseverities = [\"critical\", \"warning\", \"info\"]\nchannels = [\"hook\"]\n",
            port = tls_addr.port(),
            ca = ca_file.display(),
            hook = receiver.url("hook"),
        ))
        .await
        .unwrap();
    for (region, source) in [
        ("ru", "127.0.0.11"),
        ("eu", "127.0.0.12"),
        ("us", "127.0.0.13"),
    ] {
        let extra = format!("resolver = \"{}\"\n", dns.addr);
        cluster
            .spawn_agent_with(&format!("{region}-1"), region, source, &[], &extra)
            .await
            .unwrap();
    }

    // Every check agrees on a first value: its baseline, no change.
    wait_for("a baseline for every check", || async {
        for name in ["spf", "mx", "dmarc", "dkim", "cert"] {
            let c = cluster
                .operator(2)
                .ok()?
                .get_check(GetCheckRequest { name: name.into() })
                .await
                .ok()?
                .into_inner();
            (!c.baseline.is_empty()).then_some(())?;
        }
        Some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", agent_log(&cluster)));
    assert_eq!(changes(&cluster).await.unwrap(), []);
    let (code, out, err) = cluster
        .vantagectl(&[1], &["checks", "get", "spf", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let spf: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(spf["baseline"]["all"], "-all", "{spf}");

    // The records change at their source: one change per check.
    dns.set_zones(&[&zone(true)]).unwrap();
    let seen = wait_changes(&cluster, 4).await;
    let summary = |check: &str, nth: usize| -> String {
        seen.iter()
            .filter(|c| c.0 == check)
            .nth(nth)
            .map(|c| c.3.clone())
            .unwrap_or_else(|| panic!("no change {nth} of {check}: {seen:?}"))
    };
    assert_eq!(
        summary("spf", 0),
        "SPF example.test: -all → ~all; removed ip4:192.0.2.62"
    );
    assert_eq!(
        summary("mx", 0),
        "MX example.test: added 20 mx2.example.test"
    );
    assert_eq!(summary("dmarc", 0), "DMARC example.test: p=reject → p=none");
    let dkim = summary("dkim", 0);
    assert!(
        dkim.contains("k=rsa → k=ed25519") && dkim.contains("p=sha256:"),
        "{dkim}"
    );
    let severity = |check: &str| seen.iter().find(|c| c.0 == check).map(|c| c.1.clone());
    assert_eq!(severity("dmarc").as_deref(), Some("critical"));
    assert_eq!(severity("spf").as_deref(), Some("warning"));

    // Restored: one more change each.
    dns.set_zones(&[&zone(false)]).unwrap();
    let seen = wait_changes(&cluster, 8).await;
    assert_eq!(
        seen.iter()
            .filter(|c| c.0 == "spf")
            .nth(1)
            .map(|c| c.3.as_str()),
        Some("SPF example.test: ~all → -all; added ip4:192.0.2.62")
    );

    // The certificate is renewed (same issuer, later expiry): info.
    drop(first);
    let renewed = serve_cert(tls_addr, &ca, Validity::expiring_in(180)).await;
    let seen = wait_changes(&cluster, 9).await;
    let cert = seen.iter().find(|c| c.0 == "cert").unwrap();
    assert_eq!((cert.1.as_str(), cert.2), ("info", true), "{cert:?}");
    // Then swapped for one from another CA: a warning naming the issuers.
    drop(renewed);
    let _swapped = serve_cert(tls_addr, &other_ca, Validity::expiring_in(180)).await;
    let seen = wait_changes(&cluster, 10).await;
    let cert = seen.iter().filter(|c| c.0 == "cert").nth(1).unwrap();
    assert_eq!((cert.1.as_str(), cert.2), ("warning", false), "{cert:?}");
    assert!(
        cert.3
            .contains("issuer: CN=vantage test CA → CN=another test CA"),
        "{cert:?}"
    );

    // Exactly the changes, nothing else: one CHANGED incident each (over
    // at once), no divergence, no outage, and one notice per change.
    assert_eq!(changes(&cluster).await.unwrap().len(), 10);
    // The leader's /metrics counts them per check.
    let mut counted = None;
    for id in cluster.ids() {
        let url = format!("http://{}/metrics", cluster.nodes[&id].http.unwrap());
        let http = vantage_coordinator::alert::http_client().unwrap();
        let text = http.get(url).send().await.unwrap().text().await.unwrap();
        if text.contains("vantage_raft_is_leader 1\n") {
            let total = |check: &str| {
                let line = format!("vantage_check_changes_total{{check=\"{check}\"}} ");
                text.lines()
                    .find_map(|l| l.strip_prefix(line.as_str()))
                    .map(str::to_owned)
            };
            counted = Some([total("spf"), total("cert"), total("mx")]);
        }
    }
    let two = Some("2".to_owned());
    assert_eq!(counted, Some([two.clone(), two.clone(), two]));
    let incidents = cluster.incidents(3, true).await.unwrap();
    let verdicts: Vec<(&str, bool)> = incidents
        .iter()
        .map(|i| (i.worst.as_str(), i.resolved_ms.is_some()))
        .collect();
    assert_eq!(verdicts, [("changed", true); 10], "{incidents:#?}");
    wait_for("ten notices", || async {
        (receiver.received("/hook").len() >= 10).then_some(())
    })
    .await
    .unwrap();
    let notices = receiver.received("/hook");
    assert_eq!(notices.len(), 10);
    assert!(
        notices.iter().any(|n| n.json()["title"]
            == "[warning] spf: CHANGED SPF example.test: -all → ~all; removed ip4:192.0.2.62"),
        "{:?}",
        notices
            .iter()
            .map(|n| n.json()["title"].clone())
            .collect::<Vec<_>>()
    );

    // The operator's views.
    let (code, out, err) = cluster
        .vantagectl(&[2], &["changes", "spf", "--since", "1h"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "a header and two changes: {out}");
    assert!(out.contains("-all → ~all"), "{out}");
    let (code, out, err) = cluster.vantagectl(&[3], &["history", "spf"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("changes: 2"), "{out}");
    let (code, _, err) = cluster.vantagectl(&[3], &["changes", "nope"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no check named"), "{err}");
}
