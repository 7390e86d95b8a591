//! `vantage-agent probe delivery` against the testkit SMTP server and the
//! testkit IMAP server reading what it received: the round trip, the
//! message itself, and hostile IMAP servers (bounded memory, no panic,
//! the deadline kept).

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vantage_tests::agent::{Run, probe_measured};
use vantage_tests::certs::{CaFile, Validity};
use vantage_tests::imap::{ImapFault, ImapScript, ImapServer};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

const PASSWORD: &str = "imap-s3cret-for-vantage";

/// A submission server and a mailbox over what it receives, both with
/// certificates for `mx.test` from `ca`.
struct Servers {
    smtp: SmtpServer,
    imap: ImapServer,
    ca: CaFile,
    dir: tempfile::TempDir,
}

async fn servers(fault: Option<ImapFault>, idle: bool) -> Servers {
    let ca = CaFile::new("vantage delivery CA").unwrap();
    let tls = ca
        .issue(&["mx.test"], Validity::GOOD)
        .unwrap()
        .server_config()
        .unwrap();
    let smtp = SmtpServer::start(SmtpScript::with_starttls(tls.clone()))
        .await
        .unwrap();
    let script = ImapScript {
        tls,
        credentials: ("probe".into(), PASSWORD.into()),
        idle,
        fault,
    };
    let imap = ImapServer::start(script, smtp.seen.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), PASSWORD).unwrap();
    Servers {
        smtp,
        imap,
        ca,
        dir,
    }
}

/// `probe delivery probe@x.test` through `s`, measured.
async fn delivery(s: &Servers, timeout: &str) -> (Run, u64) {
    let submit = s.smtp.addr.to_string();
    let imap = s.imap.addr.to_string();
    let pw = s.dir.path().join("pw").display().to_string();
    probe_measured(&[
        "delivery",
        "probe@x.test",
        "--submit",
        &submit,
        "--tls-name",
        "mx.test",
        "--imap",
        &imap,
        "--imap-tls",
        "implicit",
        "--imap-tls-name",
        "mx.test",
        "--imap-username",
        "probe",
        "--imap-password-file",
        &pw,
        "--ca-file",
        s.ca.path(),
        "--timeout",
        timeout,
        "-o",
        "json",
    ])
    .await
}

#[tokio::test]
async fn the_message_is_submitted_found_and_expunged() {
    for idle in [true, false] {
        let s = servers(None, idle).await;
        let (run, _) = delivery(&s, "20s").await;
        assert_eq!(run.code, 0, "idle {idle}: {run:?}");
        let j = run.json();
        let token = j["details"]["token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("vantage-"), "{token}");
        assert_eq!(j["details"]["deleted"], 1, "{j}");
        // What was sent: the token in the header and the subject, small,
        // and gone from the mailbox afterwards.
        let sent = s.smtp.messages();
        assert_eq!(sent.len(), 1);
        let (message, under_tls) = &sent[0];
        assert!(under_tls);
        assert!(
            message.contains(&format!("X-Vantage-Probe: {token}\r\n")),
            "{message}"
        );
        assert!(message.contains(&format!("Subject: vantage delivery probe {token}")));
        assert!(message.len() <= 8 * 1024);
        assert_eq!(s.imap.expunged.lock().unwrap().len(), 1);
        let commands = s.smtp.commands();
        assert!(
            commands.contains(&"RCPT TO:<probe@x.test>".to_owned()),
            "{commands:?}"
        );
    }
}

/// A hostile mailbox: the run fails at its deadline (class timeout, the
/// trouble named), never panics, and stays within a few MiB of a normal
/// run's memory.
async fn hostile(fault: ImapFault, needle: &str) {
    let (normal, baseline) = delivery(&servers(None, true).await, "20s").await;
    assert_eq!(normal.code, 0, "{normal:?}");
    let s = servers(Some(fault.clone()), true).await;
    let started = std::time::Instant::now();
    let (run, rss) = delivery(&s, "4s").await;
    let took = started.elapsed();
    assert_eq!(run.code, 2, "{fault:?}: {run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    let j = run.json();
    assert_eq!(j["class"], "timeout", "{fault:?}: {j}");
    let message = j["message"].as_str().unwrap();
    assert!(message.contains(needle), "{fault:?}: {message}");
    assert!(
        took < Duration::from_secs(8),
        "{fault:?}: deadline overrun {took:?}"
    );
    eprintln!("{fault:?}: peak RSS {rss} KiB (normal run: {baseline} KiB)");
    assert!(
        rss < baseline + 4 * 1024,
        "{fault:?}: peak RSS {rss} KiB vs {baseline} KiB for a normal run"
    );
}

#[tokio::test]
async fn an_endless_literal_is_refused_at_its_announcement() {
    hostile(ImapFault::Literal(100 << 20), "literal of 104857600 octets").await;
}

#[tokio::test]
async fn a_huge_literal_within_a_line_is_refused() {
    hostile(ImapFault::EndlessLine, "longer than 8192 octets").await;
}

#[tokio::test]
async fn a_drip_fed_answer_runs_into_the_deadline() {
    hostile(ImapFault::Drip(Duration::from_millis(300)), "not in INBOX").await;
}
