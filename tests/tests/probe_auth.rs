//! `spf`, `dkim` and `dmarc` probes against records served by the testkit.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_tests::agent::{Run, probe};
use vantage_tests::dns::DnsServer;

/// A TXT record value split into quoted 255-octet strings, as zone files need.
fn txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn key(name: &str) -> String {
    let path = format!("{}/data/dkim/{name}.pub.b64", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap().trim().to_owned()
}

fn zone() -> String {
    let rsa2048 = txt(&format!("v=DKIM1; k=rsa; p={}", key("rsa2048")));
    let rsa1024 = txt(&format!("v=DKIM1; k=rsa; p={}", key("rsa1024")));
    let rsa512 = txt(&format!("v=DKIM1; k=rsa; p={}", key("rsa512")));
    let ed = txt(&format!("v=DKIM1; k=ed25519; p={}", key("ed25519")));
    let mut includes = String::new();
    // A chain of 11 includes: over the 10-lookup limit.
    for i in 0..11 {
        includes.push_str(&format!(
            "inc{i} IN TXT \"v=spf1 include:inc{}.example.test -all\"\n",
            i + 1
        ));
    }
    includes.push_str("inc11 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n");
    format!(
        r#"
$ORIGIN example.test.
@       3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
@            IN TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.example.test ~all"
@            IN TXT "unrelated=1"
_spf         IN TXT "v=spf1 ip4:198.51.100.7 -all"
double       IN TXT "v=spf1 -all"
double       IN TXT "v=spf1 ip4:192.0.2.1 -all"
nospf        IN TXT "just text"
syntax       IN TXT "v=spf1 ip4:192.0.2.0/24 bogus:thing -all"
badnet       IN TXT "v=spf1 ip4:300.1.1.1 -all"
open         IN TXT "v=spf1 +all"
deep         IN TXT "v=spf1 include:inc0.example.test -all"
loop         IN TXT "v=spf1 include:loop2.example.test -all"
loop2        IN TXT "v=spf1 include:loop.example.test -all"
{includes}
s2048._domainkey   IN TXT {rsa2048}
s1024._domainkey   IN TXT {rsa1024}
s512._domainkey    IN TXT {rsa512}
ed._domainkey      IN TXT {ed}
revoked._domainkey IN TXT "v=DKIM1; k=rsa; p="
garbled._domainkey IN TXT "v=DKIM1; k=rsa; p=!!!notbase64"
_dmarc       IN TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.test"
weak         IN A   192.0.2.1
_dmarc.weak  IN TXT "v=DMARC1; p=none"
_dmarc.two   IN TXT "v=DMARC1; p=none"
_dmarc.two   IN TXT "v=DMARC1; p=reject"
_dmarc.bad   IN TXT "v=DMARC1; p=sometimes"
sub          IN A   192.0.2.1
"#
    )
}

const OTHER: &str = r#"
$ORIGIN other.test.
@       3600 IN SOA ns.other.test. hostmaster.other.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
@            IN A   192.0.2.50
"#;

async fn dns() -> DnsServer {
    let zone = zone();
    DnsServer::start(&[&zone, OTHER]).await.unwrap()
}

async fn run(dns: &DnsServer, args: &[&str]) -> Run {
    let resolver = dns.addr.to_string();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--resolver", &resolver, "-o", "json"]);
    probe(&all).await
}

fn verdict(r: &Run) -> (i32, String, String) {
    let j = r.json();
    (
        r.code,
        j["status"].as_str().unwrap_or("").into(),
        j["class"].as_str().unwrap_or("none").into(),
    )
}

fn fail_policy() -> (i32, String, String) {
    (2, "fail".into(), "policy".into())
}

#[tokio::test]
async fn spf_valid_record_counts_lookups_and_reports_all() {
    let dns = dns().await;
    let r = run(&dns, &["spf", "example.test"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["details"]["all"], "~all");
    assert_eq!(j["details"]["lookups"], 1);
    assert!(
        j["details"]["record"]
            .as_str()
            .unwrap()
            .starts_with("v=spf1")
    );
}

#[tokio::test]
async fn spf_broken_records_fail_policy() {
    let dns = dns().await;
    for (domain, needle) in [
        ("nospf.example.test", "no SPF record"),
        ("double.example.test", "2 SPF records"),
        ("syntax.example.test", "unknown mechanism"),
        ("badnet.example.test", "invalid network"),
        ("open.example.test", "+all"),
        ("deep.example.test", "more than 10"),
        ("loop.example.test", "loop"),
    ] {
        let r = run(&dns, &["spf", domain]).await;
        assert_eq!(verdict(&r), fail_policy(), "{domain}: {r:?}");
        let msg = r.json()["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(needle), "{domain}: {msg}");
    }
    let r = run(&dns, &["spf", "missing.example.test"]).await;
    assert_eq!(verdict(&r), (2, "fail".into(), "dns".into()), "{r:?}");
}

#[tokio::test]
async fn spf_evaluates_an_address() {
    let dns = dns().await;
    let r = run(&dns, &["spf", "example.test", "--ip", "192.0.2.44"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["details"]["ip_result"], "pass");
    // Authorised through the include.
    let r = run(&dns, &["spf", "example.test", "--ip", "198.51.100.7"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(&dns, &["spf", "example.test", "--ip", "203.0.113.9"]).await;
    assert_eq!(verdict(&r), fail_policy(), "{r:?}");
    assert_eq!(r.json()["details"]["ip_result"], "softfail");
}

#[tokio::test]
async fn dkim_key_strength() {
    let dns = dns().await;
    let r = run(&dns, &["dkim", "example.test", "--selector", "s2048"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        (
            r.json()["details"]["algorithm"].as_str(),
            r.json()["details"]["bits"].as_u64()
        ),
        (Some("rsa"), Some(2048))
    );
    let r = run(&dns, &["dkim", "example.test", "--selector", "ed"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["details"]["algorithm"], "ed25519");
    let r = run(&dns, &["dkim", "example.test", "--selector", "s1024"]).await;
    assert_eq!(verdict(&r), (1, "warn".into(), "policy".into()), "{r:?}");
    let r = run(&dns, &["dkim", "example.test", "--selector", "s512"]).await;
    assert_eq!(verdict(&r), fail_policy(), "{r:?}");
}

#[tokio::test]
async fn dkim_missing_revoked_and_garbled_keys_fail() {
    let dns = dns().await;
    for (selector, needle) in [
        ("nothere", "no DKIM record"),
        ("revoked", "revoked"),
        ("garbled", ""),
    ] {
        let r = run(&dns, &["dkim", "example.test", "--selector", selector]).await;
        assert_eq!(verdict(&r), fail_policy(), "{selector}: {r:?}");
        assert!(
            r.json()["message"].as_str().unwrap().contains(needle),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn dmarc_policies() {
    let dns = dns().await;
    let r = run(
        &dns,
        &["dmarc", "example.test", "--require-policy", "reject"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(
        (
            j["details"]["policy"].as_str(),
            j["details"]["inherited"].as_bool()
        ),
        (Some("reject"), Some(false))
    );
    assert_eq!(
        j["details"]["rua"],
        serde_json::json!(["dmarc@example.test"])
    );

    // A subdomain without a record inherits the organisational domain's sp=.
    let r = run(&dns, &["dmarc", "sub.example.test"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["details"]["inherited"], true);
    assert_eq!(j["details"]["policy"], "quarantine");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("inherited from organisational domain example.test")
    );
    let r = run(
        &dns,
        &["dmarc", "sub.example.test", "--require-policy", "reject"],
    )
    .await;
    assert_eq!(verdict(&r), fail_policy(), "{r:?}");

    let r = run(&dns, &["dmarc", "weak.example.test"]).await;
    assert_eq!(
        r.code, 0,
        "p=none passes unless a policy is required: {r:?}"
    );
    let r = run(
        &dns,
        &[
            "dmarc",
            "weak.example.test",
            "--require-policy",
            "quarantine",
        ],
    )
    .await;
    assert_eq!(verdict(&r), fail_policy(), "{r:?}");
}

#[tokio::test]
async fn dmarc_missing_duplicate_and_invalid_records_fail() {
    let dns = dns().await;
    for domain in ["other.test", "two.example.test", "bad.example.test"] {
        let r = run(&dns, &["dmarc", domain]).await;
        assert_eq!(verdict(&r), fail_policy(), "{domain}: {r:?}");
    }
}

#[tokio::test]
async fn observations_are_normalised_and_pins_fail_on_a_different_value() {
    let dns = dns().await;
    // What each kind observed, in the form changes and pins compare.
    let r = run(&dns, &["spf", "example.test"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let observed = &r.json()["details"]["observed"];
    assert_eq!(observed["all"], "~all", "{observed}");
    assert_eq!(
        observed["include:_spf.example.test"],
        "include:_spf.example.test"
    );
    let r = run(&dns, &["dmarc", "example.test"]).await;
    assert_eq!(r.json()["details"]["observed"]["p"], "p=reject", "{r:?}");
    let r = run(&dns, &["dkim", "example.test", "--selector", "s2048"]).await;
    let key = r.json()["details"]["observed"]["p"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(key.starts_with("p=sha256:") && key.len() == 73, "{r:?}");

    // The same record, written differently, holds the pin.
    let same = "V=SPF1 +ip4:192.0.2.0/24  include:_spf.example.test ~all";
    let r = run(&dns, &["spf", "example.test", "--expect", same]).await;
    assert_eq!(r.code, 0, "{r:?}");
    // A different one fails with the difference.
    let r = run(
        &dns,
        &[
            "spf",
            "example.test",
            "--expect",
            "v=spf1 ip4:192.0.2.0/24 -all",
        ],
    )
    .await;
    assert_eq!(verdict(&r), fail_policy(), "{r:?}");
    let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("~all") && message.contains("added include:_spf.example.test"),
        "{message}"
    );
    let r = run(
        &dns,
        &["dmarc", "example.test", "--expect", "v=DMARC1; p=none"],
    )
    .await;
    assert_eq!(verdict(&r), fail_policy(), "{r:?}");
    assert!(r.stdout.contains("p=none → p=reject"), "{r:?}");
    // A DKIM key pinned by its fingerprint: the reported one holds, another fails.
    let fp = key.trim_start_matches("p=");
    let r = run(
        &dns,
        &[
            "dkim",
            "example.test",
            "--selector",
            "s2048",
            "--expect",
            fp,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(
        &dns,
        &[
            "dkim",
            "example.test",
            "--selector",
            "s1024",
            "--expect",
            fp,
        ],
    )
    .await;
    assert_eq!(verdict(&r), fail_policy(), "{r:?}");

    // A pin that cannot be one is refused before anything runs.
    let r = run(
        &dns,
        &["spf", "example.test", "--expect", "v=DMARC1; p=none"],
    )
    .await;
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("--expect") && r.stderr.contains("not an SPF record"),
        "{r:?}"
    );
}
