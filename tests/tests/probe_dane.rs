//! `vantage-agent probe dane` against a testkit DNS server holding
//! DNSSEC-signed zones (their keys handed to the probe as trust anchors)
//! and an unsigned one, and the testkit SMTP server as the MX host. The
//! TLSA records sit at `_<port>._tcp.<host>` for the server's loopback
//! port, so no privileged port is needed.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use vantage_tests::agent::probe;
use vantage_tests::certs::{TestCa, Validity};
use vantage_tests::dns::DnsServer;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A signed parent `test.` delegating `plain.test.` (no DS: an unsigned
/// child) and `dane.test.` (signed itself, anchored directly).
fn parent() -> String {
    r#"
$ORIGIN test.
@        3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
@             IN NS  ns
ns            IN A   127.0.0.1
plain         IN NS  ns.plain
ns.plain      IN A   127.0.0.1
"#
    .to_owned()
}

fn dane_zone(port: u16, tlsa: &str) -> String {
    format!(
        r#"
$ORIGIN dane.test.
@        3600 IN SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 300
@             IN NS  ns
ns            IN A   127.0.0.1
@             IN MX  10 mx
mx            IN A   127.0.0.1
_{port}._tcp.mx IN TLSA {tlsa}
nodane        IN MX  10 mx.nodane
mx.nodane     IN A   127.0.0.1
"#
    )
}

fn plain_zone(port: u16, tlsa: &str) -> String {
    format!(
        r#"
$ORIGIN plain.test.
@        3600 IN SOA ns.plain.test. hostmaster.plain.test. 1 3600 600 86400 300
@             IN NS  ns
ns            IN A   127.0.0.1
@             IN MX  10 mx
mx            IN A   127.0.0.1
_{port}._tcp.mx IN TLSA {tlsa}
"#
    )
}

fn status_class(j: &Value) -> (String, String) {
    (
        j["status"].as_str().unwrap_or_default().to_owned(),
        j["class"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn tlsa_records_are_validated_and_matched_against_the_chain() {
    let ca = TestCa::new("vantage DANE CA").unwrap();
    let cert = ca.issue(&["mx.dane.test"], Validity::GOOD).unwrap();
    let (leaf, issuer) = (cert.chain[0].clone(), cert.chain[1].clone());
    let smtp = SmtpServer::start(SmtpScript::with_starttls(cert.server_config().unwrap()))
        .await
        .unwrap();
    let port = smtp.addr.port();
    let ee = format!("3 0 1 {}", sha256_hex(leaf.as_ref()));
    let ta = format!("2 0 1 {}", sha256_hex(issuer.as_ref()));
    let wrong = format!("3 0 1 {}", sha256_hex(b"some other certificate"));

    let dns = DnsServer::start_signed(
        &[&parent(), &dane_zone(port, &ee), &plain_zone(port, &ee)],
        &["test.", "dane.test."],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let anchors = dir.path().join("anchors");
    std::fs::write(&anchors, dns.trust_anchors().unwrap()).unwrap();
    let (resolver, anchors) = (dns.addr.to_string(), anchors.display().to_string());
    let port_arg = port.to_string();
    let run = |domain: &'static str| {
        let (resolver, anchors, port) = (resolver.clone(), anchors.clone(), port_arg.clone());
        async move {
            probe(&[
                "dane",
                domain,
                "--port",
                &port,
                "--resolver",
                &resolver,
                "--trust-anchor",
                &anchors,
                "-o",
                "json",
            ])
            .await
        }
    };

    // DANE-EE: the leaf's certificate digest, in a signed zone.
    let r = run("dane.test").await;
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["details"]["hosts"][0]["tlsa"], "secure", "{j}");
    assert_eq!(j["details"]["hosts"][0]["match"], "DANE-EE", "{j}");

    // DANE-TA: the issuer's digest, the chain verified up to it.
    dns.set_zones(&[&parent(), &dane_zone(port, &ta), &plain_zone(port, &ee)])
        .unwrap();
    let r = run("dane.test").await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["details"]["hosts"][0]["match"], "DANE-TA", "{r:?}");

    // A record the chain does not match: a failure, class tls.
    dns.set_zones(&[&parent(), &dane_zone(port, &wrong), &plain_zone(port, &ee)])
        .unwrap();
    let r = run("dane.test").await;
    assert_eq!(r.code, 2, "{r:?}");
    let j = r.json();
    assert_eq!(status_class(&j), ("fail".into(), "tls".into()), "{j}");
    assert!(
        j["message"].as_str().unwrap().contains("no TLSA record"),
        "{j}"
    );

    // TLSA in the unsigned child: not usable, a warning (class dns).
    let r = run("plain.test").await;
    assert_eq!(r.code, 1, "{r:?}");
    let j = r.json();
    assert_eq!(status_class(&j), ("warn".into(), "dns".into()), "{j}");
    assert!(j["message"].as_str().unwrap().contains("not signed"), "{j}");

    // No TLSA at all: no DANE, a pass.
    let r = run("nodane.dane.test").await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.json()["message"].as_str().unwrap().contains("no DANE"),
        "{r:?}"
    );

    // The same signed records without the zone's anchor cannot be trusted.
    let r = probe(&[
        "dane",
        "dane.test",
        "--port",
        &port_arg,
        "--resolver",
        &resolver,
        "-o",
        "json",
    ])
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        status_class(&r.json()),
        ("warn".into(), "dns".into()),
        "{r:?}"
    );
}
