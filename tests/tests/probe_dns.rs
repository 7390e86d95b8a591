//! `dns`, `mx`, `ptr` and `tcp` probes against the testkit DNS server.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_tests::agent::{Run, probe};
use vantage_tests::dns::{BlackHole, DnsServer};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

const ZONE: &str = r#"
$ORIGIN example.test.
@       3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
@            IN MX  10 mx1
@            IN MX  20 mx2
mx1          IN A   127.0.0.1
mx2          IN A   127.0.0.2
mx2          IN AAAA ::1
www          IN CNAME mx1
@            IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
@            IN TXT "google-site-verification=abc"
nomail       IN A   127.0.0.5
nullmx       IN MX  0 .
broken       IN MX  10 ghost
ghost        IN TXT "no address here"
unconfirmed  IN A   192.0.2.99
mail         IN A   192.0.2.10
"#;

// Reverse DNS uses documentation addresses: resolvers answer 127/8 and ::1
// reverse queries themselves ("localhost", RFC 6761). Only DNS traffic is
// involved, and it goes to the loopback test server.
const REVERSE: &str = r#"
$ORIGIN 2.0.192.in-addr.arpa.
@       3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300
@            IN NS  ns.example.test.
10           IN PTR mail.example.test.
11           IN PTR unconfirmed.example.test.
"#;

async fn dns() -> DnsServer {
    DnsServer::start_with(&[ZONE, REVERSE], &["broken-server.example.test"])
        .await
        .unwrap()
}

async fn run(dns: &DnsServer, args: &[&str]) -> Run {
    let resolver = dns.addr.to_string();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--resolver", &resolver, "-o", "json"]);
    probe(&all).await
}

fn class(run: &Run) -> String {
    run.json()["class"].as_str().unwrap_or("none").to_owned()
}

#[tokio::test]
async fn dns_answers_and_expectations() {
    let dns = dns().await;
    let r = run(&dns, &["dns", "mx2.example.test", "--expect", "127.0.0.2"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.json()["details"]["records"],
        serde_json::json!(["127.0.0.2"])
    );

    let r = run(
        &dns,
        &[
            "dns",
            "mx2.example.test",
            "--type",
            "AAAA",
            "--expect",
            "::1",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(
        &dns,
        &[
            "dns",
            "example.test",
            "--type",
            "MX",
            "--expect",
            "mx1.example.test",
            "--expect",
            "20 mx2.example.test.",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(
        &dns,
        &["dns", "example.test", "--type", "TXT", "--expect", "v=spf1"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(
        &dns,
        &[
            "dns",
            "www.example.test",
            "--type",
            "CNAME",
            "--expect",
            "mx1.example.test",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(
        &dns,
        &[
            "dns",
            "example.test",
            "--type",
            "NS",
            "--expect",
            "ns.example.test",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(
        &dns,
        &[
            "dns",
            "192.0.2.10",
            "--type",
            "PTR",
            "--expect",
            "mail.example.test",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");

    // One expected value missing fails, naming it.
    let r = run(
        &dns,
        &[
            "dns",
            "mx2.example.test",
            "--expect",
            "127.0.0.2",
            "--expect",
            "127.0.0.9",
        ],
    )
    .await;
    assert_eq!((r.code, class(&r)), (2, "dns".into()), "{r:?}");
    assert!(r.json()["message"].as_str().unwrap().contains("127.0.0.9"));
}

#[tokio::test]
async fn dns_failures_nxdomain_nodata_servfail_timeout() {
    let dns = dns().await;
    let r = run(&dns, &["dns", "missing.example.test"]).await;
    assert_eq!((r.code, class(&r)), (2, "dns".into()), "{r:?}");
    assert!(r.json()["message"].as_str().unwrap().contains("NXDOMAIN"));

    let r = run(&dns, &["dns", "nomail.example.test", "--type", "MX"]).await;
    assert_eq!((r.code, class(&r)), (2, "dns".into()), "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("no MX records"),
        "{r:?}"
    );

    let r = run(&dns, &["dns", "broken-server.example.test"]).await;
    assert_eq!((r.code, class(&r)), (2, "dns".into()), "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("servfail"),
        "{r:?}"
    );

    let hole = BlackHole::start().await.unwrap();
    let resolver = hole.addr.to_string();
    let r = probe(&[
        "dns",
        "example.test",
        "--resolver",
        &resolver,
        "--timeout",
        "1500ms",
        "-o",
        "json",
    ])
    .await;
    assert_eq!((r.code, class(&r)), (2, "timeout".into()), "{r:?}");
    assert!(r.json()["duration_ms"].as_u64().unwrap() < 3000);
}

#[tokio::test]
async fn mx_lists_hosts_and_catches_broken_setups() {
    let dns = dns().await;
    let r = run(&dns, &["mx", "example.test"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let hosts = r.json()["details"]["hosts"].clone();
    assert_eq!(hosts[0]["host"], "mx1.example.test");
    assert_eq!(
        hosts[1]["addresses"],
        serde_json::json!(["127.0.0.2", "::1"])
    );

    let r = run(&dns, &["mx", "nullmx.example.test"]).await;
    assert_eq!((r.code, class(&r)), (2, "policy".into()), "{r:?}");
    let r = run(&dns, &["mx", "broken.example.test"]).await;
    assert_eq!((r.code, class(&r)), (2, "dns".into()), "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("ghost.example.test has no address")
    );
    let r = run(&dns, &["mx", "nomail.example.test"]).await;
    assert_eq!((r.code, class(&r)), (2, "dns".into()), "{r:?}");
}

#[tokio::test]
async fn mx_probe_runs_smtp_on_every_host() {
    let dns = dns().await;
    let first = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let port = first.addr.port();
    let port_s = port.to_string();

    // mx2 (127.0.0.2) has no server yet: one of two hosts down is a warning.
    let r = run(&dns, &["mx", "example.test", "--probe", "--port", &port_s]).await;
    assert_eq!((r.code, class(&r)), (1, "refused".into()), "{r:?}");

    let second = SmtpServer::start_on(
        format!("127.0.0.2:{port}").parse().unwrap(),
        SmtpScript::default(),
    )
    .await;
    let Ok(_second) = second else {
        eprintln!("skipping the all-up half: port {port} is taken on 127.0.0.2");
        return;
    };
    let r = run(&dns, &["mx", "example.test", "--probe", "--port", &port_s]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["details"]["smtp"].as_array().unwrap().len(), 2);

    drop(first);
    drop(_second);
    let r = run(&dns, &["mx", "example.test", "--probe", "--port", &port_s]).await;
    assert_eq!((r.code, class(&r)), (2, "refused".into()), "{r:?}");
}

#[tokio::test]
async fn ptr_forward_confirmation() {
    let dns = dns().await;
    let r = run(&dns, &["ptr", "192.0.2.10"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.json()["details"]["names"],
        serde_json::json!(["mail.example.test"])
    );

    let r = run(&dns, &["ptr", "192.0.2.11"]).await;
    assert_eq!((r.code, class(&r)), (2, "dns".into()), "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("not forward-confirmed")
    );

    let r = run(&dns, &["ptr", "192.0.2.12"]).await;
    assert_eq!((r.code, class(&r)), (2, "dns".into()), "{r:?}");
}

#[tokio::test]
async fn tcp_connect_and_expected_greeting() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let port = server.addr.port().to_string();
    let r = probe(&["tcp", "127.0.0.1", "--port", &port, "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = probe(&[
        "tcp",
        "127.0.0.1",
        "--port",
        &port,
        "--expect",
        "ESMTP",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.json()["details"]["received"]
            .as_str()
            .unwrap()
            .starts_with("220")
    );
    let r = probe(&[
        "tcp",
        "127.0.0.1",
        "--port",
        &port,
        "--expect",
        "SSH-2.0",
        "--timeout",
        "1s",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.json()["class"], "timeout");
    drop(server);
    let r = probe(&["tcp", "127.0.0.1", "--port", &port, "-o", "json"]).await;
    assert_eq!(
        (r.code, r.json()["class"].as_str()),
        (2, Some("refused")),
        "{r:?}"
    );
}
