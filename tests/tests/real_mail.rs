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

/// `probe delivery TO <submit args> --imap imaps...`, the submission
/// password in `VANTAGE_TEST_MAIL_PASSWORD`, IMAP's as given.
async fn delivery(
    servers: &MailServers,
    to: &str,
    imap_password: &str,
    submit: &[&str],
    timeout: &str,
) -> Run {
    let imap = servers.imaps.to_string();
    let ca = servers.ca_file.display().to_string();
    let mut all = vec!["delivery", to];
    all.extend_from_slice(submit);
    all.extend_from_slice(&[
        "--tls-name",
        HOSTNAME,
        "--imap",
        &imap,
        "--imap-tls-name",
        HOSTNAME,
        "--imap-username",
        USER,
        "--imap-password-env",
        "VANTAGE_TEST_IMAP_PASSWORD",
        "--ca-file",
        &ca,
        "--timeout",
        timeout,
        "-o",
        "json",
    ]);
    probe_env(
        &[
            ("VANTAGE_TEST_MAIL_PASSWORD", PASSWORD),
            ("VANTAGE_TEST_IMAP_PASSWORD", imap_password),
        ],
        &all,
    )
    .await
}

#[tokio::test]
async fn a_submitted_message_arrives_in_dovecot_and_the_mailbox_is_left_clean() {
    let Some(mut servers) = MailServers::start().unwrap() else {
        return;
    };
    let submission = servers.submission.to_string();
    let submit = [
        "--submit",
        &submission,
        "--username",
        USER,
        "--password-env",
        "VANTAGE_TEST_MAIL_PASSWORD",
    ];
    // Someone else's message, probe-marked too: it must stay.
    servers
        .deliver_raw(
            "foreign",
            "From: <a@b.test>\r\nX-Vantage-Probe: vantage-0000000000000000.cafe\r\n\
             Subject: not ours\r\n\r\nhello\r\n",
        )
        .unwrap();
    let only_foreign_left = |servers: &MailServers| {
        let left = servers.delivered();
        assert!(
            left.len() == 1
                && left[0]
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("foreign")),
            "{left:?}"
        );
    };

    let imap_tls = ["--imap-tls", "implicit"];
    let submit = [&submit[..], &imap_tls].concat();
    let run = delivery(&servers, ADDRESS, PASSWORD, &submit, "60s").await;
    assert_eq!(run.code, 0, "{run:?}\n{}", servers.postfix_log());
    let j = run.json();
    let details = &j["details"];
    assert!(details["arrival_ms"].as_u64().is_some(), "{j}");
    assert!(details["submit_ms"].as_u64().is_some(), "{j}");
    assert_eq!(details["deleted"], 1, "{j}");
    assert_eq!(details["auth_mechanism"], "SCRAM-SHA-256", "{j}");
    let received = details["received"].as_array().unwrap();
    assert!(
        received
            .iter()
            .any(|r| r.as_str().unwrap().contains("ESMTPSA")),
        "{j}"
    );
    assert!(
        j["message"].as_str().unwrap().starts_with("arrived in"),
        "{j}"
    );
    for phase in ["auth", "data", "message", "wait", "fetch", "cleanup"] {
        assert!(j["phases"][phase].is_number(), "missing phase {phase}: {j}");
    }
    only_foreign_left(&servers);
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));

    // A wrong IMAP password: the mailbox cannot be watched, class auth.
    let run = delivery(&servers, ADDRESS, "wrong-password", &submit, "60s").await;
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("fail", "auth"), "{j}");
    assert!(j["message"].as_str().unwrap().contains("login"), "{j}");

    // A recipient Postfix defers: a warning, nothing sent.
    let run = delivery(&servers, DEFERRED, PASSWORD, &submit, "60s").await;
    assert_eq!(run.code, 1, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("warn", "policy"), "{j}");
    assert!(j["message"].as_str().unwrap().contains("450 4.2.0"), "{j}");

    // Dovecot stopped: the message goes in through port 25 (no login),
    // but nobody can see it arrive: a timeout at the deadline, naming
    // the IMAP trouble.
    servers.stop_dovecot();
    let smtp = servers.smtp.to_string();
    let started = std::time::Instant::now();
    let run = delivery(
        &servers,
        ADDRESS,
        PASSWORD,
        &["--submit", &smtp, "--imap-tls", "implicit"],
        "6s",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("fail", "timeout"), "{j}");
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains("not in INBOX") && message.contains("IMAP"),
        "{message}"
    );
    assert!(took >= std::time::Duration::from_secs(5), "{took:?}: {j}");
}
