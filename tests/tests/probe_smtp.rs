//! `vantage-agent probe smtp` against the scripted SMTP server.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vantage_tests::agent::probe;
use vantage_tests::certs::server_tls;
use vantage_tests::dns::DnsServer;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn port(s: &SmtpServer) -> String {
    s.addr.port().to_string()
}

#[tokio::test]
async fn plain_dialogue_passes_with_extensions_and_phases() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let run = probe(&[
        "smtp",
        "127.0.0.1",
        "--port",
        &port(&server),
        "--tls",
        "none",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert_eq!(j["kind"], "smtp");
    assert_eq!(j["status"], "pass");
    assert!(j["class"].is_null());
    assert_eq!(j["details"]["banner"], "220 mx.test ESMTP vantage-testkit");
    let exts: Vec<&str> = j["details"]["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(exts.contains(&"SIZE 10240000"), "{exts:?}");
    assert_eq!(j["details"]["auth"], serde_json::json!(["PLAIN", "LOGIN"]));
    assert_eq!(j["details"]["size"], 10240000);
    for phase in ["connect", "banner", "ehlo", "quit"] {
        assert!(j["phases"][phase].is_number(), "missing phase {phase}: {j}");
    }
    assert!(server.commands().iter().any(|c| c == "QUIT"));
}

#[tokio::test]
async fn opportunistic_starttls_upgrades_and_says_ehlo_again() {
    let tls = server_tls(&["mx.test"]).unwrap();
    let server = SmtpServer::start(SmtpScript::with_starttls(tls))
        .await
        .unwrap();
    let run = probe(&["smtp", "127.0.0.1", "--port", &port(&server), "-o", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert_eq!(j["details"]["starttls"], true);
    assert_eq!(j["details"]["tls_version"], "TLSv1_3");
    assert!(
        j["phases"]["starttls"].is_number() && j["phases"]["ehlo_tls"].is_number(),
        "{j}"
    );
    let ehlos = server
        .commands()
        .iter()
        .filter(|c| c.starts_with("EHLO"))
        .count();
    // Before and after STARTTLS, and once more on the connection of the
    // legacy-TLS test (which TLS 1.3-only rustls refuses).
    assert_eq!(ehlos, 3);
    assert_eq!(j["details"]["legacy_tls"], "refused");
}

#[tokio::test]
async fn starttls_required_but_missing_or_refused_is_policy_failure() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let run = probe(&[
        "smtp",
        "127.0.0.1",
        "--port",
        &port(&server),
        "--tls",
        "starttls",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(
        (j["status"].as_str(), j["class"].as_str()),
        (Some("fail"), Some("policy")),
        "{j}"
    );
    assert!(j["message"].as_str().unwrap().contains("not offered"));

    let tls = server_tls(&["mx.test"]).unwrap();
    let script = SmtpScript {
        starttls_reply: "454 4.7.0 TLS not available".into(),
        ..SmtpScript::with_starttls(tls)
    };
    let server = SmtpServer::start(script).await.unwrap();
    let run = probe(&[
        "smtp",
        "127.0.0.1",
        "--port",
        &port(&server),
        "--tls",
        "starttls",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(j["class"], "policy");
    assert!(j["message"].as_str().unwrap().contains("454"), "{j}");

    // The same refusal on an opportunistic port is a warning, not an outage.
    let run = probe(&["smtp", "127.0.0.1", "--port", &port(&server), "-o", "json"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.json()["status"], "warn");
}

#[tokio::test]
async fn implicit_tls_passes() {
    let tls = server_tls(&["mx.test"]).unwrap();
    let server = SmtpServer::start(SmtpScript::with_implicit_tls(tls))
        .await
        .unwrap();
    let run = probe(&[
        "smtp",
        "127.0.0.1",
        "--port",
        &port(&server),
        "--tls",
        "implicit",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert!(j["phases"]["tls"].is_number());
    assert_eq!(j["details"]["tls_version"], "TLSv1_3");
}

#[tokio::test]
async fn refused_connection_fails_with_class_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = listener.local_addr().unwrap().port().to_string();
    drop(listener);
    let run = probe(&["smtp", "127.0.0.1", "--port", &free, "-o", "json"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.json()["class"], "refused");
}

#[tokio::test]
async fn bad_banner_and_rejected_ehlo_are_protocol_failures() {
    let server = SmtpServer::start(SmtpScript {
        banner: "554 5.3.2 no service".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let run = probe(&["smtp", "127.0.0.1", "--port", &port(&server), "-o", "json"]).await;
    assert_eq!(run.code, 2);
    let j = run.json();
    assert_eq!(j["class"], "protocol");
    assert!(j["message"].as_str().unwrap().contains("554"), "{j}");

    let server = SmtpServer::start(SmtpScript {
        ehlo_reply: Some("550 5.7.1 go away".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let run = probe(&["smtp", "127.0.0.1", "--port", &port(&server), "-o", "json"]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.json()["message"]
            .as_str()
            .unwrap()
            .contains("EHLO rejected")
    );
}

#[tokio::test]
async fn slow_server_is_a_warning() {
    let script = SmtpScript {
        banner_delay: Duration::from_millis(300),
        ..Default::default()
    };
    let server = SmtpServer::start(script).await.unwrap();
    let run = probe(&[
        "smtp",
        "127.0.0.1",
        "--port",
        &port(&server),
        "--degraded-ms",
        "100",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    let j = run.json();
    assert_eq!(j["status"], "warn");
    assert!(j["message"].as_str().unwrap().starts_with("slow"), "{j}");
}

#[tokio::test]
async fn source_address_binds_the_connection() {
    let server = SmtpServer::start_on("0.0.0.0:0".parse().unwrap(), SmtpScript::default())
        .await
        .unwrap();
    let run = probe(&[
        "smtp",
        "127.0.0.1",
        "--port",
        &port(&server),
        "--source-address",
        "127.0.0.2",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(server.peers()[0].ip().to_string(), "127.0.0.2");

    // An address this host does not have: the vantage cannot probe (error), the target is not blamed.
    let run = probe(&[
        "smtp",
        "127.0.0.1",
        "--port",
        &port(&server),
        "--source-address",
        "192.0.2.1",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.json()["status"], "error");
}

#[tokio::test]
async fn host_names_resolve_through_the_given_resolver() {
    let dns = DnsServer::start(&[r#"
$ORIGIN example.test.
@    3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300
@         IN NS  ns
ns        IN A   127.0.0.1
mail      IN A   127.0.0.1
"#])
    .await
    .unwrap();
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let resolver = dns.addr.to_string();
    let run = probe(&[
        "smtp",
        "mail.example.test",
        "--port",
        &port(&server),
        "--resolver",
        &resolver,
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert_eq!(j["details"]["address"], "127.0.0.1");
    assert!(j["phases"]["resolve"].is_number());

    let run = probe(&[
        "smtp",
        "nope.example.test",
        "--port",
        &port(&server),
        "--resolver",
        &resolver,
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.json()["class"], "dns");
}
