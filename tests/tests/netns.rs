//! The real-network suite (root only; skipped with the reason printed
//! elsewhere): every coordinator and every region's agent in its own
//! network namespace, joined to a bridge in the core namespace, where the
//! mail target and the alert receiver live (coordinators by veth pairs,
//! regions through delay lines: 60/30/90 ms round trips, 0.5 % loss). Routes are
//! withdrawn and links cut for real: RU loses its route to the mail server
//! ⇒ REGIONAL; the mail server goes down ⇒ one page; the leader's namespace
//! is cut off ⇒ a new leader, no lost results, no second page; heal ⇒ the
//! old leader converges.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use vantage_proto::v1::{GetResultsRequest, ListAgentsRequest};
use vantage_tests::cluster::{Cluster, REGIONS, Timers, wait_for};
use vantage_tests::netns::{HUB, Net, Shape, TARGET};
use vantage_tests::receiver::Receiver;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

/// A region's link: round trip `rtt_ms` to the core, 0.5 % loss each way.
fn far(rtt_ms: u64) -> Option<Shape> {
    Some(Shape {
        delay: Duration::from_millis(rtt_ms / 2),
        loss: 0.005,
    })
}

/// Coordinators next to each other; regions 60/30/90 ms away, lossy.
fn hosts() -> [(&'static str, Ipv4Addr, Option<Shape>); 6] {
    [
        ("c1", Ipv4Addr::new(10, 77, 0, 11), None),
        ("c2", Ipv4Addr::new(10, 77, 0, 12), None),
        ("c3", Ipv4Addr::new(10, 77, 0, 13), None),
        ("ru", Ipv4Addr::new(10, 77, 0, 21), far(60)),
        ("eu", Ipv4Addr::new(10, 77, 0, 22), far(30)),
        ("us", Ipv4Addr::new(10, 77, 0, 23), far(90)),
    ]
}

async fn wait_verdict(cluster: &Cluster, nodes: &[u64], expected: &str, down: &[&str]) {
    cluster
        .wait_verdict(nodes, "mx", expected, down)
        .await
        .unwrap();
}

/// Per agent: (highest seq applied, results applied), as node `via` sees it.
async fn applied(cluster: &Cluster, via: u64) -> Option<BTreeMap<String, (u64, u64)>> {
    let reply = cluster
        .operator(via)
        .ok()?
        .list_agents(ListAgentsRequest {})
        .await
        .ok()?
        .into_inner();
    Some(
        reply
            .agents
            .into_iter()
            .map(|a| (a.name, (a.applied_seq, a.applied_results)))
            .collect(),
    )
}

// Several threads: the delay lines should not wait behind the harness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_and_coordinators_on_a_real_network() {
    let net = match Net::create(&hosts()) {
        Ok(net) => net,
        Err(why) if std::env::var_os("VANTAGE_REQUIRE_NETNS").is_some() => {
            panic!("VANTAGE_REQUIRE_NETNS is set but {why}")
        }
        Err(why) => {
            eprintln!("real-network suite skipped: {why}");
            return;
        }
    };
    let server = SmtpServer::start_on(SocketAddr::from((TARGET, 0)), SmtpScript::default())
        .await
        .unwrap();
    let receiver = Receiver::start_on(SocketAddr::from((HUB, 0)))
        .await
        .unwrap();
    let mut cluster = Cluster::new(Timers::default()).unwrap();
    for id in 1..=3u64 {
        let host = net.host(&format!("c{id}")).unwrap();
        cluster = cluster.place_node(id, &host.netns, host.ip.into());
    }
    for (name, region, _) in REGIONS {
        cluster = cluster.place_agent(name, &net.host(region).unwrap().netns);
    }
    let mut cluster = cluster.started(3).await.unwrap();
    let port = server.addr.port();
    cluster
        .apply(&format!(
            "[[check]]\nname = \"mx\"\nkind = \"smtp\"\ntarget = \"{TARGET}\"\ninterval = \"5s\"\ntimeout = \"3s\"\nregions = [\"ru\", \"eu\", \"us\"]\nparams = {{ port = {port}, tls = \"none\" }}\n\n[[channel]]\nname = \"pager\"\nkind = \"webhook\"\nsettings = {{ url = \"{}\" }}\n\n[[route]]\nname = \"pages\"\nseverities = [\"critical\"]\nchannels = [\"pager\"]\n",
            receiver.url("pager")
        ))
        .await
        .unwrap();
    for (name, region, _) in REGIONS {
        let source = net.host(region).unwrap().ip.to_string();
        cluster
            .spawn_agent(name, region, &source, &[])
            .await
            .unwrap();
    }
    let all = [1, 2, 3];
    wait_verdict(&cluster, &all, "ok", &[]).await;

    // The links are as far as configured: an SMTP dialogue takes several
    // round trips, so no region's probe can be quicker than one.
    for (region, rtt_ms) in [("ru", 60), ("eu", 30), ("us", 90)] {
        let took = wait_for(&format!("a result from {region}"), || async {
            let reply = cluster
                .operator(1)
                .ok()?
                .get_results(GetResultsRequest {
                    check: "mx".into(),
                    region: region.into(),
                    recent: 0,
                })
                .await
                .ok()?
                .into_inner();
            reply.latest.first().map(|r| r.duration_ms)
        })
        .await
        .unwrap();
        assert!(
            took >= rtt_ms,
            "{region}: probe took {took} ms over a {rtt_ms} ms round trip"
        );
        eprintln!("{region}: SMTP probe over a {rtt_ms} ms round trip took {took} ms");
    }

    // RU loses its route to the mail server: a regional fault.
    net.unroute("ru", TARGET, true).unwrap();
    wait_verdict(&cluster, &all, "regional", &["ru"]).await;
    net.unroute("ru", TARGET, false).unwrap();
    wait_verdict(&cluster, &all, "ok", &[]).await;
    assert!(
        receiver.received("/pager").is_empty(),
        "a regional fault pages nobody"
    );

    // The mail server goes down for every region: an outage, paged.
    for (_, region, _) in REGIONS {
        server.block_from(net.host(region).unwrap().ip.into(), true);
    }
    wait_verdict(&cluster, &all, "outage", &["eu", "ru", "us"]).await;
    wait_for("the page", || async {
        (!receiver.accepted_keys("/pager").is_empty()).then_some(())
    })
    .await
    .unwrap();

    // The leader's namespace is cut off the network, once the page is
    // recorded as delivered on the nodes that stay (until then a new
    // leader would rightly send it again, same key).
    let old = cluster.wait_for_leader(&all).await.unwrap();
    let rest: Vec<u64> = all.into_iter().filter(|id| *id != old).collect();
    for id in &rest {
        wait_for(
            &format!("the page recorded as delivered on node {id}"),
            || async {
                let incidents = cluster.incidents(*id, false).await?;
                let incident = incidents.into_iter().find(|i| i.check == "mx")?;
                incident
                    .deliveries
                    .iter()
                    .any(|d| d.channel == "pager" && d.state == "delivered")
                    .then_some(())
            },
        )
        .await
        .unwrap();
    }
    let before = wait_for("agents' progress", || applied(&cluster, rest[0]))
        .await
        .unwrap();
    net.cut(&format!("c{old}"), true).unwrap();
    let new = cluster.wait_for_leader(&rest).await.unwrap();
    assert_ne!(new, old);
    // Every agent finds the new leader and its results go on being applied.
    wait_for("every agent's results applied after the cut", || async {
        let now = applied(&cluster, new).await?;
        REGIONS
            .iter()
            .all(|(name, _, _)| now.get(*name).map(|a| a.0) > before.get(*name).map(|b| b.0 + 2))
            .then_some(())
    })
    .await
    .unwrap();

    // The mail server recovers under the new leader: resolved, once.
    for (_, region, _) in REGIONS {
        server.block_from(net.host(region).unwrap().ip.into(), false);
    }
    wait_verdict(&cluster, &rest, "ok", &[]).await;
    wait_for("the resolution", || async {
        let keys = receiver.accepted_keys("/pager");
        keys.iter().any(|k| k.contains("/resolved/")).then_some(())
    })
    .await
    .unwrap();

    // Healed: the old leader rejoins and converges.
    net.cut(&format!("c{old}"), false).unwrap();
    cluster.wait_for_leader(&all).await.unwrap();
    wait_verdict(&cluster, &[old], "ok", &[]).await;
    let target = cluster.status(new).await.unwrap().applied_index.unwrap();
    cluster.wait_applied(old, target).await.unwrap();

    // Nothing lost, nothing applied twice, on any node: each agent's
    // results applied equal its highest sequence number.
    for id in all {
        let agents = wait_for("agents list", || applied(&cluster, id))
            .await
            .unwrap();
        for (name, _, _) in REGIONS {
            let (seq, results) = agents[name];
            assert_eq!(seq, results, "node {id}, agent {name}: {agents:?}");
        }
    }
    // One page and one resolution, each accepted exactly once.
    let keys = receiver.keys("/pager");
    let accepted = receiver.accepted_keys("/pager");
    assert_eq!(accepted.len(), 2, "{keys:?}");
    assert!(
        accepted.iter().any(|k| k.contains("/critical/")),
        "{keys:?}"
    );
    for key in &accepted {
        let answered: usize = receiver
            .received("/pager")
            .iter()
            .filter(|r| r.key.as_deref() == Some(key) && r.answered == 200)
            .count();
        assert_eq!(answered, 1, "{key} accepted {answered} times: {keys:?}");
    }
    drop(cluster); // its processes go before their namespaces
    drop(net);
}
