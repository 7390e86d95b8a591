//! Mail-flow checks (smtp with login and recipients, delivery) declared in
//! `checks.toml` and run by an agent of a real cluster, like any check —
//! and no password leaves the agent: not in an outcome, a log line (at
//! debug level), a metric, a trace, the replicated state or the spool.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use base64::Engine;
use vantage_proto::v1::GetResultsRequest;
use vantage_tests::certs::{CaFile, Validity};
use vantage_tests::cluster::{Cluster, Timers, wait_for};
use vantage_tests::imap::{ImapScript, ImapServer};
use vantage_tests::otlp::Collector;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

const SUBMIT_PASSWORD: &str = "submit-s3cret-7f3a9c";
const IMAP_PASSWORD: &str = "imap-s3cret-0d81e2";

/// The latest (status, class, message) of `check` in region `eu`.
async fn latest(cluster: &Cluster, check: &str) -> Option<(String, String, String)> {
    let reply = cluster
        .operator(1)
        .ok()?
        .get_results(GetResultsRequest {
            check: check.into(),
            region: String::new(),
            recent: 0,
        })
        .await
        .ok()?
        .into_inner();
    let r = reply.latest.into_iter().find(|r| r.region == "eu")?;
    Some((r.status, r.class, r.message))
}

/// Every file under `dir`, as bytes.
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
}

#[tokio::test]
async fn mail_flow_checks_run_in_the_agent_and_no_password_leaves_it() {
    let collector = Collector::start().await.unwrap();
    let ca = CaFile::new("vantage mail-flow CA").unwrap();
    let tls = ca
        .issue(&["mx.test"], Validity::GOOD)
        .unwrap()
        .server_config()
        .unwrap();
    let smtp = SmtpServer::start(SmtpScript {
        credentials: Some(("probe@x.test".into(), SUBMIT_PASSWORD.into())),
        rcpt_replies: vec![(
            "gone@x.test".into(),
            "550 5.1.1 <gone@x.test>: Recipient address rejected".into(),
        )],
        ..SmtpScript::with_starttls(tls.clone())
    })
    .await
    .unwrap();
    let imap = ImapServer::start(
        ImapScript {
            tls,
            credentials: ("probe".into(), IMAP_PASSWORD.into()),
            idle: true,
            fault: None,
        },
        smtp.seen.clone(),
    )
    .await
    .unwrap();
    let mut cluster = Cluster::new(Timers::default())
        .unwrap()
        .with_env("VANTAGE_TEST_SUBMIT_PW", SUBMIT_PASSWORD)
        .with_env("VANTAGE_TEST_IMAP_PW", IMAP_PASSWORD)
        .with_env("RUST_LOG", "debug")
        .with_env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())
        .started(3)
        .await
        .unwrap();
    let (port, ca_file) = (smtp.addr.port(), ca.path());
    let imap_addr = imap.addr;
    cluster
        .apply(&format!(
            r#"
[[check]]
name = "submission"
kind = "smtp"
target = "127.0.0.1"
interval = "5s"
regions = ["eu"]
params = {{ port = {port}, tls_name = "mx.test", ca_file = "{ca_file}", username = "probe@x.test", password_env = "VANTAGE_TEST_SUBMIT_PW", rcpt = ["probe@x.test", "gone@x.test"] }}

[[check]]
name = "mail-flows"
kind = "delivery"
target = "probe@x.test"
interval = "5s"
timeout = "5s"
regions = ["eu"]
params = {{ submit = "127.0.0.1:{port}", submit_tls_name = "mx.test", username = "probe@x.test", password_env = "VANTAGE_TEST_SUBMIT_PW", imap = "{imap_addr}", imap_tls = "implicit", imap_tls_name = "mx.test", imap_username = "probe", imap_password_env = "VANTAGE_TEST_IMAP_PW", ca_file = "{ca_file}" }}
"#
        ))
        .await
        .unwrap();
    cluster
        .spawn_agent("eu-1", "eu", "127.0.0.12", &[])
        .await
        .unwrap();

    // The login works and the refused recipient fails the check, quoted.
    let submission = wait_for("the submission check's refusal", || async {
        latest(&cluster, "submission")
            .await
            .filter(|(status, _, _)| status == "fail")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.agent_log("eu-1")));
    assert_eq!(submission.1, "policy", "{submission:?}");
    assert!(
        submission.2.contains("550 5.1.1 <gone@x.test>"),
        "{submission:?}"
    );
    // The round trip passes from the region, and again (mailbox kept clean).
    wait_for("two delivery round trips", || async {
        let passed = latest(&cluster, "mail-flows")
            .await
            .filter(|(status, _, _)| status == "pass")?;
        (imap.expunged.lock().ok()?.len() >= 2).then_some(passed)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.agent_log("eu-1")));
    assert!(
        smtp.commands().iter().any(|c| c.starts_with("AUTH PLAIN")),
        "{:?}",
        smtp.commands()
    );

    // Wherever anything of these runs went, no password went with it (nor
    // the base64 of a PLAIN login, which is the password in all but name).
    let plain = base64::engine::general_purpose::STANDARD
        .encode(format!("\0probe@x.test\0{SUBMIT_PASSWORD}"));
    let secrets = [SUBMIT_PASSWORD, IMAP_PASSWORD, plain.as_str()];
    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for check in ["submission", "mail-flows"] {
        let (code, out, err) = cluster
            .vantagectl(&[2], &["results", check, "-o", "json"])
            .await;
        assert_eq!(code, 0, "{err}");
        places.push((format!("vantagectl results {check}"), out.into_bytes()));
    }
    places.push(("agent log".into(), cluster.agent_log("eu-1").into_bytes()));
    places.push((
        "spans".into(),
        format!("{:?}", collector.spans()).into_bytes(),
    ));
    for id in cluster.ids() {
        places.push((format!("node {id} log"), cluster.log(id).into_bytes()));
        files(&cluster.node_data(id), &mut places);
        if let Some(http) = cluster.nodes[&id].http {
            let metrics = vantage_coordinator::alert::http_client()
                .unwrap()
                .get(format!("http://{http}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            places.push((format!("node {id} metrics"), metrics.into_bytes()));
        }
    }
    files(&cluster.agent_spool("eu-1"), &mut places);
    let names: Vec<&String> = places.iter().map(|p| &p.0).collect();
    assert!(
        names.iter().filter(|n| n.ends_with("metrics")).count() == 3
            && names
                .iter()
                .any(|n| n.contains("snapshot") || n.contains("raft"))
            && names.iter().any(|n| n.contains("spool")),
        "{names:?}"
    );
    for (place, bytes) in &places {
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a password is in {place}"
            );
        }
    }
    // The references themselves are there: the check is what was declared.
    assert!(
        places
            .iter()
            .any(|(_, b)| b.windows(20).any(|w| w == b"VANTAGE_TEST_IMAP_PW")),
        "the declaration's reference is nowhere"
    );
}
