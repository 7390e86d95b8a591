//! The cross-region vote end to end: agents in three regions, a target
//! that fails from some regions only, verdicts read back from the cluster.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_tests::cluster::{Cluster, Timers};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

async fn wait_verdict(cluster: &Cluster, check: &str, expected: &str, down: &[&str]) {
    let nodes = cluster.ids();
    cluster
        .wait_verdict(&nodes, check, expected, down)
        .await
        .unwrap();
}

#[tokio::test]
async fn regional_fault_then_outage_then_recovery() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let port = server.addr.port();
    let toml = format!(
        "[[check]]\nname = \"mx\"\nkind = \"smtp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\nfail_after = 2\nrecover_after = 2\nparams = {{ port = {port}, tls = \"none\" }}\n\n[[check]]\nname = \"mx-all\"\nkind = \"smtp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\nquorum = \"all\"\nparams = {{ port = {port}, tls = \"none\" }}\n"
    );
    cluster.apply(&toml).await.unwrap();
    cluster.spawn_regions().await.unwrap();
    wait_verdict(&cluster, "mx", "ok", &[]).await;

    // Port 25 "blocked" from RU only: a regional fault, not an outage.
    server.block_from("127.0.0.11".parse().unwrap(), true);
    wait_verdict(&cluster, "mx", "regional", &["ru"]).await;

    // Down from a second region: a majority, an outage.
    server.block_from("127.0.0.12".parse().unwrap(), true);
    wait_verdict(&cluster, "mx", "outage", &["eu", "ru"]).await;
    // The same fault under quorum `all`: 2 of 3 is still REGIONAL.
    wait_verdict(&cluster, "mx-all", "regional", &["eu", "ru"]).await;

    // Operator views select: by verdict, glob, region; a page at a time.
    let status = |args: &'static [&'static str]| {
        let cluster = &cluster;
        async move {
            let mut all = vec!["status", "-o", "json"];
            all.extend_from_slice(args);
            let (code, out, err) = cluster.vantagectl(&[2], &all).await;
            assert_eq!(code, 0, "{args:?}: {err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let names: Vec<String> = v["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect();
            (names, v)
        }
    };
    assert_eq!(status(&["--verdict", "outage"]).await.0, ["mx"]);
    assert_eq!(status(&["--problems"]).await.0, ["mx", "mx-all"]);
    assert!(status(&["--verdict", "ok"]).await.0.is_empty());
    assert_eq!(status(&["--check", "*-all"]).await.0, ["mx-all"]);
    let (names, v) = status(&["--limit", "1", "--region", "us"]).await;
    assert_eq!(names, ["mx"]);
    assert_eq!(v["matched"], 2, "{v}");
    assert_eq!(v["verdicts"]["outage"], 1, "{v}");
    let regions = v["checks"][0]["regions"].as_object().unwrap();
    assert_eq!(regions.keys().collect::<Vec<_>>(), ["us"], "{v}");
    let (code, _, err) = cluster
        .vantagectl(&[2], &["status", "--verdict", "down"])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("unknown verdict \"down\""), "{err}");
    let http = cluster.nodes[&2].http.unwrap();
    let get = |query: &str| {
        let url = format!("http://{http}/api/status{query}");
        async move {
            let http = vantage_coordinator::alert::http_client().unwrap();
            let r = http.get(&url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (code, body) = get("?verdict=regional,outage&check=mx*&limit=1").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["checks"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        (&v["matched"], &v["next"]),
        (&2.into(), &"mx".into()),
        "{v}"
    );
    let (_, body) = get("?verdict=regional,outage&after=mx").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["checks"][0]["name"], "mx-all", "{v}");
    assert!(v["next"].is_null(), "{v}");
    assert_eq!(get("?label=nokey").await.0, 400);

    // One incident for mx, opened at the regional fault; an operator acknowledges it.
    let incidents: Vec<_> = cluster
        .incidents(3, false)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.check == "mx")
        .collect();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(
        (incidents[0].check.as_str(), incidents[0].worst.as_str()),
        ("mx", "outage")
    );
    let id = incidents[0].id.to_string();
    let (code, _, err) = cluster.vantagectl(&[1], &["incidents", "ack", &id]).await;
    assert_eq!(code, 0, "{err}");

    // Back for everyone: recover_after passes later, OK again.
    server.block_from("127.0.0.11".parse().unwrap(), false);
    server.block_from("127.0.0.12".parse().unwrap(), false);
    wait_verdict(&cluster, "mx", "ok", &[]).await;

    // The incident resolved, with its whole story.
    let (code, out, err) = cluster
        .vantagectl(&[2], &["incidents", "show", &id, "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let incident: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(incident["resolved_ms"].is_number(), "{incident}");
    assert_eq!(incident["acked_by"], "tester");
    let story: Vec<String> = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap().to_owned())
        .collect();
    let expect = [
        "opened: REGIONAL (down from ru)",
        "verdict OUTAGE (down from eu, ru)",
        "acknowledged by tester",
        "resolved: OK from every voting region",
    ];
    let mut at = 0;
    for e in expect {
        let found = story[at..]
            .iter()
            .position(|s| s == e)
            .unwrap_or_else(|| panic!("{e:?} missing in order from {story:?}"));
        at += found + 1;
    }
    assert!(story.iter().any(|s| s == "eu: up -> down"), "{story:?}");
    let (_, out, _) = cluster.vantagectl(&[1], &["incidents", "list"]).await;
    assert!(!out.contains(" mx "), "no open incident left: {out}");

    // History: the REGIONAL time counts as degraded, the OUTAGE as down.
    let (code, out, err) = cluster
        .vantagectl(&[3], &["history", "mx", "--since", "1h", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let h: serde_json::Value = serde_json::from_str(&out).unwrap();
    let pct = |k: &str| h[k].as_f64().unwrap();
    assert!(pct("degraded_pct") > 0.0 && pct("down_pct") > 0.0, "{h}");
    assert!(
        (pct("up_pct") + pct("degraded_pct") + pct("down_pct") - 100.0).abs() < 0.01,
        "{h}"
    );
    assert_eq!(h["incidents"].as_array().unwrap().len(), 1, "{h}");
    let ru = h["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "ru")
        .unwrap();
    assert!(
        ru["fail"].as_u64().unwrap() >= 2 && ru["uptime_pct"].as_f64().unwrap() < 100.0,
        "{ru}"
    );
    let (code, out, err) = cluster
        .vantagectl(&[3], &["history", "mx", "--since", "1h"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("of which degraded, REGIONAL:") && out.contains("incidents: 1"),
        "{out}"
    );

    let (code, out, err) = cluster.vantagectl(&[2], &["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("mx") && out.contains("OK") && out.contains("ru=up"),
        "{out}"
    );
}
