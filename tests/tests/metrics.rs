//! The HTTP side ports: Prometheus `/metrics`, `/healthz`, `/readyz` on
//! coordinators and agents, read while a real mesh works; nothing else is
//! served there.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_tests::cluster::{Cluster, REGIONS, Timers, wait_for};
use vantage_tests::receiver::Receiver;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn client() -> reqwest::Client {
    // With the ring provider installed (reqwest here has none of its own).
    vantage_coordinator::alert::http_client().unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn coordinators_and_agents_export_metrics_health_and_readiness() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let toml = format!(
        "[[check]]\nname = \"mx\"\nkind = \"smtp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\nparams = {{ port = {}, tls = \"none\" }}\n\n[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nsettings = {{ url = \"{}\" }}\n\n[[route]]\nname = \"all\"\nchannels = [\"hook\"]\n",
        server.addr.port(),
        receiver.url("hook")
    );
    cluster.apply(&toml).await.unwrap();
    let mut agent_ports = Vec::new();
    for (name, region, source) in REGIONS {
        let port = free_port();
        agent_ports.push(port);
        cluster
            .spawn_agent_with(
                name,
                region,
                source,
                &[],
                &format!("metrics_listen = \"127.0.0.1:{port}\"\n"),
            )
            .await
            .unwrap();
    }
    wait_for("mx OK", || async {
        let s = cluster.checks_status(1).await?;
        (s.checks.first()?.verdict == "ok").then_some(())
    })
    .await
    .unwrap();

    // Coordinators: Raft, verdicts, agents; exactly one leader.
    let http: Vec<String> = cluster
        .ids()
        .iter()
        .map(|id| format!("http://{}", cluster.nodes[id].http.unwrap()))
        .collect();
    let mut leaders = 0;
    let mut exported = String::new();
    for base in &http {
        let (code, text) = get(&format!("{base}/metrics")).await;
        exported.push_str(&text);
        assert_eq!(code, 200);
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text");
        assert!(
            sample(&text, "vantage_raft_term ").unwrap() >= 1.0,
            "{text}"
        );
        assert!(sample(&text, "vantage_raft_applied_index ").unwrap() > 0.0);
        assert_eq!(
            sample(&text, "vantage_verdicts{verdict=\"ok\"} "),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "vantage_agents{state=\"connected\"} "),
            Some(3.0),
            "{text}"
        );
        leaders += sample(&text, "vantage_raft_is_leader ").unwrap() as u32;
        assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
        assert_eq!(get(&format!("{base}/readyz")).await.0, 200);
        assert_eq!(get(&format!("{base}/nope")).await.0, 404);
        // Nothing there changes state.
        let post = client()
            .post(format!("{base}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(post.status().as_u16(), 405);
    }
    assert_eq!(leaders, 1);

    // Agents: probe durations by phase, results, spool, session.
    for port in &agent_ports {
        let base = format!("http://127.0.0.1:{port}");
        let text = wait_for("agent metrics with results", || async {
            let (_, text) = get(&format!("{base}/metrics")).await;
            sample(
                &text,
                "vantage_probe_results_total{kind=\"smtp\",status=\"pass\",class=\"\"} ",
            )
            .is_some_and(|n| n >= 1.0)
            .then_some(text)
        })
        .await
        .unwrap();
        assert!(
            sample(
                &text,
                "vantage_probe_duration_seconds_count{kind=\"smtp\",phase=\"total\"} "
            )
            .is_some_and(|n| n >= 1.0)
                && text
                    .contains("vantage_probe_duration_seconds_bucket{le=\"0.005\",kind=\"smtp\""),
            "{text}"
        );
        assert!(
            text.contains("phase=\"banner\""),
            "per-phase timings: {text}"
        );
        exported.push_str(&text);
        assert!(sample(&text, "vantage_spool_pending ").is_some());
        assert_eq!(sample(&text, "vantage_spool_dropped_total "), Some(0.0));
        assert_eq!(sample(&text, "vantage_spool_renewals_total "), Some(0.0));
        assert_eq!(sample(&text, "vantage_session_connected "), Some(1.0));
        assert_eq!(sample(&text, "vantage_checks_running "), Some(1.0));
        assert_eq!(get(&format!("{base}/readyz")).await.0, 200);
    }

    // Every series the Grafana dashboard queries is exported.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana/vantage.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut queried = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("vantage_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");
    for name in &queried {
        let present = exported
            .lines()
            .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")));
        // Delivery counters appear with the first delivery, checked below.
        if name != "vantage_alert_deliveries_total" {
            assert!(
                present,
                "the dashboard queries {name}, which /metrics lacks"
            );
        }
    }

    // An outage: the leader counts its webhook deliveries.
    for (_, _, source) in REGIONS {
        server.block_from(source.parse().unwrap(), true);
    }
    wait_for("a delivery counted", || async {
        for base in &http {
            let (_, text) = get(&format!("{base}/metrics")).await;
            let n = sample(
                &text,
                "vantage_alert_deliveries_total{sink=\"webhook\",outcome=\"delivered\"} ",
            );
            if n.is_some_and(|n| n >= 1.0)
                && sample(&text, "vantage_verdicts{verdict=\"outage\"} ") == Some(1.0)
            {
                return Some(());
            }
        }
        None
    })
    .await
    .unwrap();

    // The status page and API show the outage, and nothing about channels.
    for base in &http {
        let (code, json) = get(&format!("{base}/api/status")).await;
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["checks"][0]["name"], "mx");
        assert_eq!(v["checks"][0]["verdict"], "outage", "{v}");
        assert_eq!(v["checks"][0]["regions"].as_array().unwrap().len(), 3);
        assert!(
            v["checks"][0]["uptime_pct"][0].as_f64().unwrap() < 100.0,
            "{v}"
        );
        assert_eq!(v["incidents"].as_array().unwrap().len(), 1);
        let (code, page) = get(&format!("{base}/")).await;
        assert_eq!(code, 200);
        assert!(
            page.contains("<td class=\"v outage\">OUTAGE</td>"),
            "{page}"
        );
        for text in [&json, &page] {
            assert!(
                !text.contains("hook") && !text.contains(&receiver.url("")),
                "no channel shown"
            );
        }
    }
}

#[tokio::test]
async fn the_side_port_holds_a_bounded_number_of_connections_and_drops_idle_ones() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let router = vantage_common::metrics::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }));
    let addr = vantage_common::metrics::serve_bounded(
        "127.0.0.1:0".parse().unwrap(),
        router,
        4,
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    // Idle clients take every slot...
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // ...so a fifth waits in the backlog instead of costing a descriptor,
    let started = std::time::Instant::now();
    let fifth = tokio::spawn(get_owned(format!("http://{addr}/healthz")));
    // ...until the idle ones are closed by the server.
    for mut c in idle {
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf))
            .await
            .expect("the server closes an idle connection")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without a byte");
    }
    let (status, body) = fifth.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "it had to wait"
    );
    // A client that stops halfway through its request is dropped too.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a half-sent request is not held forever");
}

async fn get_owned(url: String) -> (u16, String) {
    get(&url).await
}
