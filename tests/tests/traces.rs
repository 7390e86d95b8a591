//! OpenTelemetry traces end to end: coordinators and agents export over
//! OTLP/gRPC to a recording collector, and the page an outage causes
//! continues the trace of the probe that saw it (agent `probe` →
//! coordinator `ingest` → `deliver` → the receiver's `traceparent`).

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_tests::cluster::{Cluster, REGIONS, Timers, wait_for};
use vantage_tests::otlp::{Collector, SpanRecord};
use vantage_tests::receiver::Receiver;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn find<'a>(spans: &'a [SpanRecord], trace: &str, span_id: &str) -> Option<&'a SpanRecord> {
    spans
        .iter()
        .find(|s| s.trace_id == trace && s.span_id == span_id)
}

#[tokio::test]
async fn a_page_continues_the_trace_of_the_probe_that_saw_the_outage() {
    let collector = Collector::start().await.unwrap();
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let mut cluster = Cluster::new(Timers::default())
        .unwrap()
        .with_env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())
        .started(3)
        .await
        .unwrap();
    let port = server.addr.port();
    cluster
        .apply(&format!(
            "[[check]]\nname = \"mx\"\nkind = \"smtp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\nparams = {{ port = {port}, tls = \"none\" }}\n\n[[channel]]\nname = \"pager\"\nkind = \"webhook\"\nsettings = {{ url = \"{}\" }}\n\n[[route]]\nname = \"pages\"\nseverities = [\"critical\"]\nchannels = [\"pager\"]\n",
            receiver.url("pager")
        ))
        .await
        .unwrap();
    cluster.spawn_regions().await.unwrap();

    // Probes are traced from the start, each by its agent, and continued
    // by the coordinator that takes in their results.
    wait_for("probe spans continued from every region", || async {
        let spans = collector.spans();
        let regions: std::collections::BTreeSet<&str> = spans
            .iter()
            .filter(|s| s.service == "vantage-coordinator" && s.name == "ingest")
            .filter(|ingest| {
                spans.iter().any(|p| {
                    p.span_id == ingest.parent_id
                        && p.name == "probe"
                        && p.attributes.get("check").is_some_and(|c| c == "mx")
                        && p.attributes.get("kind").is_some_and(|k| k == "smtp")
                })
            })
            .filter_map(|s| s.attributes.get("region").map(String::as_str))
            .collect();
        (regions.len() == REGIONS.len()).then_some(())
    })
    .await
    .unwrap();

    // The mail server goes away for everyone: one page.
    for (_, _, source) in REGIONS {
        server.block_from(source.parse().unwrap(), true);
    }
    let page = wait_for("the page", || async {
        receiver
            .received("/pager")
            .into_iter()
            .find(|r| r.answered == 200)
    })
    .await
    .unwrap();
    assert_eq!(page.json()["verdict"], "outage", "{}", page.json());
    assert!(page.json().get("trace").is_none(), "{}", page.json());
    let traceparent = page.traceparent.clone().expect("a traceparent header");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    let (trace, deliver_id) = (parts[1].to_owned(), parts[2].to_owned());

    // That trace holds the chain probe → ingest → deliver, across processes.
    let chain = wait_for("the page's trace at the collector", || async {
        let spans = collector.spans();
        let deliver = find(&spans, &trace, &deliver_id)?.clone();
        let ingest = find(&spans, &trace, &deliver.parent_id)?.clone();
        let probe = find(&spans, &trace, &ingest.parent_id)?.clone();
        Some((deliver, ingest, probe))
    })
    .await
    .unwrap();
    let (deliver, ingest, probe) = chain;
    assert_eq!(
        (deliver.service.as_str(), deliver.name.as_str()),
        ("vantage-coordinator", "deliver")
    );
    assert_eq!(
        deliver.attributes.get("channel").map(String::as_str),
        Some("pager")
    );
    assert_eq!(
        (ingest.service.as_str(), ingest.name.as_str()),
        ("vantage-coordinator", "ingest")
    );
    assert_eq!(
        ingest.attributes.get("check").map(String::as_str),
        Some("mx")
    );
    assert_eq!(
        ingest.attributes.get("status").map(String::as_str),
        Some("fail")
    );
    assert_eq!(
        (probe.service.as_str(), probe.name.as_str()),
        ("vantage-agent", "probe")
    );
    assert_eq!(
        probe.attributes.get("status").map(String::as_str),
        Some("fail")
    );
    assert_eq!(probe.parent_id, "", "a probe starts its own trace");
    // Each process says who it is; the probe came from the ingested region.
    let instance = |s: &SpanRecord| s.resource.get("service.instance.id").cloned();
    assert!(
        instance(&deliver).is_some_and(|i| i.starts_with("coordinator-")),
        "{deliver:?}"
    );
    assert_eq!(
        probe.resource.get("vantage.region"),
        ingest.attributes.get("region"),
        "{probe:?} {ingest:?}"
    );
    assert_eq!(instance(&probe), ingest.attributes.get("agent").cloned());
    assert!(
        REGIONS.iter().any(
            |(_, region, _)| ingest.attributes.get("region").map(String::as_str) == Some(region)
        ),
        "{ingest:?}"
    );
}
