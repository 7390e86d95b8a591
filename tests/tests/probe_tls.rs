//! `vantage-agent probe tls`: chain, name and expiry of SMTP and TLS endpoints.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_tests::agent::{Run, probe};
use vantage_tests::certs::{CaFile, TestCa, Validity};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

struct Fixture {
    ca: CaFile,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            ca: CaFile::new("vantage test CA").unwrap(),
        }
    }

    fn ca_file(&self) -> String {
        self.ca.path().to_owned()
    }

    /// A STARTTLS server presenting a certificate from `issuer` for `names`.
    async fn starttls(&self, issuer: &TestCa, names: &[&str], validity: Validity) -> SmtpServer {
        let tls = issuer
            .issue(names, validity)
            .unwrap()
            .server_config()
            .unwrap();
        SmtpServer::start(SmtpScript::with_starttls(tls))
            .await
            .unwrap()
    }

    async fn probe(&self, server: &SmtpServer, extra: &[&str]) -> Run {
        let port = server.addr.port().to_string();
        let ca_file = self.ca_file();
        let mut args = vec![
            "tls",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "starttls",
            "--ca-file",
            &ca_file,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        probe(&args).await
    }
}

fn status_class(run: &Run) -> (String, String) {
    let j = run.json();
    (
        j["status"].as_str().unwrap_or_default().into(),
        j["class"].as_str().unwrap_or_default().into(),
    )
}

#[tokio::test]
async fn valid_certificate_via_starttls_passes_with_details() {
    let f = Fixture::new();
    let server = f.starttls(&f.ca, &["mx.test"], Validity::GOOD).await;
    let run = f.probe(&server, &["--tls-name", "mx.test"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert_eq!(j["kind"], "tls");
    let days = j["details"]["days_left"].as_i64().unwrap();
    assert!((363..=365).contains(&days), "{days}");
    assert_eq!(j["details"]["names"], serde_json::json!(["mx.test"]));
    assert_eq!(j["details"]["chain_length"], 2);
    assert!(
        j["details"]["subject"]
            .as_str()
            .unwrap()
            .contains("mx.test")
    );
    assert!(j["phases"]["starttls"].is_number() && j["phases"]["tls"].is_number());
}

#[tokio::test]
async fn expired_certificate_fails_expired() {
    let f = Fixture::new();
    let server = f.starttls(&f.ca, &["mx.test"], Validity::EXPIRED).await;
    let run = f.probe(&server, &["--tls-name", "mx.test"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(status_class(&run), ("fail".into(), "expired".into()));
}

#[tokio::test]
async fn expiring_certificate_warns_then_fails() {
    let f = Fixture::new();
    let server = f
        .starttls(&f.ca, &["mx.test"], Validity::expiring_in(20))
        .await;
    let run = f.probe(&server, &["--tls-name", "mx.test"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(status_class(&run), ("warn".into(), "expiring".into()));

    let server = f
        .starttls(&f.ca, &["mx.test"], Validity::expiring_in(3))
        .await;
    let run = f.probe(&server, &["--tls-name", "mx.test"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(status_class(&run), ("fail".into(), "expiring".into()));

    // Thresholds are the operator's: a year-long certificate warns at 400 days.
    let server = f.starttls(&f.ca, &["mx.test"], Validity::GOOD).await;
    let run = f
        .probe(
            &server,
            &[
                "--tls-name",
                "mx.test",
                "--warn-days",
                "400",
                "--crit-days",
                "10",
            ],
        )
        .await;
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test]
async fn wrong_name_fails_tls() {
    let f = Fixture::new();
    let server = f.starttls(&f.ca, &["other.test"], Validity::GOOD).await;
    let run = f.probe(&server, &["--tls-name", "mx.test"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(status_class(&run), ("fail".into(), "tls".into()));
    assert!(
        run.json()["message"]
            .as_str()
            .unwrap()
            .contains("does not match mx.test")
    );

    // An IP target without --tls-name is checked against the IP itself.
    let run = f.probe(&server, &[]).await;
    assert_eq!(status_class(&run), ("fail".into(), "tls".into()));
}

#[tokio::test]
async fn ip_address_certificates_match_ip_targets() {
    let f = Fixture::new();
    let server = f.starttls(&f.ca, &["127.0.0.1"], Validity::GOOD).await;
    let run = f.probe(&server, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test]
async fn untrusted_chain_fails_tls() {
    let f = Fixture::new();
    let rogue = TestCa::new("rogue CA").unwrap();
    let server = f.starttls(&rogue, &["mx.test"], Validity::GOOD).await;
    let run = f.probe(&server, &["--tls-name", "mx.test"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(status_class(&run), ("fail".into(), "tls".into()));
    assert!(
        run.json()["message"]
            .as_str()
            .unwrap()
            .contains("not trusted")
    );
}

#[tokio::test]
async fn implicit_tls_endpoint_and_missing_starttls() {
    let f = Fixture::new();
    let tls =
        f.ca.issue(&["mx.test"], Validity::GOOD)
            .unwrap()
            .server_config()
            .unwrap();
    let server = SmtpServer::start(SmtpScript::with_implicit_tls(tls))
        .await
        .unwrap();
    let port = server.addr.port().to_string();
    let ca_file = f.ca_file();
    let run = probe(&[
        "tls",
        "127.0.0.1",
        "--port",
        &port,
        "--tls-name",
        "mx.test",
        "--ca-file",
        &ca_file,
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.json()["phases"]["starttls"].is_null(),
        "auto mode on a non-SMTP port speaks TLS first"
    );

    let plain = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let run = f.probe(&plain, &["--tls-name", "mx.test"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(status_class(&run), ("fail".into(), "tls".into()));
}

#[tokio::test]
async fn unreadable_ca_file_is_an_error_not_a_target_failure() {
    let f = Fixture::new();
    let server = f.starttls(&f.ca, &["mx.test"], Validity::GOOD).await;
    let port = server.addr.port().to_string();
    let run = probe(&[
        "tls",
        "127.0.0.1",
        "--port",
        &port,
        "--tls",
        "starttls",
        "--ca-file",
        "/nonexistent/ca.pem",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.json()["status"], "error");
}

/// Two STARTTLS servers for the same name sharing a TLS session cache, as
/// the nodes of one mail cluster (or one server after a certificate
/// renewal) do: a client that resumed sessions would report the first
/// server's certificate for the second.
#[tokio::test]
async fn every_probe_sees_the_certificate_presented_now_never_a_resumed_session() {
    use std::sync::Arc;
    use vantage_agent::check::CheckSpec;
    use vantage_agent::context::ProbeContext;
    use vantage_common::spec::smtp::TlsMode;
    use vantage_common::spec::tls::TlsCheck;

    let f = Fixture::new();
    let first =
        f.ca.issue(&["mx.test"], Validity::GOOD)
            .unwrap()
            .server_config()
            .unwrap();
    let mut renewed = (*f
        .ca
        .issue(&["mx.test"], Validity::expiring_in(100))
        .unwrap()
        .server_config()
        .unwrap())
    .clone();
    renewed.session_storage = first.session_storage.clone();
    renewed.ticketer = first.ticketer.clone();
    let a = SmtpServer::start(SmtpScript::with_starttls(first))
        .await
        .unwrap();
    let b = SmtpServer::start(SmtpScript::with_starttls(Arc::new(renewed)))
        .await
        .unwrap();
    // One process, one context: what an agent keeps between probes.
    let ctx = ProbeContext::new(None, None, None);
    let days_left = |server: &SmtpServer| {
        let mut check = TlsCheck::new("127.0.0.1", server.addr.port());
        check.tls = TlsMode::Starttls;
        check.tls_name = Some("mx.test".into());
        check.ca_file = Some(f.ca_file().into());
        CheckSpec::Tls(check)
    };
    for (server, days) in [(&a, 364..=365), (&b, 99..=100), (&a, 364..=365)] {
        let outcome = vantage_agent::check::run(&days_left(server), &ctx).await;
        let left = outcome.details["days_left"].as_i64().unwrap_or(-1);
        assert!(days.contains(&left), "{left} days left: {outcome:?}");
    }
}
