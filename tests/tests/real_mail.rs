//! `vantage-agent probe smtp` with acceptance and login against a real
//! Postfix and Dovecot (Debian packages, started by each test on loopback
//! with their own directories; skipped, saying why, without the packages
//! or root, unless `VANTAGE_REQUIRE_SERVERS` is set).

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use vantage_tests::agent::{Run, probe_env};
use vantage_tests::mail::{ADDRESS, DEFERRED, HOSTNAME, MailServers, PASSWORD, USER};

fn status_class(j: &Value) -> (&str, &str) {
    (
        j["status"].as_str().unwrap_or_default(),
        j["class"].as_str().unwrap_or_default(),
    )
}

/// `probe smtp 127.0.0.1 --port P --tls-name HOSTNAME --ca-file CA <args> -o json`,
/// the password in `VANTAGE_TEST_MAIL_PASSWORD`.
async fn smtp(servers: &MailServers, port: u16, password: &str, args: &[&str]) -> Run {
    let port = port.to_string();
    let ca = servers.ca_file.display().to_string();
    let mut all = vec![
        "smtp",
        "127.0.0.1",
        "--port",
        &port,
        "--tls-name",
        HOSTNAME,
        "--ca-file",
        &ca,
    ];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    probe_env(&[("VANTAGE_TEST_MAIL_PASSWORD", password)], &all).await
}

#[tokio::test]
async fn postfix_accepts_defers_and_refuses_recipients_and_nothing_is_delivered() {
    let Some(servers) = MailServers::start().unwrap() else {
        return;
    };
    let port = servers.smtp.port();

    let run = smtp(&servers, port, "", &["--rcpt", ADDRESS]).await;
    assert_eq!(run.code, 0, "{run:?}\n{}", servers.postfix_log());
    let j = run.json();
    assert_eq!(j["details"]["starttls"], true, "{j}");
    assert_eq!(j["details"]["rcpt"][0]["code"], 250, "{j}");
    assert_eq!(j["details"]["rcpt"][0]["enhanced"], "2.1.5", "{j}");

    // Postfix's check_recipient_access defers this one: a warning.
    let run = smtp(&servers, port, "", &["--rcpt", ADDRESS, "--rcpt", DEFERRED]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("warn", "policy"), "{j}");
    assert!(j["message"].as_str().unwrap().contains("450 4.2.0"), "{j}");

    // A domain Postfix is no destination for, from an unauthenticated
    // client: relay access denied, a failure quoting Postfix.
    let run = smtp(&servers, port, "", &["--rcpt", "someone@elsewhere.test"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("fail", "policy"), "{j}");
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains("554 5.7.1") && message.contains("Relay access denied"),
        "{message}"
    );

    // Acceptance never sends DATA: nothing reached the mailbox.
    assert!(servers.delivered().is_empty(), "{:?}", servers.delivered());
    assert!(
        !servers.postfix_log().contains("status=sent"),
        "{}",
        servers.postfix_log()
    );
}

#[tokio::test]
async fn submission_login_with_scram_through_dovecot_and_a_wrong_password_fails_auth() {
    let Some(servers) = MailServers::start().unwrap() else {
        return;
    };
    let port = servers.submission.port();
    let login = [
        "--username",
        USER,
        "--password-env",
        "VANTAGE_TEST_MAIL_PASSWORD",
    ];

    // Dovecot offers SCRAM-SHA-256: used, and its signature verified.
    let run = smtp(
        &servers,
        port,
        PASSWORD,
        &[&login[..], &["--rcpt", ADDRESS]].concat(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}\n{}", servers.dovecot_log());
    let j = run.json();
    assert_eq!(j["details"]["auth_mechanism"], "SCRAM-SHA-256", "{j}");
    assert!(
        j["details"]["auth_reply"]
            .as_str()
            .unwrap()
            .starts_with("235"),
        "{j}"
    );
    let offered = j["details"]["auth"].to_string();
    assert!(
        offered.contains("PLAIN") && offered.contains("SCRAM-SHA-1"),
        "{offered}"
    );
    // Logged in, Postfix relays for us: any recipient is accepted.
    let run = smtp(
        &servers,
        port,
        PASSWORD,
        &[&login[..], &["--rcpt", "someone@elsewhere.test"]].concat(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");

    let run = smtp(&servers, port, "wrong-password", &login).await;
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("fail", "auth"), "{j}");
    assert!(j["message"].as_str().unwrap().contains("535 5.7.8"), "{j}");

    // No password in anything the agent printed, nor in the servers' logs.
    for text in [&run.stdout, &run.stderr, &servers.postfix_log()] {
        assert!(!text.contains(PASSWORD) && !text.contains("wrong-password"));
    }
}
