//! `vantagectl` against a real cluster: apply/checks, cluster status,
//! certificates, and its errors.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_tests::cluster::{Cluster, Timers};

fn example() -> String {
    format!(
        "{}/../deploy/examples/checks.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test]
async fn apply_diff_list_get_and_refusal_of_bad_files() {
    let cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Dry run: the diff, nothing written.
    let (code, out, err) = cluster
        .vantagectl(&[2], &["apply", "-f", &example(), "--dry-run"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("+ check mx1-smtp") && out.contains("dry run"),
        "{out}"
    );
    let (_, out, _) = cluster
        .vantagectl(&[2], &["checks", "list", "-o", "json"])
        .await;
    assert_eq!(out.trim(), "[]");

    // Applied through a follower or the leader alike.
    let (code, out, err) = cluster.vantagectl(&[3], &["apply", "-f", &example()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("10 created, 0 changed, 0 deleted (applied"),
        "{out}"
    );
    let (_, out, _) = cluster
        .vantagectl(&[1], &["checks", "list", "-o", "json"])
        .await;
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 10);
    let (code, out, _) = cluster
        .vantagectl(&[1], &["checks", "get", "mx1-cert", "-o", "json"])
        .await;
    assert_eq!(code, 0);
    let check: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(check["params"]["warn_days"], 21);
    assert_eq!(check["regions"], serde_json::json!(["eu", "us"]));

    // A changed file: one changed, one deleted.
    let text = std::fs::read_to_string(example()).unwrap();
    let changed = text
        .replace("warn_days = 21", "warn_days = 30")
        .replace("name = \"mx1-blocklists\"", "name = \"mx1-rbl\"");
    let path = dir.path().join("checks.toml");
    std::fs::write(&path, &changed).unwrap();
    let (code, out, err) = cluster
        .vantagectl(&[1], &["apply", "-f", path.to_str().unwrap()])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 created, 1 changed, 1 deleted"), "{out}");

    // Bad files: a clear error with file, line and field; nothing written.
    for (bad, needle) in [
        (
            changed.replace("interval = \"1h\"", "interval = \"2s\""),
            "field `check.interval`",
        ),
        (
            changed.replace("kind = \"dmarc\"", "kind = \"dmarcx\""),
            "unknown kind",
        ),
        (
            changed.replace("name = \"mx1-rbl\"", "name = \"mx1-cert\""),
            "duplicate check name",
        ),
        (
            changed.replace("fail_after = 2", "fial_after = 2"),
            "unknown field `fial_after`",
        ),
        (changed.replace("[[route]]", "[[route]"), "checks.toml:"),
        (
            changed.replace(
                "webhook_url_env = \"VANTAGE_SLACK_URL\"",
                "webhook_url = \"https://hooks.slack.com/x\"",
            ),
            "field `channel.settings`: channel chat: unknown field `webhook_url`",
        ),
        (
            changed.replace("kind = \"pagerduty\"", "kind = \"pagerdooty\""),
            "channel pager: unknown kind `pagerdooty`",
        ),
        (
            changed.replace(
                "channels = [\"chat\", \"pager\", \"am\"]",
                "channels = [\"chat\", \"pagr\"]",
            ),
            "route oncall: no channel named \"pagr\"",
        ),
        (
            changed.replace("after = \"15m\"", "after = \"soon\""),
            "field `route.escalate.after`",
        ),
        (
            changed.replace("severities = [\"critical\"]", "severities = [\"urgent\"]"),
            "field `route.severities`",
        ),
        (
            changed.replace("repeat = \"4h\"", "repeat = \"10s\""),
            "from 60s to 30d",
        ),
        // A password itself has no place in the file, only where it is.
        (
            changed.replace(
                "password_env = \"VANTAGE_PROBE_PASSWORD\"",
                "password = \"hunter2\"",
            ),
            "unknown field `password`",
        ),
        (
            changed.replace(
                "rcpt = [\"postmaster@example.org\"]",
                "rcpt = [\"postmaster\"]",
            ),
            "rcpt: \"postmaster\" is not a mail address",
        ),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let (code, out, err) = cluster
            .vantagectl(&[2], &["apply", "-f", path.to_str().unwrap()])
            .await;
        assert_ne!(code, 0, "{out}");
        assert!(err.contains(needle), "{err} lacks {needle}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
    // Malformed on_change, expect and authoritative: the line they are on.
    let line_of = |needle: &str| {
        changed
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    };
    let on_change = line_of("on_change = \"critical\"");
    let dmarc_params = line_of("require_policy = \"quarantine\"");
    for (bad, needle) in [
        (
            changed.replace("on_change = \"critical\"", "on_change = \"sometimes\""),
            format!("checks.toml:{on_change}: field `check.on_change`"),
        ),
        (
            changed.replace(
                "require_policy = \"quarantine\"",
                "require_policy = \"quarantine\", expect = \"v=spf1 -all\"",
            ),
            format!(
                "checks.toml:{dmarc_params}: field `check.params.expect`: check example-dmarc: params: expect: \"v=spf1 -all\" is not a DMARC record"
            ),
        ),
        (
            changed.replace("authoritative = true", "authoritative = \"yes\""),
            format!("checks.toml:{dmarc_params}: field `check.params.authoritative`"),
        ),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let (code, out, err) = cluster
            .vantagectl(&[2], &["apply", "-f", path.to_str().unwrap()])
            .await;
        assert_ne!(code, 0, "{out}");
        assert!(err.contains(&needle), "{err} lacks {needle}");
    }
    // The login check carries the variable's name, never a value.
    let (code, out, _) = cluster
        .vantagectl(&[3], &["checks", "get", "submission-login", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{out}");
    let check: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(check["params"]["password_env"], "VANTAGE_PROBE_PASSWORD");
    let (_, out, _) = cluster
        .vantagectl(&[3], &["checks", "list", "-o", "json"])
        .await;
    let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"mx1-rbl".to_owned()) && names.len() == 10,
        "{names:?}"
    );
}

#[tokio::test]
async fn cluster_status_and_connection_errors() {
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let (code, out, err) = cluster
        .vantagectl(&[1], &["cluster", "status", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(s["leader_id"].as_u64().is_some());
    assert_eq!(s["nodes"].as_array().unwrap().len(), 3);
    let (_, out, _) = cluster.vantagectl(&[1], &["cluster", "status"]).await;
    assert!(out.contains("ADDRESS") && out.contains("voter"), "{out}");

    // A reader that goes away (`vantagectl cluster status | head -0`):
    // vantagectl ends quietly instead of panicking about the closed pipe.
    let mut child = cluster
        .vantagectl_command(&[1], &["cluster", "status"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A dead endpoint first: vantagectl says why and moves on to the next.
    cluster.kill(1).await.unwrap();
    let (code, out, err) = cluster.vantagectl(&[1, 2], &["cluster", "status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node 2"), "{out}");
    let (code, _, err) = cluster.vantagectl(&[1], &["cluster", "status"]).await;
    assert_ne!(code, 0);
    let addr = cluster.nodes[&1].addr.to_string();
    assert!(err.contains(&addr) && err.contains("refused"), "{err}");
}

#[tokio::test]
async fn certs_init_issue_inspect() {
    let cluster = Cluster::new(Timers::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, _, err) = cluster
        .vantagectl(&[], &["certs", "init", "--dir", d])
        .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cluster
        .vantagectl(&[], &["certs", "init", "--dir", d])
        .await;
    assert_ne!(code, 0, "a second init must not overwrite the CA");
    assert!(err.contains("exists"), "{err}");
    let (code, _, err) = cluster
        .vantagectl(
            &[],
            &[
                "certs", "issue", "agent", "--region", "ru", "--name", "msk-1", "--dir", d,
            ],
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cluster
        .vantagectl(
            &[],
            &[
                "certs",
                "issue",
                "coordinator",
                "--id",
                "2",
                "--dns",
                "c2.example.org",
                "--ip",
                "127.0.0.1",
                "--dir",
                d,
                "--days",
                "30",
            ],
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = cluster
        .vantagectl(
            &[],
            &[
                "certs",
                "inspect",
                &format!("{d}/agent-msk-1.pem"),
                "-o",
                "json",
            ],
        )
        .await;
    assert_eq!(code, 0);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            info["role"].as_str(),
            info["region"].as_str(),
            info["name"].as_str()
        ),
        (Some("agent"), Some("ru"), Some("msk-1"))
    );
    assert!(
        (88..=90).contains(&info["days_left"].as_i64().unwrap()),
        "{info}"
    );
    let (_, out, _) = cluster
        .vantagectl(
            &[],
            &["certs", "inspect", &format!("{d}/coordinator-2.pem")],
        )
        .await;
    assert!(
        out.contains("coordinator")
            && (out.contains("(29 days left)") || out.contains("(30 days left)")),
        "{out}"
    );
    let (code, _, err) = cluster
        .vantagectl(
            &[],
            &[
                "certs", "issue", "agent", "--region", "RU", "--name", "x", "--dir", d,
            ],
        )
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("'RU'"), "{err}");
}

#[tokio::test]
async fn dev_mode_serves_a_single_node_cluster_with_its_own_pki() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("vantage-dev");
    let mut child =
        tokio::process::Command::new(vantage_tests::built_bin("vantage-coordinator-under-test"))
            .args([
                "dev",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let export = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.trim().strip_prefix("export ") {
                return rest.to_owned();
            }
        }
        panic!("dev mode printed no export line");
    })
    .await
    .unwrap();
    let mut cmd = tokio::process::Command::new(vantage_tests::built_bin("vantagectl-under-test"));
    for pair in export.split_whitespace() {
        let (k, v) = pair.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let out = cmd
        .args(["cluster", "status", "-o", "json"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["leader_id"], 1);
    assert!(data_dir.join("pki/agent-dev-1.pem").exists());

    // The README's one-machine quickstart: the example agent config, run
    // from the directory holding ./vantage-dev, joins; the example local
    // checks validate.
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let endpoint = export
        .split_whitespace()
        .find_map(|p| p.strip_prefix("VANTAGE_ENDPOINTS="))
        .unwrap()
        .to_owned();
    let agent_config = std::fs::read_to_string(examples.join("local-agent.toml"))
        .unwrap()
        .replace("127.0.0.1:7400", &endpoint)
        .replace(
            "metrics_listen = \"127.0.0.1:9465\"",
            "metrics_listen = \"127.0.0.1:0\"",
        );
    std::fs::write(dir.path().join("agent.toml"), agent_config).unwrap();
    let _agent = tokio::process::Command::new(vantage_tests::built_bin("vantage-agent-under-test"))
        .args(["run", "--config", "agent.toml"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ctl = |args: &[&str]| {
        let mut cmd =
            tokio::process::Command::new(vantage_tests::built_bin("vantagectl-under-test"));
        for pair in export.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            cmd.env(k, v);
        }
        cmd.args(args);
        cmd
    };
    vantage_tests::cluster::wait_for("the local agent connected", || async {
        let out = ctl(&["agents", "list", "-o", "json"]).output().await.ok()?;
        let agents: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        agents
            .as_array()?
            .iter()
            .any(|a| a["name"] == "dev-1" && a["region"] == "local" && a["connected"] == true)
            .then_some(())
    })
    .await
    .unwrap();
    let local_checks = examples.join("local-checks.toml");
    let out = ctl(&["apply", "-f", local_checks.to_str().unwrap(), "--dry-run"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("5 created"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn endpoints_and_credentials_from_a_config_file() {
    let cluster = Cluster::start(1, Timers::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = cluster.pki_dir();
    let config = dir.path().join("vantagectl.toml");
    std::fs::write(
        &config,
        format!(
            "endpoints = [\"{}\"]\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            cluster.nodes[&1].addr,
            pki.join("ca.pem").display(),
            pki.join("operator-tester.pem").display(),
            pki.join("operator-tester.key").display()
        ),
    )
    .unwrap();
    let run = |args: Vec<String>| async move {
        tokio::process::Command::new(vantage_tests::built_bin("vantagectl-under-test"))
            .args(args)
            .env_remove("VANTAGE_ENDPOINTS")
            .env_remove("VANTAGE_CA")
            .env_remove("VANTAGE_CERT")
            .env_remove("VANTAGE_KEY")
            .output()
            .await
            .unwrap()
    };
    let c = config.display().to_string();
    let out = run(vec![
        "--config".into(),
        c.clone(),
        "cluster".into(),
        "status".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A typo in the file is reported with file, line and field.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("cert =", "crt =");
    std::fs::write(&config, text).unwrap();
    let out = run(vec![
        "--config".into(),
        c.clone(),
        "cluster".into(),
        "status".into(),
    ])
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("{c}:4: field `crt`")), "{err}");

    // Without any source, the error says where endpoints come from.
    let out = run(vec!["cluster".into(), "status".into()]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("VANTAGE_ENDPOINTS"));
}

#[tokio::test]
async fn agents_are_revoked_and_accepted_again_and_coordinators_are_never_revoked() {
    let cluster = Cluster::start(1, Timers::default()).await.unwrap();
    let (code, out, err) = cluster
        .vantagectl(&[1], &["agents", "revoke", "ru/msk-1"])
        .await;
    assert_eq!((code, out.trim()), (0, "agent ru/msk-1: revoked"), "{err}");
    let (code, out, err) = cluster
        .vantagectl(&[1], &["operators", "revoke", "msk-1"])
        .await;
    assert_eq!((code, out.trim()), (0, "operator msk-1: revoked"), "{err}");
    let (_, out, _) = cluster
        .vantagectl(&[1], &["agents", "revoked", "-o", "json"])
        .await;
    assert_eq!(out.trim(), r#"["agent/ru/msk-1","operator/msk-1"]"#);
    let (_, out, _) = cluster.vantagectl(&[1], &["agents", "revoked"]).await;
    assert_eq!(out.trim(), "agent ru/msk-1\noperator msk-1");
    let (code, out, err) = cluster
        .vantagectl(&[1], &["agents", "unrevoke", "ru/msk-1"])
        .await;
    assert_eq!(
        (code, out.trim()),
        (0, "agent ru/msk-1: accepted again"),
        "{err}"
    );
    let (code, out, err) = cluster
        .vantagectl(&[1], &["operators", "unrevoke", "msk-1"])
        .await;
    assert_eq!(
        (code, out.trim()),
        (0, "operator msk-1: accepted again"),
        "{err}"
    );
    let (_, out, _) = cluster
        .vantagectl(&[1], &["agents", "revoked", "-o", "json"])
        .await;
    assert_eq!(out.trim(), "[]");
    // An agent is named with its region.
    let (code, _, err) = cluster
        .vantagectl(&[1], &["agents", "revoke", "msk-1"])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("is not REGION/NAME"), "{err}");
    // Revoking a node's certificate would break writes through it.
    let (code, _, err) = cluster
        .vantagectl(&[1], &["agents", "revoke", "coordinator-1"])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("vantagectl cluster remove"), "{err}");
    let (code, out, err) = cluster
        .vantagectl(&[1], &["cluster", "status", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}: {out}");
}
