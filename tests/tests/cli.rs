//! The `vantage-agent probe` contract: arguments, output shape, exit codes.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_tests::agent::probe;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

#[tokio::test]
async fn bad_arguments_exit_3_with_one_line_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["smtpx", "mx.example.org"], "smtpx"),
        (&["smtp", "mx.example.org", "--port", "70000"], "70000"),
        (&["ptr", "300.1.2.3"], "300.1.2.3"),
        (&["ptr", "mx.example.org"], "mx.example.org"),
        (&["mx", "bad..domain"], "bad..domain"),
        (&["smtp", "bad-.example"], "bad-.example"),
        (&["spf", "192.0.2.1"], "192.0.2.1"),
        (&["dns", "example.org", "--type", "SRVX"], "SRVX"),
        (&["smtp", "mx.example.org", "--timeout", "soon"], "soon"),
        (
            &["smtp", "mx.example.org", "--resolver", "dns.google"],
            "dns.google",
        ),
        (
            &["smtp", "mx.example.org", "--source-address", "999.0.0.1"],
            "999.0.0.1",
        ),
        (&["dnsbl", "192.0.2.1", "--zone", "bad zone"], "bad zone"),
        (&["dkim", "example.org"], "--selector"),
        (&["tcp", "127.0.0.1"], "--port"),
        (&["tls", "mx.example.org", "--tls", "none"], "none"),
        (
            &["dmarc", "example.org", "--require-policy", "maybe"],
            "maybe",
        ),
    ];
    for (args, named) in cases {
        let run = probe(args).await;
        assert_eq!(run.code, 3, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        let err = run.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err} does not name {named}");
    }
}

#[tokio::test]
async fn help_and_version_exit_0() {
    let run = probe(&["--help"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for flag in [
        "--resolver",
        "--source-address",
        "--timeout",
        "--tls-name",
        "--ca-file",
        "--expect",
        "--zone",
        "--warn-days",
    ] {
        assert!(run.stdout.contains(flag), "help lacks {flag}");
    }
}

#[tokio::test]
async fn json_output_has_the_contract_fields() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let port = server.addr.port().to_string();
    let run = probe(&["smtp", "127.0.0.1", "--port", &port, "-o", "json"]).await;
    assert_eq!(run.code, 0);
    let j = run.json();
    let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
    for key in [
        "kind",
        "target",
        "status",
        "class",
        "message",
        "duration_ms",
        "phases",
        "details",
    ] {
        assert!(j.get(key).is_some(), "missing {key} in {keys:?}");
    }
    assert_eq!(keys.len(), 8, "unexpected fields: {keys:?}");
    assert_eq!(j["target"], format!("127.0.0.1:{port}"));
    assert_eq!(
        run.stdout.trim().lines().count(),
        1,
        "one JSON object on one line"
    );

    // Text output starts with the Nagios-style status word.
    let run = probe(&["smtp", "127.0.0.1", "--port", &port]).await;
    assert!(
        run.stdout.starts_with("PASS smtp 127.0.0.1:"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn agent_config_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let cases = [
        (
            "coordinators = [\"c1:7400\"]\nspool_dir = \"/tmp/x\"\nconcurency = 3\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            "3: field `concurency`",
        ),
        (
            "coordinators = []\nspool_dir = \"/tmp/x\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            "1: field `coordinators`",
        ),
        (
            "coordinators = [\"c1:7400\"]\nspool_dir = \"/tmp/x\"\nspool_max_mb = -1\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            "3: field `spool_max_mb`",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let output = tokio::process::Command::new(vantage_tests::agent::agent_bin())
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{err}");
        assert!(
            err.contains(&format!("{}:{expected}", path.display())),
            "{err} lacks {expected}"
        );
    }
}
