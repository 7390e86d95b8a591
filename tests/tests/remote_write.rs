//! Prometheus remote-write: the writer's wire format against the recording
//! receiver, and a real Prometheus (the Debian package, with its
//! remote-write receiver on) taking every applied result from a 3-node
//! cluster whose leader is killed mid-stream (skips, saying why, where the
//! package is missing, unless `VANTAGE_REQUIRE_SERVERS` is set).

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use vantage_common::Status;
use vantage_coordinator::config::RemoteWriteSettings;
use vantage_coordinator::remote_write::{Drained, Samples, SendError, WriteRequest, Writer};
use vantage_coordinator::state::IncomingResult;
use vantage_coordinator::state::results::StoredResult;
use vantage_tests::cluster::{Cluster, REGIONS, Timers, wait_for};
use vantage_tests::prometheus::Prometheus;
use vantage_tests::receiver::{Behaviour, Receiver};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn result(seq: u64, region: &str, at_ms: i64, status: Status) -> IncomingResult {
    IncomingResult {
        seq,
        check: "mx".into(),
        result: StoredResult {
            region: region.into(),
            agent: format!("{region}-1"),
            started_at_ms: at_ms,
            status,
            class: None,
            message: "ok".into(),
            duration_ms: 42,
            details_json: "{}".into(),
            cert_not_after: None,
            phases: vec![("connect".into(), 1500), ("banner".into(), 2500)],
        },
        trace: None,
    }
}

#[tokio::test]
async fn the_writer_sends_snappy_protobuf_with_basic_auth_and_classifies_refusals() {
    let r = Receiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cr3t-rw-pass\n").unwrap();
    let settings: RemoteWriteSettings = toml::from_str(&format!(
        "url = \"{}\"\nbasic_auth_username = \"vantage\"\nbasic_auth_password_file = \"{}\"\nmax_samples_per_send = 4",
        r.url("api/v1/write"),
        password.display()
    ))
    .unwrap();
    let writer = Writer::new(&settings).unwrap();
    let mut samples = Samples::default();
    samples.add("eu-1", "smtp", &result(1, "eu", 1_000, Status::Pass));
    samples.add("eu-1", "smtp", &result(2, "eu", 2_000, Status::Fail));
    samples.add("ru-1", "smtp", &result(3, "ru", 1_500, Status::Warn));
    assert_eq!(samples.len(), 12, "success, total and two phases each");
    let requests = samples.requests(writer.max_samples);
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|q| q.len() == 4));
    for q in &requests {
        writer.send(q).await.unwrap();
    }

    let got = r.received("/api/v1/write");
    assert_eq!(got.len(), 3);
    let h = &got[0].headers;
    assert_eq!(h["content-encoding"], "snappy");
    assert_eq!(h["content-type"], "application/x-protobuf");
    assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("vantage:s3cr3t-rw-pass");
    assert_eq!(h["authorization"], format!("Basic {basic}"));
    let mut series = Vec::new();
    for g in &got {
        let raw = snap::raw::Decoder::new().decompress_vec(&g.body).unwrap();
        let request: WriteRequest = prost::Message::decode(raw.as_slice()).unwrap();
        series.extend(request.timeseries);
    }
    let labels = |t: &vantage_coordinator::remote_write::TimeSeries| -> Vec<String> {
        t.labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect()
    };
    // Labels sorted by name, `__name__` first.
    let success: Vec<_> = series
        .iter()
        .filter(|t| labels(t)[0] == "__name__=vantage_probe_success")
        .collect();
    assert_eq!(
        labels(success[0]),
        [
            "__name__=vantage_probe_success",
            "agent=eu-1",
            "check=mx",
            "kind=smtp",
            "region=eu"
        ]
    );
    let eu: Vec<(i64, f64)> = success[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(eu, [(1_000, 1.0), (2_000, 0.0)]);
    assert_eq!(success[1].samples[0].value, 1.0, "a warning is up");
    let connect: Vec<f64> = series
        .iter()
        .filter(|t| labels(t).contains(&"phase=connect".to_owned()))
        .flat_map(|t| t.samples.iter().map(|s| s.value))
        .collect();
    assert_eq!(connect, [0.0015, 0.0015, 0.0015]);
    let total: Vec<f64> = series
        .iter()
        .filter(|t| labels(t).contains(&"phase=total".to_owned()))
        .flat_map(|t| t.samples.iter().map(|s| s.value))
        .collect();
    assert_eq!(total, [0.042, 0.042, 0.042]);

    // 5xx is worth a retry, without the password in what it says.
    r.set("/api/v1/write", Behaviour::FailTimes(1));
    match writer.send(&requests[0]).await {
        Err(SendError::Retry(why)) => assert!(!why.contains("s3cr3t"), "{why}"),
        other => panic!("{other:?}"),
    }
    writer.send(&requests[0]).await.unwrap();
    // A missing password names its file.
    std::fs::remove_file(&password).unwrap();
    let err = writer.send(&requests[0]).await.unwrap_err();
    assert!(err.to_string().contains("password"), "{err}");
}

/// (region, probe start) of every result the cluster keeps of `check`.
async fn applied(cluster: &Cluster, via: u64) -> Option<BTreeSet<(String, i64)>> {
    let (code, out, _) = cluster
        .vantagectl(&[via], &["results", "mx", "--recent", "30", "-o", "json"])
        .await;
    if code != 0 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    Some(
        v["recent"]
            .as_array()?
            .iter()
            .filter_map(|r| {
                Some((
                    r["region"].as_str()?.to_owned(),
                    r["started_at_ms"].as_i64()?,
                ))
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_real_prometheus_receives_every_result_across_a_leader_kill() {
    if Prometheus::binary().is_none() {
        vantage_tests::missing("prometheus");
        return;
    }
    let prometheus = Prometheus::start(&[]).await.unwrap();
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    // Small requests, so that a kill lands between them.
    let mut cluster = Cluster::new(Timers::default())
        .unwrap()
        .with_coordinator_config(&format!(
            "[remote_write]\nurl = \"{}\"\nmax_samples_per_send = 5\ntimeout = \"5s\"\n",
            prometheus.remote_write_url()
        ))
        .started(3)
        .await
        .unwrap();
    cluster
        .apply(&format!(
            "[[check]]\nname = \"mx\"\nkind = \"smtp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\nparams = {{ port = {}, tls = \"none\" }}\n",
            server.addr.port()
        ))
        .await
        .unwrap();
    cluster.spawn_regions().await.unwrap();
    let ids = cluster.ids();
    // The first results reach Prometheus; then the leader dies.
    wait_for("samples in Prometheus", || async {
        let got = prometheus
            .query("count(count_over_time(vantage_probe_success{check=\"mx\"}[10m]))")
            .await
            .ok()?;
        (got.first()?.value >= 3.0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", prometheus.log()));
    let leader = cluster.wait_for_leader(&ids).await.unwrap();
    cluster.kill(leader).await.unwrap();
    let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != leader).collect();
    let new_leader = cluster.wait_for_leader(&rest).await.unwrap();
    assert_ne!(new_leader, leader);
    // More results under the new leader, then the agents stop while the
    // cluster still keeps every result (30 per check).
    wait_for("7 results per region", || async {
        let seen = applied(&cluster, new_leader).await?;
        (seen.len() >= 21).then_some(())
    })
    .await
    .unwrap();
    for (name, _, _) in REGIONS {
        cluster.kill_agent(name).await.unwrap();
    }
    let all = applied(&cluster, new_leader).await.unwrap();
    assert!(
        all.len() <= 30,
        "the history holds every result: {}",
        all.len()
    );

    // Every applied result is in Prometheus, with its region, agent and
    // kind, at its probe's start.
    let missing = wait_for("every result in Prometheus", || async {
        let samples = prometheus
            .query_range("vantage_probe_success{check=\"mx\",kind=\"smtp\"}", "15m")
            .await
            .ok()?;
        let stored: BTreeSet<(String, i64)> = samples
            .iter()
            .filter(|s| s.labels.get("agent").is_some_and(|a| a.ends_with("-1")))
            .map(|s| (s.labels["region"].clone(), s.at_ms))
            .collect();
        let missing: Vec<_> = all.difference(&stored).cloned().collect();
        missing.is_empty().then_some(stored)
    })
    .await;
    let stored = missing.unwrap_or_else(|e| panic!("{e}: {}", prometheus.log()));
    assert!(stored.len() >= all.len());
    // Durations by phase came along.
    let phases = prometheus
        .query(
            "count by (phase) (count_over_time(vantage_probe_duration_seconds{check=\"mx\"}[15m]))",
        )
        .await
        .unwrap();
    let phases: BTreeSet<&str> = phases.iter().map(|s| s.labels["phase"].as_str()).collect();
    assert!(
        phases.contains("total") && phases.contains("connect") && phases.contains("banner"),
        "{phases:?}"
    );
    // The per-check dashboard's remote-write panels query what arrived.
    let queried = vantage_tests::dashboard_series("vantage-checks.json");
    for name in ["vantage_probe_success", "vantage_probe_duration_seconds"] {
        assert!(queried.contains(name), "{queried:?}");
        let got = prometheus
            .query(&format!("count({name}{{check=\"mx\"}})"))
            .await
            .unwrap();
        assert!(
            got.first().is_some_and(|s| s.value >= 3.0),
            "{name}: {got:?}"
        );
    }
}

#[tokio::test]
async fn a_request_a_real_prometheus_refuses_for_a_stale_sample_goes_through_in_halves() {
    if Prometheus::binary().is_none() {
        vantage_tests::missing("prometheus");
        return;
    }
    let prometheus = Prometheus::start(&[]).await.unwrap();
    let settings: RemoteWriteSettings =
        toml::from_str(&format!("url = \"{}\"", prometheus.remote_write_url())).unwrap();
    let writer = Writer::new(&settings).unwrap();
    let now = vantage_common::clock::now_ms();
    let request = |at: &[i64]| {
        let mut samples = Samples::default();
        for (i, t) in at.iter().enumerate() {
            samples.add(
                "eu-1",
                "smtp",
                &result(i as u64 + 1, "eu", *t, Status::Pass),
            );
        }
        samples.requests(usize::MAX).remove(0)
    };
    // Sent once; then again with one newer result, as a new leader may.
    writer.send(&request(&[now - 20_000])).await.unwrap();
    writer.send(&request(&[now - 10_000])).await.unwrap();
    let resent = request(&[now - 20_000, now - 10_000, now]);
    match writer.send(&resent).await {
        Err(SendError::Stale(why)) => assert!(why.contains("400"), "{why}"),
        other => panic!("the whole request is refused: {other:?}"),
    }
    // Halves, in order, until only the stale sample is refused.
    let mut queue = vec![resent];
    let mut done = Drained::default();
    writer.drain(&mut queue, &mut done).await.unwrap();
    assert!(queue.is_empty());
    // Four series (success, total and two phases): the oldest sample of
    // each refused, the other two taken.
    assert_eq!((done.sent, done.dropped), (8, 4), "{done:?}");
    let stored = prometheus
        .query_range("vantage_probe_success{check=\"mx\"}", "5m")
        .await
        .unwrap();
    let times: BTreeSet<i64> = stored.iter().map(|s| s.at_ms).collect();
    assert_eq!(
        times,
        BTreeSet::from([now - 20_000, now - 10_000, now]),
        "the new sample went through"
    );
}
