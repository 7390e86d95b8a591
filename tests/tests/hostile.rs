//! Hostile servers: every misbehaviour ends within the deadline as `fail`
//! (`protocol` or `timeout`), never panics the agent, and keeps its memory
//! bounded (replies are read at most 512 octets a line, 64 KiB a reply).

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vantage_tests::agent::{Run, probe_measured};
use vantage_tests::certs::server_tls;
use vantage_tests::smtp::{Fault, SmtpScript, SmtpServer};

/// Runs an smtp probe with a 3 s deadline against `script`; returns the run,
/// its class, duration and peak RSS.
async fn against(script: SmtpScript, extra: &[&str]) -> (Run, String, u64, u64) {
    let server = SmtpServer::start(script).await.unwrap();
    let port = server.addr.port().to_string();
    let mut args = vec![
        "smtp",
        "127.0.0.1",
        "--port",
        &port,
        "--timeout",
        "3s",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let (run, rss) = probe_measured(&args).await;
    let j = run.json();
    assert_eq!(j["status"], "fail", "{run:?}");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    let class = j["class"].as_str().unwrap_or_default().to_owned();
    let took = j["duration_ms"].as_u64().unwrap();
    assert!(took <= 3_500, "deadline overrun: {took} ms");
    (run, class, took, rss)
}

/// Peak RSS of a normal probe, the yardstick for the hostile ones.
async fn baseline_rss() -> u64 {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let port = server.addr.port().to_string();
    let (run, rss) = probe_measured(&["smtp", "127.0.0.1", "--port", &port, "-o", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    rss
}

/// Hostile input may not grow the probe by more than a few MiB (a 10 MB
/// banner read whole would add at least 10 MiB).
fn assert_bounded(name: &str, rss: u64, baseline: u64) {
    eprintln!("{name}: peak RSS {rss} KiB (normal probe: {baseline} KiB)");
    assert!(baseline > 0, "no RSS measured");
    assert!(
        rss < baseline + 4 * 1024,
        "{name}: peak RSS {rss} KiB vs {baseline} KiB for a normal probe"
    );
}

#[tokio::test]
async fn endless_line_without_crlf() {
    let base = baseline_rss().await;
    let (_, class, _, rss) = against(SmtpScript::faulty(Fault::EndlessLine), &[]).await;
    assert_eq!(class, "protocol");
    assert_bounded("endless line", rss, base);
}

#[tokio::test]
async fn ten_megabyte_banner() {
    let base = baseline_rss().await;
    let (run, class, _, rss) =
        against(SmtpScript::faulty(Fault::HugeBanner(10 * 1024 * 1024)), &[]).await;
    assert_eq!(class, "protocol");
    assert!(
        run.json()["message"].as_str().unwrap().contains("512"),
        "{run:?}"
    );
    assert_bounded("10 MB banner", rss, base);
}

#[tokio::test]
async fn one_byte_per_second_hits_the_deadline() {
    let (run, class, took, _) =
        against(SmtpScript::faulty(Fault::Drip(Duration::from_secs(1))), &[]).await;
    assert_eq!(class, "timeout");
    assert!(took >= 2_900, "{took}");
    assert!(
        run.json()["message"].as_str().unwrap().contains("banner"),
        "{run:?}"
    );
}

#[tokio::test]
async fn silent_server_times_out() {
    let (_, class, _, _) = against(SmtpScript::faulty(Fault::Silent), &[]).await;
    assert_eq!(class, "timeout");
}

#[tokio::test]
async fn garbage_instead_of_tls_handshake() {
    let tls = server_tls(&["mx.test"]).unwrap();
    let implicit = SmtpScript {
        fault: Some(Fault::GarbageInsteadOfTls),
        ..SmtpScript::with_implicit_tls(tls.clone())
    };
    let (_, class, _, _) = against(implicit, &["--tls", "implicit"]).await;
    assert_eq!(class, "protocol");
    let starttls = SmtpScript {
        fault: Some(Fault::GarbageInsteadOfTls),
        ..SmtpScript::with_starttls(tls)
    };
    let (_, class, _, _) = against(starttls, &["--tls", "starttls"]).await;
    assert_eq!(class, "protocol");
}

#[tokio::test]
async fn close_mid_reply_and_on_connect() {
    let (run, class, _, _) = against(SmtpScript::faulty(Fault::CloseMidReply), &[]).await;
    assert_eq!(class, "protocol");
    assert!(
        run.json()["message"].as_str().unwrap().contains("closed"),
        "{run:?}"
    );
    let (_, class, _, _) = against(SmtpScript::faulty(Fault::CloseOnConnect), &[]).await;
    assert_eq!(class, "protocol");
}

#[tokio::test]
async fn thousand_continuation_lines() {
    let base = baseline_rss().await;
    let (run, class, _, rss) =
        against(SmtpScript::faulty(Fault::ContinuationLines(1000)), &[]).await;
    assert_eq!(class, "protocol");
    assert!(
        run.json()["message"]
            .as_str()
            .unwrap()
            .contains("more than 100 lines"),
        "{run:?}"
    );
    assert_bounded("1000 continuation lines", rss, base);
}

#[tokio::test]
async fn plaintext_injected_after_starttls_is_refused() {
    let tls = server_tls(&["mx.test"]).unwrap();
    let script = SmtpScript {
        fault: Some(Fault::InjectAfterStarttls),
        ..SmtpScript::with_starttls(tls)
    };
    let (run, class, _, _) = against(script, &[]).await;
    assert_eq!(class, "protocol");
    assert!(
        run.json()["message"]
            .as_str()
            .unwrap()
            .contains("injection"),
        "{run:?}"
    );
}
