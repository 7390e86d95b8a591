//! `vantage-agent probe smtp` with the acceptance step (`--rcpt`) and
//! login (`--username`) against the scripted SMTP server.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::sync::Arc;
use vantage_tests::agent::{Run, probe, probe_env};

use vantage_tests::certs::{CaFile, Validity, server_tls};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

const PASSWORD: &str = "s3cret-Pw-for-vantage";

fn status_class(j: &Value) -> (&str, &str) {
    (
        j["status"].as_str().unwrap_or_default(),
        j["class"].as_str().unwrap_or_default(),
    )
}

/// Runs `probe smtp 127.0.0.1 --port <server> <args> -o json`.
async fn smtp(server: &SmtpServer, args: &[&str]) -> Run {
    let port = server.addr.port().to_string();
    let mut all = vec!["smtp", "127.0.0.1", "--port", &port];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    probe(&all).await
}

/// A CA written to a file for `--ca-file`, and a server configuration for
/// `mx.test` it issued.
fn trusted_tls() -> (CaFile, Arc<rustls::ServerConfig>) {
    let ca = CaFile::new("vantage acceptance CA").unwrap();
    let tls = ca
        .issue(&["mx.test"], Validity::GOOD)
        .unwrap()
        .server_config()
        .unwrap();
    (ca, tls)
}

fn no_data(server: &SmtpServer) {
    let commands = server.commands();
    assert!(
        !commands.iter().any(|c| c.eq_ignore_ascii_case("DATA")),
        "DATA was sent: {commands:?}"
    );
}

#[tokio::test]
async fn each_recipient_is_tried_and_judged_by_its_reply_never_with_data() {
    let script = SmtpScript {
        rcpt_replies: vec![
            (
                "greylisted@x.test".into(),
                "450 4.2.0 <greylisted@x.test>: Recipient address rejected: Greylisted".into(),
            ),
            (
                "gone@x.test".into(),
                "550 5.1.1 <gone@x.test>: Recipient address rejected: User unknown".into(),
            ),
            (
                "moved@x.test".into(),
                "251 2.1.5 User not local; will forward".into(),
            ),
        ],
        ..SmtpScript::default()
    };
    let server = SmtpServer::start(script).await.unwrap();

    // Accepted (250, 251): pass, every reply recorded, the null sender.
    let run = smtp(
        &server,
        &[
            "--tls",
            "none",
            "--rcpt",
            "ok@x.test",
            "--rcpt",
            "moved@x.test",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("2 recipient(s) accepted"),
        "{j}"
    );
    assert_eq!(j["details"]["rcpt"][0]["address"], "ok@x.test");
    assert_eq!(j["details"]["rcpt"][0]["code"], 250);
    assert_eq!(j["details"]["rcpt"][0]["enhanced"], "2.1.5");
    assert_eq!(j["details"]["rcpt"][1]["code"], 251);
    assert_eq!(j["details"]["mail_from"]["code"], 250);
    for phase in ["mail_from", "rcpt", "rset", "quit"] {
        assert!(j["phases"][phase].is_number(), "missing phase {phase}: {j}");
    }
    let commands = server.commands();
    let envelope: Vec<&str> = commands
        .iter()
        .map(String::as_str)
        .filter(|c| !c.starts_with("EHLO"))
        .collect();
    assert_eq!(
        envelope,
        [
            "MAIL FROM:<>",
            "RCPT TO:<ok@x.test>",
            "RCPT TO:<moved@x.test>",
            "RSET",
            "QUIT"
        ]
    );

    // Deferred (4xx): a warning, class policy, the reply quoted.
    let run = smtp(
        &server,
        &[
            "--tls",
            "none",
            "--mail-from",
            "probe@vantage.test",
            "--rcpt",
            "ok@x.test",
            "--rcpt",
            "greylisted@x.test",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("warn", "policy"), "{j}");
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains("RCPT TO:<greylisted@x.test>") && message.contains("450 4.2.0"),
        "{message}"
    );
    assert_eq!(j["details"]["rcpt"][1]["enhanced"], "4.2.0");
    assert!(
        server
            .commands()
            .contains(&"MAIL FROM:<probe@vantage.test>".to_owned())
    );

    // Refused (5xx) beats deferred: a failure quoting the refusal.
    let run = smtp(
        &server,
        &[
            "--tls",
            "none",
            "--rcpt",
            "greylisted@x.test",
            "--rcpt",
            "gone@x.test",
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("fail", "policy"), "{j}");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("550 5.1.1 <gone@x.test>: Recipient address rejected: User unknown"),
        "{j}"
    );
    assert_eq!(j["details"]["rcpt"].as_array().map(Vec::len), Some(2));
    no_data(&server);

    // An address that could smuggle a command never reaches the server.
    let before = server.commands().len();
    let run = smtp(
        &server,
        &["--tls", "none", "--rcpt", "a@x.test> NOTIFY=NEVER"],
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("--rcpt"), "{run:?}");
    assert_eq!(server.commands().len(), before);
}

#[tokio::test]
async fn login_takes_the_strongest_mechanism_and_a_wrong_password_fails_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let right = dir.path().join("right");
    let wrong = dir.path().join("wrong");
    std::fs::write(&right, format!("{PASSWORD}\n")).unwrap();
    std::fs::write(&wrong, "not-the-password").unwrap();
    let (right, wrong) = (right.to_str().unwrap(), wrong.to_str().unwrap());
    let (ca, tls) = trusted_tls();
    let script = |mechanisms: &str| SmtpScript {
        credentials: Some(("probe@x.test".into(), PASSWORD.into())),
        extensions: vec!["PIPELINING".into(), format!("AUTH {mechanisms}")],
        ..SmtpScript::with_starttls(tls.clone())
    };
    let login = [
        "--tls-name",
        "mx.test",
        "--ca-file",
        ca.path(),
        "--username",
        "probe@x.test",
    ];

    let server = SmtpServer::start(script("LOGIN PLAIN CRAM-MD5"))
        .await
        .unwrap();
    let run = smtp(&server, &[&login[..], &["--password-file", right]].concat()).await;
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert_eq!(
        j["details"]["auth"],
        serde_json::json!(["LOGIN", "PLAIN", "CRAM-MD5"])
    );
    assert_eq!(j["details"]["auth_mechanism"], "PLAIN");
    assert_eq!(
        j["details"]["auth_reply"],
        "235 2.7.0 Authentication successful"
    );
    assert!(j["phases"]["auth"].is_number(), "{j}");
    assert!(
        j["message"].as_str().unwrap().contains("logged in (PLAIN)"),
        "{j}"
    );

    let run = smtp(&server, &[&login[..], &["--password-file", wrong]].concat()).await;
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("fail", "auth"), "{j}");
    assert!(j["message"].as_str().unwrap().contains("535 5.7.8"), "{j}");

    // LOGIN when it is all the server has; the password from the environment.
    let server = SmtpServer::start(script("LOGIN")).await.unwrap();
    let port = server.addr.port().to_string();
    let run = probe_env(
        &[("VANTAGE_TEST_SMTP_PASSWORD", PASSWORD)],
        &[
            "smtp",
            "127.0.0.1",
            "--port",
            &port,
            "--tls-name",
            "mx.test",
            "--ca-file",
            ca.path(),
            "--username",
            "probe@x.test",
            "--password-env",
            "VANTAGE_TEST_SMTP_PASSWORD",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["details"]["auth_mechanism"], "LOGIN");
    // Nothing the agent printed carries the password.
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));

    // A variable that is not set: this vantage cannot tell (error), and says which.
    let run = smtp(
        &server,
        &[&login[..], &["--password-env", "VANTAGE_TEST_SURELY_UNSET"]].concat(),
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("error", "auth"), "{j}");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("VANTAGE_TEST_SURELY_UNSET"),
        "{j}"
    );

    // Offered mechanisms the agent does not speak.
    let server = SmtpServer::start(script("CRAM-MD5 XOAUTH2")).await.unwrap();
    let run = smtp(&server, &[&login[..], &["--password-file", right]].concat()).await;
    let j = run.json();
    assert_eq!(status_class(&j), ("fail", "auth"), "{j}");
    assert!(
        j["message"].as_str().unwrap().contains("CRAM-MD5 XOAUTH2"),
        "{j}"
    );
}

#[tokio::test]
async fn credentials_are_never_sent_without_tls_or_where_auth_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, PASSWORD).unwrap();
    let file = file.to_str().unwrap();
    let login = ["--username", "probe@x.test", "--password-file", file];

    // Port 25 style, no STARTTLS offered: refused before any AUTH.
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let run = smtp(&server, &login).await;
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("fail", "auth"), "{j}");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("never sent in clear"),
        "{j}"
    );
    assert!(!server.commands().iter().any(|c| c.starts_with("AUTH")));

    // --tls none with a login is refused outright.
    let run = smtp(&server, &[&login[..], &["--tls", "none"]].concat()).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("--username"), "{run:?}");
    assert!(!server.commands().iter().any(|c| c.starts_with("AUTH")));

    // TLS up, but with a certificate nothing trusts: not sent either.
    let script = SmtpScript::with_starttls(server_tls(&["mx.test"]).unwrap());
    let server = SmtpServer::start(script).await.unwrap();
    let run = smtp(&server, &[&login[..], &["--tls-name", "mx.test"]].concat()).await;
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("fail", "tls"), "{j}");
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains("not trusted") && message.contains("credentials not sent"),
        "{message}"
    );
    assert!(!server.commands().iter().any(|c| c.starts_with("AUTH")));

    // TLS up but no AUTH offered after it.
    let (ca, tls) = trusted_tls();
    let script = SmtpScript {
        extensions: vec!["PIPELINING".into()],
        ..SmtpScript::with_starttls(tls)
    };
    let server = SmtpServer::start(script).await.unwrap();
    let trusted = ["--tls-name", "mx.test", "--ca-file", ca.path()];
    let run = smtp(&server, &[&login[..], &trusted].concat()).await;
    assert_eq!(run.code, 2, "{run:?}");
    let j = run.json();
    assert_eq!(status_class(&j), ("fail", "auth"), "{j}");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("not offered after TLS"),
        "{j}"
    );
}
