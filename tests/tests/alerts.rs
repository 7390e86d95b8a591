//! Alert fan-out end to end: three coordinators, agents in three regions
//! on distinct loopback sources, a testkit SMTP target that fails per
//! source address, and a recording HTTP receiver behind every sink.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use vantage_proto::v1::{GetIncidentRequest, IncidentInfo, ListIncidentsRequest};
use vantage_tests::cluster::{Cluster, REGIONS, Timers, wait_for};
use vantage_tests::receiver::{Behaviour, Receiver};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Mesh {
    cluster: Cluster,
    server: SmtpServer,
    receiver: Receiver,
    secrets: tempfile::TempDir,
}

/// A 3-node cluster, an SMTP target checked every 5 s from ru/eu/us, and
/// `alerting` (channels and routes, `{R}` replaced by the receiver's base
/// URL, `{S}` by a directory for secret files) applied with the check.
async fn mesh(alerting: &str) -> Mesh {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let port = server.addr.port();
    let toml = format!(
        "[[check]]\nname = \"mx\"\nkind = \"smtp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\nlabels = {{ team = \"mail\" }}\nparams = {{ port = {port}, tls = \"none\" }}\n{}",
        alerting
            .replace("{R}", &receiver.url(""))
            .replace("{S}", &secrets.path().display().to_string())
    );
    let mut mesh = Mesh {
        cluster,
        server,
        receiver,
        secrets,
    };
    mesh.cluster.apply(&toml).await.unwrap();
    mesh.cluster.spawn_regions().await.unwrap();
    mesh
}

impl Mesh {
    fn block(&self, sources: &[&str], blocked: bool) {
        for s in sources {
            self.server.block_from(ip(s), blocked);
        }
    }

    /// The open (or, with `all`, latest) incident of `mx` seen through any live node.
    async fn incident(&self) -> Option<IncidentInfo> {
        for id in self.cluster.ids() {
            let Ok(mut op) = self.cluster.operator(id) else {
                continue;
            };
            if let Ok(r) = op.list_incidents(ListIncidentsRequest { all: true }).await {
                let first = r.into_inner().incidents.into_iter().next()?;
                let full = op
                    .get_incident(GetIncidentRequest { id: first.id })
                    .await
                    .ok()?;
                return Some(full.into_inner());
            }
        }
        None
    }

    async fn wait_incident<F: Fn(&IncidentInfo) -> bool>(&self, what: &str, f: F) -> IncidentInfo {
        wait_for(what, || async {
            let i = self.incident().await?;
            f(&i).then_some(i)
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}; last: {:#?}",
                futures::executor::block_on(self.incident())
            )
        })
    }
}

fn delivered(i: &IncidentInfo, key: &str) -> bool {
    i.deliveries
        .iter()
        .any(|d| d.key == key && d.state == "delivered")
}

fn story(i: &IncidentInfo) -> Vec<String> {
    i.timeline.iter().map(|e| e.what.clone()).collect()
}

#[tokio::test]
async fn regional_notice_no_page_then_one_page_per_channel_and_one_resolution() {
    let alerting = r#"
[[channel]]
name = "chat"
kind = "webhook"
settings = { url = "{R}chat", secret_file = "{S}/hmac" }

[[channel]]
name = "pager"
kind = "pagerduty"
settings = { url = "{R}pd", routing_key_file = "{S}/pd" }

[[channel]]
name = "am"
kind = "alertmanager"
settings = { url = "{R}" }

[[channel]]
name = "flaky"
kind = "webhook"
settings = { url = "{R}flaky" }

[[channel]]
name = "stuck"
kind = "webhook"
settings = { url = "{R}stuck", timeout = "2s" }

[[route]]
name = "notices"
match = { team = "mail" }
severities = ["info"]
channels = ["chat"]

[[route]]
name = "oncall"
match = { team = "mail" }
channels = ["chat", "pager", "am", "flaky", "stuck"]
"#;
    let m = mesh(alerting).await;
    std::fs::write(m.secrets.path().join("hmac"), "hmac-secret\n").unwrap();
    std::fs::write(m.secrets.path().join("pd"), "pd-routing-key\n").unwrap();
    m.receiver.set("/flaky", Behaviour::FailTimes(2));
    m.receiver.set("/stuck", Behaviour::Hang);

    // Blocked from RU only: a REGIONAL notice to the info route, no page.
    m.block(&["127.0.0.11"], true);
    let i = m
        .wait_incident("the REGIONAL notice delivered to chat", |i| {
            i.verdict == "regional" && i.deliveries.iter().any(|d| d.state == "delivered")
        })
        .await;
    let id = i.id;
    let queued: Vec<&str> = i.deliveries.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        queued,
        [format!("{id}/info/chat")],
        "no page for a regional fault"
    );
    assert!(m.receiver.received("/pd").is_empty());
    assert!(m.receiver.received("/stuck").is_empty());

    // Down for everyone: an outage; each channel paged once.
    m.block(&["127.0.0.12", "127.0.0.13"], true);
    let page = format!("{id}/critical/");
    let i = m
        .wait_incident("the outage page delivered to chat, pager, am, flaky", |i| {
            ["chat", "pager", "am", "flaky"]
                .iter()
                .all(|c| delivered(i, &format!("{page}{c}")))
        })
        .await;
    // A receiver that hangs delays nothing else: it is still being retried.
    let stuck = i
        .deliveries
        .iter()
        .find(|d| d.channel == "stuck")
        .unwrap()
        .clone();
    assert_ne!(stuck.state, "delivered", "{stuck:?}");
    let flaky = i.deliveries.iter().find(|d| d.channel == "flaky").unwrap();
    assert_eq!(flaky.attempts, 2, "two 500s, then accepted: {flaky:?}");
    wait_for("stuck retried after its deadline", || async {
        let i = m.incident().await?;
        let d = i.deliveries.iter().find(|d| d.channel == "stuck")?.clone();
        (d.attempts >= 1 && d.last_error.contains("no answer within 2s")).then_some(())
    })
    .await
    .unwrap();
    m.receiver.set("/stuck", Behaviour::Accept);

    // Back for everyone: one resolution per channel that was told.
    m.block(&["127.0.0.11", "127.0.0.12", "127.0.0.13"], false);
    let resolved = format!("{id}/resolved/");
    let i = m
        .wait_incident("resolutions delivered everywhere", |i| {
            i.resolved_ms.is_some()
                && ["chat", "pager", "am", "flaky", "stuck"]
                    .iter()
                    .all(|c| delivered(i, &format!("{resolved}{c}")))
        })
        .await;
    assert!(
        story(&i).iter().any(|s| s == "delivered to pager"),
        "{:?}",
        story(&i)
    );

    // What the receivers saw: exactly one accepted request per key.
    for (path, channel) in [("/chat", "chat"), ("/flaky", "flaky"), ("/stuck", "stuck")] {
        let accepted: Vec<_> = m
            .receiver
            .received(path)
            .into_iter()
            .filter(|r| r.answered == 200)
            .collect();
        let keys: BTreeSet<String> = accepted.iter().filter_map(|r| r.key.clone()).collect();
        assert_eq!(accepted.len(), keys.len(), "{path}: a key accepted twice");
        assert!(
            keys.contains(&format!("{page}{channel}")),
            "{path}: {keys:?}"
        );
        assert!(
            keys.contains(&format!("{resolved}{channel}")),
            "{path}: {keys:?}"
        );
    }
    let chat = m.receiver.accepted_keys("/chat");
    assert_eq!(chat.len(), 3, "notice, page, resolution: {chat:?}");
    // Signed with the secret read from its file; the body is the message.
    for r in m.receiver.received("/chat") {
        let sig = vantage_coordinator::alert::webhook::sign(b"hmac-secret", &r.body);
        assert_eq!(r.signature.as_deref(), Some(sig.as_str()));
        assert_eq!(r.json()["check"], "mx");
    }
    // PagerDuty: one trigger and one resolve, same dedup_key, the key from its file.
    let pd: Vec<serde_json::Value> = m
        .receiver
        .received("/pd")
        .iter()
        .map(|r| r.json())
        .collect();
    let actions: Vec<&str> = pd
        .iter()
        .map(|b| b["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"], "{pd:?}");
    assert_eq!(pd[0]["dedup_key"], pd[1]["dedup_key"]);
    assert_eq!(pd[0]["routing_key"], "pd-routing-key");
    assert_eq!(pd[0]["payload"]["severity"], "critical");
    // Alertmanager: one firing post, one resolving post.
    let am = m.receiver.received("/api/v2/alerts");
    assert_eq!(am.len(), 2, "{am:?}");
    let firing = am[0].json();
    let critical = firing
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["severity"] == "critical")
        .unwrap();
    assert_eq!(critical["labels"]["check"], "mx");
    assert_eq!(critical["labels"]["team"], "mail");
    // Secrets never reach the replicated state or listings.
    let (code, out, err) = m
        .cluster
        .vantagectl(&[2], &["incidents", "show", &id.to_string(), "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("pd-routing-key") && !out.contains("hmac-secret"));
    let (_, out, _) = m
        .cluster
        .vantagectl(&[1], &["checks", "list", "-o", "json"])
        .await;
    assert!(!out.contains("pd-routing-key"));
}

#[tokio::test]
async fn leader_loss_before_and_during_delivery_loses_and_duplicates_nothing() {
    let alerting = r#"
[[channel]]
name = "hook"
kind = "webhook"
settings = { url = "{R}hook", timeout = "3s" }

[[route]]
name = "all"
channels = ["hook"]
"#;
    let mut m = mesh(alerting).await;
    // The receiver refuses at first: the page stays in the outbox.
    m.receiver.set("/hook", Behaviour::FailTimes(u32::MAX));
    m.block(&["127.0.0.11", "127.0.0.12", "127.0.0.13"], true);
    let i = m
        .wait_incident("the page queued and tried", |i| {
            i.verdict == "outage" && i.deliveries.iter().any(|d| d.attempts >= 1)
        })
        .await;
    let key = format!("{}/critical/hook", i.id);

    // The leader dies after the verdict, before any delivery.
    let first = m.cluster.wait_for_leader(&m.cluster.ids()).await.unwrap();
    m.cluster.kill(first).await.unwrap();
    m.receiver.set("/hook", Behaviour::Hang);
    let before = m.receiver.received("/hook").len();
    let live: Vec<u64> = m
        .cluster
        .ids()
        .into_iter()
        .filter(|n| *n != first)
        .collect();
    let second = m.cluster.wait_for_leader(&live).await.unwrap();
    wait_for("the new leader sending the same key", || async {
        let r = m.receiver.received("/hook");
        (r.len() > before && r.last()?.key.as_deref() == Some(key.as_str())).then_some(())
    })
    .await
    .unwrap();

    // ...and the next leader dies in the middle of a delivery.
    m.cluster.spawn(first).await.unwrap();
    let leader = m.cluster.wait_for_leader(&m.cluster.ids()).await.unwrap();
    assert_eq!(leader, second);
    m.cluster.kill(second).await.unwrap();
    m.receiver.set("/hook", Behaviour::Accept);
    let i = m
        .wait_incident("the page delivered by a third leader", |i| {
            delivered(i, &key)
        })
        .await;

    // Recovery: the resolution goes out once too.
    m.block(&["127.0.0.11", "127.0.0.12", "127.0.0.13"], false);
    let resolved = format!("{}/resolved/hook", i.id);
    m.wait_incident("the resolution delivered", |i| delivered(i, &resolved))
        .await;
    let accepted = m.receiver.accepted_keys("/hook");
    assert_eq!(
        accepted,
        BTreeSet::from([key.clone(), resolved.clone()]),
        "none missing, nothing else"
    );
    for (k, n) in m.receiver.keys("/hook") {
        assert!(k == key || k == resolved, "unexpected key {k} ({n} times)");
    }
    let accepted_page = m
        .receiver
        .received("/hook")
        .into_iter()
        .filter(|r| r.answered == 200 && r.key.as_deref() == Some(key.as_str()))
        .count();
    assert_eq!(accepted_page, 1, "the dedup receiver took the page once");
}

#[tokio::test]
async fn silence_holds_the_page_until_it_ends_and_test_alerts_go_end_to_end() {
    let alerting = r#"
[[channel]]
name = "hook"
kind = "webhook"
settings = { url = "{R}hook" }

[[route]]
name = "all"
channels = ["hook"]
"#;
    let m = mesh(alerting).await;
    let (code, out, err) = m
        .cluster
        .vantagectl(&[1], &["alerts", "test", "hook"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("test alert sent to hook"), "{out}");
    let test = m.receiver.received("/hook");
    assert_eq!(test.len(), 1);
    assert!(
        test[0]
            .key
            .as_deref()
            .unwrap_or("")
            .starts_with("test/hook/")
    );
    assert_eq!(test[0].json()["test"], true);
    assert!(
        test[0].json()["title"]
            .as_str()
            .unwrap()
            .starts_with("[TEST]")
    );
    let (code, _, err) = m
        .cluster
        .vantagectl(&[1], &["alerts", "test", "nope"])
        .await;
    assert!(code != 0 && err.contains("no channel named"), "{err}");

    let (code, out, err) = m
        .cluster
        .vantagectl(
            &[2],
            &[
                "silence",
                "add",
                "--match",
                "check=mx",
                "--for",
                "1h",
                "--comment",
                "upgrade",
            ],
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("silence 1 added"), "{out}");
    m.block(&["127.0.0.11", "127.0.0.12", "127.0.0.13"], true);
    let i = m
        .wait_incident("the page held back", |i| {
            i.verdict == "outage"
                && story(i)
                    .iter()
                    .any(|s| s.starts_with("held back by silence 1"))
        })
        .await;
    assert!(i.deliveries.is_empty(), "{:?}", i.deliveries);
    assert_eq!(m.receiver.received("/hook").len(), 1, "only the test alert");
    let (_, out, _) = m.cluster.vantagectl(&[3], &["silence", "list"]).await;
    assert!(
        out.contains("check=mx") && out.contains("upgrade") && out.contains("yes"),
        "{out}"
    );

    // The silence ends while the outage goes on: the page goes out.
    let (code, _, err) = m
        .cluster
        .vantagectl(&[3], &["silence", "expire", "1"])
        .await;
    assert_eq!(code, 0, "{err}");
    let key = format!("{}/critical/hook", i.id);
    m.wait_incident("the page after the silence", |i| delivered(i, &key))
        .await;
    assert_eq!(m.receiver.keys("/hook").get(&key), Some(&1));
}

#[tokio::test]
async fn a_flapping_target_pages_nobody() {
    let alerting = r#"
[[channel]]
name = "hook"
kind = "webhook"
settings = { url = "{R}hook" }

[[route]]
name = "all"
severities = ["critical", "warning", "info"]
channels = ["hook"]
"#;
    let m = mesh(alerting).await;
    wait_for("all regions up", || async {
        let s = m
            .cluster
            .operator(1)
            .ok()?
            .status(vantage_proto::v1::StatusRequest::default())
            .await
            .ok()?
            .into_inner();
        s.checks
            .first()?
            .regions
            .iter()
            .all(|r| r.state == "up")
            .then_some(())
    })
    .await
    .unwrap();
    // Every region sees pass, fail, pass, fail... (retries included).
    for (_, _, source) in REGIONS {
        m.server.flap_from(ip(source), true);
    }
    let failures_everywhere = wait_for("at least three failures seen from each region", || async {
        let (_, out, _) = m
            .cluster
            .vantagectl(&[1], &["results", "mx", "--recent", "100", "-o", "json"])
            .await;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let recent = v["recent"].as_array()?;
        REGIONS
            .iter()
            .all(|(_, region, _)| {
                recent
                    .iter()
                    .filter(|r| r["region"] == *region && r["status"] == "fail")
                    .count()
                    >= 3
            })
            .then_some(())
    })
    .await;
    failures_everywhere.unwrap();
    for (_, _, source) in REGIONS {
        m.server.flap_from(ip(source), false);
    }
    let incidents = m.cluster.incidents(2, true).await.unwrap();
    assert!(
        incidents.is_empty(),
        "no incident for a flapping target: {incidents:?}"
    );
    assert!(
        m.receiver.received("/hook").is_empty(),
        "no notification at all"
    );
}
