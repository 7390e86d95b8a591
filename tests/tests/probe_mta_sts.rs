//! `vantage-agent probe mta-sts` and `probe tlsrpt` against a testkit DNS
//! zone, the testkit HTTPS server serving the policy and the testkit SMTP
//! server as the MX host. The policy host and the MX listen on ports 443
//! and 25 of their own loopback addresses, which needs root: without it
//! the MTA-STS test says why it skips (a failure under
//! `VANTAGE_REQUIRE_NETNS`, as CI sets as root).

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use serde_json::Value;
use vantage_tests::agent::probe;
use vantage_tests::certs::{CaFile, Validity};
use vantage_tests::dns::DnsServer;
use vantage_tests::https::{HttpsServer, Response};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

const MX: [u8; 4] = [127, 0, 25, 1];
const POLICY: [u8; 4] = [127, 0, 25, 2];

const ZONE: &str = r#"
$ORIGIN sts.test.
@        3600 IN SOA ns.sts.test. hostmaster.sts.test. 1 3600 600 86400 300
@             IN NS  ns
ns            IN A   127.0.0.1
@             IN MX  10 mx
mx            IN A   127.0.25.1
mta-sts       IN A   127.0.25.2
_mta-sts      IN TXT "v=STSv1; id=20261201T000000"
_smtp._tls    IN TXT "v=TLSRPTv1; rua=mailto:tls-reports@sts.test,https://reports.sts.test/v1"
"#;

const PLAIN: &str = r#"
$ORIGIN plain.test.
@        3600 IN SOA ns.plain.test. hostmaster.plain.test. 1 3600 600 86400 300
@             IN NS  ns
ns            IN A   127.0.0.1
@             IN MX  10 mx
mx            IN A   127.0.25.1
_smtp._tls    IN TXT "v=TLSRPTv1; rua=ftp://reports.plain.test"
"#;

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 604800\r\n")
}

fn status_class(j: &Value) -> (&str, &str) {
    (
        j["status"].as_str().unwrap_or_default(),
        j["class"].as_str().unwrap_or_default(),
    )
}

/// Binds what needs root, or says why not.
async fn privileged<T, E: std::fmt::Display>(
    what: &str,
    bound: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    match bound.await {
        Ok(s) => Some(s),
        Err(e) if std::env::var_os("VANTAGE_REQUIRE_NETNS").is_some() => {
            panic!("VANTAGE_REQUIRE_NETNS is set but {what} cannot be bound: {e}")
        }
        Err(e) => {
            println!("SKIP: MTA-STS needs {what} (root): {e}");
            None
        }
    }
}

#[tokio::test]
async fn policies_are_fetched_parsed_and_held_against_every_mx_host() {
    let ca = CaFile::new("vantage MTA-STS CA").unwrap();
    let config = |name: &str| {
        ca.issue(&[name], Validity::GOOD)
            .unwrap()
            .server_config()
            .unwrap()
    };
    let Some(mx) = privileged(
        "port 25 of 127.0.25.1",
        SmtpServer::start_on(
            SocketAddr::from((MX, 25)),
            SmtpScript::with_starttls(config("mx.sts.test")),
        ),
    )
    .await
    else {
        return;
    };
    let Some(web) = privileged(
        "port 443 of 127.0.25.2",
        HttpsServer::start(
            SocketAddr::from((POLICY, 443)),
            config("mta-sts.sts.test"),
            Response::text(&policy("enforce", "mx.sts.test")),
        ),
    )
    .await
    else {
        return;
    };
    let dns = DnsServer::start(&[ZONE, PLAIN]).await.unwrap();
    let resolver = dns.addr.to_string();
    let run = |domain: &'static str, extra: &'static [&'static str]| {
        let (resolver, ca) = (resolver.clone(), ca.path().to_owned());
        async move {
            let mut args = vec![
                "mta-sts",
                domain,
                "--resolver",
                &resolver,
                "--ca-file",
                &ca,
                "-o",
                "json",
            ];
            args.extend_from_slice(extra);
            probe(&args).await
        }
    };

    // enforce, and the MX matches and presents a valid certificate.
    let r = run("sts.test", &[]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["details"]["mode"], "enforce", "{j}");
    assert_eq!(j["details"]["id"], "20261201T000000", "{j}");
    assert_eq!(j["details"]["mx"][0]["pattern"], "mx.sts.test", "{j}");
    assert_eq!(j["details"]["mx"][0]["certificate"], "valid", "{j}");
    assert_eq!(web.paths(), ["/.well-known/mta-sts.txt"]);
    // The MX dialogue ends politely, not with a dropped connection.
    let said = mx.seen.commands.lock().unwrap().clone();
    assert_eq!(said.last().map(String::as_str), Some("QUIT"), "{said:?}");

    // A wildcard matches one label.
    web.set(Response::text(&policy("enforce", "*.sts.test")));
    assert_eq!(run("sts.test", &[]).await.code, 0);

    // testing: a warning.
    web.set(Response::text(&policy("testing", "mx.sts.test")));
    let r = run("sts.test", &[]).await;
    assert_eq!(status_class(&r.json()), ("warn", "policy"), "{r:?}");

    // enforce, but the MX is not in the policy: a failure naming it.
    web.set(Response::text(&policy("enforce", "other.sts.test")));
    let r = run("sts.test", &[]).await;
    assert_eq!(r.code, 2, "{r:?}");
    let j = r.json();
    assert_eq!(status_class(&j), ("fail", "policy"), "{j}");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("mx.sts.test matches no mx pattern"),
        "{j}"
    );

    // A malformed policy.
    web.set(Response::text(
        "<html><body>Welcome to nginx!</body></html>",
    ));
    let r = run("sts.test", &[]).await;
    let j = r.json();
    assert_eq!(status_class(&j), ("fail", "policy"), "{j}");
    assert!(j["message"].as_str().unwrap().contains("malformed"), "{j}");

    // A redirect is refused, not followed.
    web.set(Response::redirect("https://elsewhere.sts.test/policy.txt"));
    let before = web.paths().len();
    let r = run("sts.test", &[]).await;
    let j = r.json();
    assert_eq!(status_class(&j), ("fail", "policy"), "{j}");
    assert!(j["message"].as_str().unwrap().contains("redirects"), "{j}");
    assert_eq!(web.paths().len(), before + 1, "the redirect was followed");

    // No record: a pass saying so, unless required.
    let r = run("plain.test", &[]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.json()["message"].as_str().unwrap().contains("no MTA-STS"));
    let r = run("plain.test", &["--require"]).await;
    assert_eq!(status_class(&r.json()), ("fail", "policy"), "{r:?}");
}

#[tokio::test]
async fn tls_reporting_records_are_checked() {
    let dns = DnsServer::start(&[ZONE, PLAIN]).await.unwrap();
    let resolver = dns.addr.to_string();
    let run = |domain: &'static str, require: bool| {
        let resolver = resolver.clone();
        async move {
            let mut args = vec!["tlsrpt", domain, "--resolver", &resolver, "-o", "json"];
            if require {
                args.push("--require");
            }
            probe(&args).await
        }
    };
    let r = run("sts.test", false).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.json()["details"]["rua"],
        serde_json::json!(["mailto:tls-reports@sts.test", "https://reports.sts.test/v1"])
    );
    // An rua that is neither mailto: nor https: makes the record malformed.
    let r = run("plain.test", false).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(status_class(&r.json()), ("fail", "policy"), "{r:?}");
    // None at all: a pass saying so, unless required.
    let dns_none = DnsServer::start(&[ZONE.replace("_smtp._tls", "_other").as_str()])
        .await
        .unwrap();
    let resolver = dns_none.addr.to_string();
    let args = ["tlsrpt", "sts.test", "--resolver", &resolver, "-o", "json"];
    let r = probe(&args).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.json()["message"].as_str().unwrap().contains("no TLS-RPT"));
    let r = probe(&[&args[..], &["--require"]].concat()).await;
    assert_eq!(r.code, 2, "{r:?}");
}
