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

/// `http://ADDR` of each running coordinator's HTTP port.
fn http_bases(cluster: &Cluster) -> Vec<String> {
    cluster
        .ids()
        .iter()
        .map(|id| format!("http://{}", cluster.nodes[id].http.unwrap()))
        .collect()
}

/// An agent per region, each with a metrics port; their ports.
async fn agents_with_metrics(cluster: &mut Cluster) -> Vec<u16> {
    let mut ports = Vec::new();
    for (name, region, source) in REGIONS {
        let port = free_port();
        ports.push(port);
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
    ports
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
    let agent_ports = agents_with_metrics(&mut cluster).await;
    wait_for("mx OK", || async {
        let s = cluster.checks_status(1).await?;
        (s.checks.first()?.verdict == "ok").then_some(())
    })
    .await
    .unwrap();

    // Coordinators: Raft, verdicts, agents; exactly one leader.
    let http = http_bases(&cluster);
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

    // Every series the Grafana dashboard queries is exported (delivery
    // counters appear with the first delivery, checked below).
    let queried = vantage_tests::dashboard_series("vantage.json");
    assert!(queried.len() >= 15, "{queried:?}");
    assert_exported(&queried, &exported, &["vantage_alert_deliveries_total"]);

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

/// Every name in `queried` but those in `later` has a sample in `exported`.
fn assert_exported(queried: &std::collections::BTreeSet<String>, exported: &str, later: &[&str]) {
    for name in queried.iter().filter(|n| !later.contains(&n.as_str())) {
        let present = exported
            .lines()
            .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")));
        assert!(present, "a dashboard queries {name}, which /metrics lacks");
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

/// The leader's `/metrics` text.
async fn leader_metrics(http: &[String]) -> Option<String> {
    for base in http {
        let (_, text) = get(&format!("{base}/metrics")).await;
        if sample(&text, "vantage_raft_is_leader ") == Some(1.0) {
            return Some(text);
        }
    }
    None
}

#[tokio::test]
async fn the_leader_exports_per_check_series_that_a_real_prometheus_scrapes() {
    use vantage_tests::certs::{CaFile, Validity};
    use vantage_tests::prometheus::Prometheus;

    // A STARTTLS server whose certificate expires in 60 days, watched by a
    // `tls` and an `smtp` check.
    let ca = CaFile::new("metrics CA").unwrap();
    let tls = ca
        .issue(&["mx.test"], Validity::expiring_in(60))
        .unwrap()
        .server_config()
        .unwrap();
    let server = SmtpServer::start(SmtpScript::with_starttls(tls))
        .await
        .unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let params = format!(
        "params = {{ port = {}, tls = \"starttls\", tls_name = \"mx.test\", ca_file = \"{}\" }}",
        server.addr.port(),
        ca.path()
    );
    let toml = format!(
        "[[check]]\nname = \"cert\"\nkind = \"tls\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\n\
         labels = {{ team = \"mail\", kind = \"edge\", \"app.tier\" = \"front\" }}\n{params}\n\n\
         [[check]]\nname = \"mx\"\nkind = \"smtp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\n{params}\n"
    );
    cluster.apply(&toml).await.unwrap();
    let agent_ports = agents_with_metrics(&mut cluster).await;
    wait_for("both checks OK", || async {
        let s = cluster.checks_status(1).await?;
        (s.checks.len() == 2 && s.checks.iter().all(|c| c.verdict == "ok")).then_some(())
    })
    .await
    .unwrap();
    let http = http_bases(&cluster);

    // The leader: an info series with the check's labels, its verdict as a
    // state set, each region up with its latest duration and the
    // certificate's expiry.
    let text = wait_for("every region's series on the leader", || async {
        let text = leader_metrics(&http).await?;
        let regions = text
            .lines()
            .filter(|l| l.starts_with("vantage_check_cert_not_after_timestamp_seconds{"))
            .count();
        (regions == 6).then_some(text)
    })
    .await
    .unwrap();
    assert!(
        text.contains(
            "vantage_check_info{check=\"cert\",kind=\"tls\",target=\"127.0.0.1\",app_tier=\"front\",label_kind=\"edge\",team=\"mail\"} 1\n"
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE vantage_check info\n"), "{text}");
    for check in ["cert", "mx"] {
        let verdict = |v: &str| {
            sample(
                &text,
                &format!("vantage_check_verdict{{check=\"{check}\",verdict=\"{v}\"}} "),
            )
        };
        assert_eq!(verdict("ok"), Some(1.0), "{text}");
        assert_eq!(verdict("outage"), Some(0.0), "{text}");
        assert_eq!(verdict("regional"), Some(0.0), "{text}");
        for (_, region, _) in REGIONS {
            let labels = format!("{{check=\"{check}\",region=\"{region}\"}} ");
            assert_eq!(
                sample(&text, &format!("vantage_check_region_up{labels}")),
                Some(1.0),
                "{text}"
            );
            let took = sample(&text, &format!("vantage_check_duration_seconds{labels}")).unwrap();
            assert!((0.0..5.0).contains(&took), "{took}");
            let expires = sample(
                &text,
                &format!("vantage_check_cert_not_after_timestamp_seconds{labels}"),
            )
            .unwrap();
            let in_days = (expires - vantage_common::clock::now_ms() as f64 / 1000.0) / 86_400.0;
            assert!(
                (59.0..=61.0).contains(&in_days),
                "expires in {in_days} days"
            );
        }
    }
    // Kinds that keep a baseline count their changes; none so far.
    assert_eq!(
        sample(&text, "vantage_check_changes_total{check=\"cert\"} "),
        Some(0.0)
    );
    assert!(text.ends_with("# EOF\n"));
    // Followers export their own node's metrics only: one copy per mesh.
    let mut followers = 0;
    for base in &http {
        let (_, text) = get(&format!("{base}/metrics")).await;
        if sample(&text, "vantage_raft_is_leader ") == Some(0.0) {
            followers += 1;
            assert!(!text.contains("vantage_check_"), "{text}");
        }
    }
    assert_eq!(followers, 2);
    // `?checks=false` leaves them out on the leader too (a scrape job of
    // its own can take them less often).
    let mut without = Vec::new();
    for base in &http {
        let (_, text) = get(&format!("{base}/metrics?checks=false")).await;
        if sample(&text, "vantage_raft_is_leader ") == Some(1.0) {
            without.push(text);
        }
    }
    assert_eq!(without.len(), 1);
    assert!(
        !without[0].contains("vantage_check_") && without[0].ends_with("# EOF\n"),
        "{}",
        without[0]
    );

    // The per-check dashboard queries nothing the leader and agents lack.
    let mut exported = text.clone();
    for port in &agent_ports {
        exported.push_str(&get(&format!("http://127.0.0.1:{port}/metrics")).await.1);
    }
    // (The remote-written series are checked in tests/tests/remote_write.rs.)
    let queried = vantage_tests::dashboard_series("vantage-checks.json");
    assert!(queried.len() >= 5, "{queried:?}");
    assert_exported(
        &queried,
        &exported,
        &["vantage_probe_success", "vantage_probe_duration_seconds"],
    );

    // A real Prometheus scrapes all six: the per-check series with their
    // labels, once.
    if Prometheus::binary().is_none() {
        vantage_tests::missing("prometheus");
    } else {
        let coordinators = http
            .iter()
            .map(|b| b.trim_start_matches("http://").to_owned())
            .collect();
        let agents = agent_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let prometheus = Prometheus::start(&[("coordinators", coordinators), ("agents", agents)])
            .await
            .unwrap();
        let region_up = wait_for("Prometheus has scraped every target", || async {
            let up = prometheus.query("up").await.ok()?;
            if up.len() != 6 || up.iter().any(|s| s.value != 1.0) {
                return None;
            }
            let region_up = prometheus
                .query("vantage_check_region_up{check=\"cert\"}")
                .await
                .ok()?;
            (region_up.len() == 3).then_some(region_up)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", prometheus.log()));
        let mut regions: Vec<&str> = region_up
            .iter()
            .map(|s| s.labels["region"].as_str())
            .collect();
        regions.sort();
        assert_eq!(regions, ["eu", "ru", "us"]);
        assert!(region_up.iter().all(|s| s.value == 1.0));
        let info = prometheus
            .query("vantage_check_info{check=\"cert\"}")
            .await
            .unwrap();
        assert_eq!(info.len(), 1, "one copy: {info:?}");
        assert_eq!(info[0].labels["team"], "mail");
        assert_eq!(info[0].labels["label_kind"], "edge");
        assert_eq!(info[0].labels["kind"], "tls");
        let expiring = prometheus
            .query("(vantage_check_cert_not_after_timestamp_seconds - time()) / 86400 < 90")
            .await
            .unwrap();
        assert_eq!(expiring.len(), 6, "{expiring:?}");
        let joined = prometheus
            .query("vantage_check_verdict{verdict=\"ok\"} * on(check) group_left(team) vantage_check_info")
            .await
            .unwrap();
        assert!(
            joined.iter().any(|s| s.labels["check"] == "cert"
                && s.labels["team"] == "mail"
                && s.value == 1.0),
            "{joined:?}"
        );
        let targets = prometheus.api("targets", &[]).await.unwrap();
        for t in targets["activeTargets"].as_array().unwrap() {
            assert_eq!(t["health"], "up", "{t}");
            assert_eq!(t["lastError"], "", "{t}");
        }
    }

    // Down from one region: the region's series says so, the verdict moves.
    server.block_from(REGIONS[0].2.parse().unwrap(), true);
    wait_for("ru down on the leader", || async {
        let text = leader_metrics(&http).await?;
        (sample(
            &text,
            "vantage_check_region_up{check=\"cert\",region=\"ru\"} ",
        ) == Some(0.0)
            && sample(
                &text,
                "vantage_check_verdict{check=\"cert\",verdict=\"regional\"} ",
            ) == Some(1.0)
            && sample(
                &text,
                "vantage_check_verdict{check=\"cert\",verdict=\"ok\"} ",
            ) == Some(0.0))
        .then_some(())
    })
    .await
    .unwrap();

    // The leader dies: the series move to the new one, values intact.
    let ids = cluster.ids();
    let leader = cluster.wait_for_leader(&ids).await.unwrap();
    let leader_http = format!("http://{}", cluster.nodes[&leader].http.unwrap());
    cluster.kill(leader).await.unwrap();
    let rest: Vec<String> = http.into_iter().filter(|b| *b != leader_http).collect();
    wait_for("the series on the new leader", || async {
        let text = leader_metrics(&rest).await?;
        (sample(
            &text,
            "vantage_check_region_up{check=\"cert\",region=\"ru\"} ",
        ) == Some(0.0)
            && text.contains("vantage_check_info{check=\"mx\""))
        .then_some(())
    })
    .await
    .unwrap();
}
