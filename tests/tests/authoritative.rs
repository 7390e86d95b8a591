//! The authoritative view (`--authoritative`): every NS server of the zone
//! asked directly on port 53 with recursion off. Two servers that answer
//! differently are named with what each said, a lame server (one that
//! refuses the zone) is named, serials out of step are said; servers in
//! step pass.
//!
//! Authoritative servers answer on port 53, so the servers here listen on
//! port 53 of their own loopback addresses (127.53.0.x): root only, as the
//! real-network suite; elsewhere the test says why it skips.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use vantage_tests::agent::{Run, probe};
use vantage_tests::dns::DnsServer;

/// The zone as its primary has it: serial and SPF `all`.
fn zone(serial: u32, all: &str) -> String {
    format!(
        r#"
$ORIGIN example.test.
@    3600 IN SOA ns1.example.test. hostmaster.example.test. {serial} 3600 600 86400 300
@    3600 IN NS  ns1
@    3600 IN NS  ns2
@    3600 IN NS  ns3
ns1  3600 IN A   127.53.0.1
ns2  3600 IN A   127.53.0.2
ns3  3600 IN A   127.53.0.3
@    3600 IN MX  10 mx1
mx1  3600 IN A   127.0.0.1
@    3600 IN TXT "v=spf1 ip4:192.0.2.0/24 {all}"
@    3600 IN TXT "unrelated=1"
"#
    )
}

const OTHER: &str = r#"
$ORIGIN other.test.
@    3600 IN SOA ns.other.test. hostmaster.other.test. 1 3600 600 86400 300
@    3600 IN NS  ns
ns   3600 IN A   127.0.0.1
"#;

/// An authoritative server on port 53 of `ip`; `None` when this process
/// may not bind port 53 (not root).
async fn on_53(ip: [u8; 4], zones: &[&str]) -> Option<DnsServer> {
    match DnsServer::start_on(SocketAddr::from((ip, 53)), zones).await {
        Ok(s) => Some(s),
        Err(e) if std::env::var_os("VANTAGE_REQUIRE_NETNS").is_some() => {
            panic!("VANTAGE_REQUIRE_NETNS is set but port 53 of {ip:?} cannot be bound: {e}")
        }
        Err(e) => {
            println!("SKIP: authoritative servers need port 53 (root): {e}");
            None
        }
    }
}

async fn run(resolver: &DnsServer, args: &[&str]) -> Run {
    let resolver = resolver.addr.to_string();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--authoritative", "--resolver", &resolver, "-o", "json"]);
    probe(&all).await
}

#[tokio::test]
async fn disagreeing_and_lame_servers_are_named_with_what_they_said() {
    // What the resolver passes on: the delegation and the primary's data.
    let resolver = DnsServer::start(&[&zone(2, "-all")]).await.unwrap();
    let Some(ns1) = on_53([127, 53, 0, 1], &[&zone(2, "-all")]).await else {
        return;
    };
    let ns2 = on_53([127, 53, 0, 2], &[&zone(1, "~all")]).await.unwrap();
    // ns3 does not serve the zone: a lame delegation.
    let ns3 = on_53([127, 53, 0, 3], &[OTHER]).await.unwrap();

    let r = run(&resolver, &["spf", "example.test"]).await;
    let j = r.json();
    assert_eq!(
        (j["status"].as_str(), j["class"].as_str()),
        (Some("warn"), Some("dns")),
        "{r:?}"
    );
    let message = j["message"].as_str().unwrap_or_default();
    for needle in [
        "lame delegation: ns3.example.test (127.53.0.3) answered REFUSED",
        "authoritative servers disagree: ns1.example.test (127.53.0.1) say [v=spf1 ip4:192.0.2.0/24 -all]; ns2.example.test (127.53.0.2) say [v=spf1 ip4:192.0.2.0/24 ~all]",
        "SOA serials out of step: ns1.example.test (127.53.0.1) 2, ns2.example.test (127.53.0.2) 1",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    let view = &j["details"]["authoritative"];
    assert_eq!(view["zone"], "example.test", "{view}");
    assert_eq!(view["servers"].as_array().map(Vec::len), Some(3), "{view}");

    // Every kind asks its own question: the MX set agrees everywhere.
    let r = run(&resolver, &["mx", "example.test"]).await;
    let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("lame delegation: ns3"), "{message}");
    assert!(!message.contains("disagree"), "{message}");

    // In step everywhere: the check passes, the view is in its details.
    ns2.set_zones(&[&zone(2, "-all")]).unwrap();
    ns3.set_zones(&[&zone(2, "-all")]).unwrap();
    let r = run(&resolver, &["spf", "example.test"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let servers = r.json()["details"]["authoritative"]["servers"].clone();
    let serials: Vec<&serde_json::Value> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["serial"])
        .collect();
    assert_eq!(serials, [&serde_json::json!(2); 3], "{servers}");
    // A server that stops answering is named too.
    ns1.set_silent(true);
    let r = run(&resolver, &["spf", "example.test"]).await;
    assert!(
        r.stdout
            .contains("lame delegation: ns1.example.test (127.53.0.1) did not answer in time"),
        "{r:?}"
    );
}
