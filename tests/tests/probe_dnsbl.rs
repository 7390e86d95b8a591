//! `dnsbl` against a blocklist zone served by the testkit.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_tests::agent::{Run, probe};
use vantage_tests::dns::DnsServer;

const ZONE: &str = r#"
$ORIGIN bl.test.
@       3600 IN SOA ns.bl.test. hostmaster.bl.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
2.0.0.127    IN A   127.0.0.2
2.0.0.127    IN TXT "Listed for testing, see https://bl.test/q?127.0.0.2"
4.0.0.127    IN A   127.0.0.4
4.0.0.127    IN A   127.0.0.10
9.0.0.127    IN A   127.255.255.254
8.0.0.127    IN A   192.0.2.1
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2 IN A 127.0.0.3
spam.example.test IN A 127.0.1.2
"#;

const CLEAN_ZONE: &str = r#"
$ORIGIN clean.test.
@       3600 IN SOA ns.clean.test. hostmaster.clean.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
"#;

async fn run(dns: &DnsServer, target: &str, zones: &[&str]) -> Run {
    let resolver = dns.addr.to_string();
    let mut args = vec!["dnsbl", target, "--resolver", &resolver, "-o", "json"];
    for z in zones {
        args.extend_from_slice(&["--zone", z]);
    }
    probe(&args).await
}

#[tokio::test]
async fn listed_address_fails_with_reason_and_decoded_code() {
    let dns = DnsServer::start(&[ZONE, CLEAN_ZONE]).await.unwrap();
    let r = run(&dns, "127.0.0.2", &["bl.test", "clean.test"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    let j = r.json();
    assert_eq!(
        (j["status"].as_str(), j["class"].as_str()),
        (Some("fail"), Some("listed"))
    );
    let zone = &j["details"]["zones"]["bl.test"];
    assert_eq!(zone["listed"], true);
    assert_eq!(zone["codes"], serde_json::json!(["127.0.0.2"]));
    assert!(
        zone["reason"]
            .as_str()
            .unwrap()
            .contains("Listed for testing")
    );
    assert_eq!(j["details"]["zones"]["clean.test"]["listed"], false);

    let r = run(&dns, "127.0.0.4", &["bl.test"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(
        r.json()["details"]["zones"]["bl.test"]["codes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn clean_address_passes() {
    let dns = DnsServer::start(&[ZONE, CLEAN_ZONE]).await.unwrap();
    let r = run(&dns, "127.0.0.1", &["bl.test", "clean.test"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("not listed on 2 zones")
    );
}

#[tokio::test]
async fn refusal_codes_are_errors_not_listings() {
    let dns = DnsServer::start(&[ZONE]).await.unwrap();
    let r = run(&dns, "127.0.0.9", &["bl.test"]).await;
    assert_eq!(r.code, 3, "{r:?}");
    let j = r.json();
    assert_eq!(j["status"], "error");
    assert!(j["message"].as_str().unwrap().contains("refused"));

    // An answer outside 127/8 means a broken or hijacked list, not a listing.
    let r = run(&dns, "127.0.0.8", &["bl.test"]).await;
    assert_eq!(
        (r.code, r.json()["status"].as_str()),
        (3, Some("error")),
        "{r:?}"
    );
}

#[tokio::test]
async fn ipv6_and_domain_targets() {
    let dns = DnsServer::start(&[ZONE]).await.unwrap();
    let r = run(&dns, "2001:db8::1", &["bl.test"]).await;
    assert_eq!(
        (r.code, r.json()["class"].as_str()),
        (2, Some("listed")),
        "{r:?}"
    );
    let r = run(&dns, "spam.example.test", &["bl.test"]).await;
    assert_eq!(
        (r.code, r.json()["class"].as_str()),
        (2, Some("listed")),
        "{r:?}"
    );
    let r = run(&dns, "ham.example.test", &["bl.test"]).await;
    assert_eq!(r.code, 0, "{r:?}");
}
