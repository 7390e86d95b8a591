//! `vantage-agent probe domain`: the whole audit, one outcome per finding.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_tests::agent::probe;
use vantage_tests::certs::{TestCa, Validity};
use vantage_tests::dns::DnsServer;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn zone() -> String {
    let ed = std::fs::read_to_string(format!(
        "{}/data/dkim/ed25519.pub.b64",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    format!(
        r#"
$ORIGIN example.test.
@       3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
@            IN MX  10 mx
mx           IN A   127.0.0.1
@            IN TXT "v=spf1 mx -all"
_dmarc       IN TXT "v=DMARC1; p=reject"
_smtp._tls   IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.test"
mail._domainkey IN TXT "v=DKIM1; k=ed25519; p={}"
"#,
        ed.trim()
    )
}

const SLOPPY: &str = r#"
$ORIGIN sloppy.test.
@       3600 IN SOA ns.sloppy.test. hostmaster.sloppy.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
@            IN MX  10 mx
mx           IN A   127.0.0.1
"#;

const BL: &str = r#"
$ORIGIN bl.test.
@       3600 IN SOA ns.bl.test. hostmaster.bl.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
"#;

#[tokio::test]
async fn healthy_domain_passes_every_finding() {
    let zone = zone();
    let dns = DnsServer::start(&[&zone, SLOPPY, BL]).await.unwrap();
    let ca = TestCa::new("test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_pem(dir.path()).unwrap().display().to_string();
    let tls = ca
        .issue(&["mx.example.test"], Validity::GOOD)
        .unwrap()
        .server_config()
        .unwrap();
    let smtp = SmtpServer::start(SmtpScript::with_starttls(tls))
        .await
        .unwrap();
    let port = smtp.addr.port().to_string();
    let resolver = dns.addr.to_string();

    let common = [
        "--resolver",
        &resolver,
        "--port",
        &port,
        "--ca-file",
        &ca_file,
        "--zone",
        "bl.test",
        "-o",
        "json",
    ];
    let mut args = vec![
        "domain",
        "example.test",
        "--selector",
        "mail",
        "--rcpt",
        "postmaster@example.test",
    ];
    args.extend_from_slice(&common);
    let r = probe(&args).await;
    let findings = r.json();
    let findings = findings.as_array().unwrap();
    let kinds: Vec<&str> = findings
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "mx", "smtp", "tls", "ptr", "dnsbl", "spf", "dmarc", "dkim", "mta-sts", "tlsrpt", "dane",
    ] {
        assert!(kinds.contains(&kind), "no {kind} finding in {kinds:?}");
    }
    for f in findings {
        assert_eq!(f["status"], "pass", "{f}");
    }
    assert_eq!(r.code, 0, "{r:?}");
    // The MX host was asked to accept mail for the recipient; no MTA-STS
    // is published, which passes saying so; TLS-RPT names its address.
    let finding = |kind: &str| findings.iter().find(|f| f["kind"] == kind).unwrap();
    assert_eq!(
        finding("smtp")["details"]["rcpt"][0]["address"],
        "postmaster@example.test"
    );
    assert!(
        smtp.commands()
            .contains(&"RCPT TO:<postmaster@example.test>".to_owned())
    );
    assert!(
        finding("mta-sts")["message"]
            .as_str()
            .unwrap()
            .contains("no MTA-STS")
    );
    assert_eq!(
        finding("tlsrpt")["details"]["rua"],
        serde_json::json!(["mailto:tlsrpt@example.test"])
    );
    // dnsbl for the host address and for the domain itself.
    assert_eq!(kinds.iter().filter(|k| **k == "dnsbl").count(), 2);

    // Text output: one line per finding.
    let mut args = vec!["domain", "example.test", "--selector", "mail"];
    args.extend_from_slice(&common[..common.len() - 2]);
    let r = probe(&args).await;
    assert_eq!(r.stdout.lines().count(), findings.len(), "{}", r.stdout);
    assert!(
        r.stdout.lines().all(|l| l.starts_with("PASS ")),
        "{}",
        r.stdout
    );

    // A domain without SPF, DMARC or DKIM fails, with each gap as its own finding.
    let mut args = vec!["domain", "sloppy.test"];
    args.extend_from_slice(&common);
    let r = probe(&args).await;
    assert_eq!(r.code, 2, "{r:?}");
    let findings = r.json();
    let failed: Vec<String> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] != "pass")
        .map(|f| {
            format!(
                "{} {}",
                f["kind"].as_str().unwrap(),
                f["status"].as_str().unwrap()
            )
        })
        .collect();
    assert!(failed.contains(&"spf fail".to_owned()), "{failed:?}");
    assert!(failed.contains(&"dmarc fail".to_owned()), "{failed:?}");
    assert!(failed.contains(&"dkim warn".to_owned()), "{failed:?}");
    // mx.sloppy.test's certificate is for another name.
    assert!(failed.contains(&"tls fail".to_owned()), "{failed:?}");
}
