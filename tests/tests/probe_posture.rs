//! TLS posture of `smtp` and `tls` probes against testkit servers: what
//! was negotiated and what the chain is made of, and the rules that warn
//! — TLS 1.0/1.1 still accepted, an RSA key below the threshold, a chain
//! signed with SHA-1, AUTH offered before STARTTLS — each switched off by
//! `--allow`.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rustls::ServerConfig;
use vantage_tests::agent::{Run, probe};
use vantage_tests::certs::{CaFile, Validity, fixture_config};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

struct Fixture {
    ca: CaFile,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            ca: CaFile::new("vantage test CA").unwrap(),
        }
    }

    fn tls(&self) -> Arc<ServerConfig> {
        self.ca
            .issue(&["mx.test"], Validity::GOOD)
            .unwrap()
            .server_config()
            .unwrap()
    }

    fn ca_file(&self) -> String {
        self.ca.path().to_owned()
    }

    async fn run(&self, kind: &str, server: &SmtpServer, extra: &[&str]) -> Run {
        let port = server.addr.port().to_string();
        let ca_file = self.ca_file();
        let mut args = vec![
            kind,
            "127.0.0.1",
            "--port",
            &port,
            "--tls-name",
            "mx.test",
            "-o",
            "json",
        ];
        if kind == "tls" {
            args.extend_from_slice(&["--ca-file", &ca_file]);
        }
        args.extend_from_slice(extra);
        probe(&args).await
    }
}

fn verdict(r: &Run) -> (String, String) {
    let j = r.json();
    (
        j["status"].as_str().unwrap_or("").into(),
        j["class"].as_str().unwrap_or("none").into(),
    )
}

fn warn_tls() -> (String, String) {
    ("warn".into(), "tls".into())
}

fn pass() -> (String, String) {
    ("pass".into(), "none".into())
}

#[tokio::test]
async fn a_modern_server_passes_and_its_posture_is_reported() {
    let f = Fixture::new();
    let server = SmtpServer::start(SmtpScript::with_starttls(f.tls()))
        .await
        .unwrap();
    for kind in ["smtp", "tls"] {
        let r = f.run(kind, &server, &["--tls", "starttls"]).await;
        assert_eq!(verdict(&r), pass(), "{kind}: {r:?}");
        let d = &r.json()["details"];
        assert_eq!(d["tls_version"], "TLSv1_3", "{kind}: {d}");
        assert!(
            d["tls_cipher"].as_str().unwrap_or("").starts_with("TLS13_"),
            "{d}"
        );
        assert_eq!(d["tls_key"], "EC P-256", "{kind}: {d}");
        assert_eq!(d["tls_signature"], "ECDSA-SHA256", "{kind}: {d}");
        assert_eq!(d["legacy_tls"], "refused", "{kind}: {d}");
        assert!(d.get("posture").is_none(), "{d}");
    }
    // The tls check keeps the key in what it observes (the baseline).
    let r = f.run("tls", &server, &["--tls", "starttls"]).await;
    assert_eq!(r.json()["details"]["observed"]["key"], "EC P-256");
}

#[tokio::test]
async fn a_server_still_accepting_tls_1_1_warns_unless_allowed() {
    let f = Fixture::new();
    let starttls = SmtpServer::start(SmtpScript {
        legacy_tls: true,
        ..SmtpScript::with_starttls(f.tls())
    })
    .await
    .unwrap();
    let implicit = SmtpServer::start(SmtpScript {
        legacy_tls: true,
        ..SmtpScript::with_implicit_tls(f.tls())
    })
    .await
    .unwrap();
    for (kind, server, tls) in [
        ("smtp", &starttls, "starttls"),
        ("tls", &starttls, "starttls"),
        ("smtp", &implicit, "implicit"),
        ("tls", &implicit, "implicit"),
    ] {
        let r = f.run(kind, server, &["--tls", tls]).await;
        assert_eq!(verdict(&r), warn_tls(), "{kind} {tls}: {r:?}");
        let j = r.json();
        assert_eq!(j["details"]["legacy_tls"], "TLSv1.1", "{j}");
        assert!(
            j["message"]
                .as_str()
                .unwrap_or("")
                .contains("accepts TLSv1.1 (legacy TLS)"),
            "{j}"
        );
        let allowed = f
            .run(kind, server, &["--tls", tls, "--allow", "legacy-tls"])
            .await;
        assert_eq!(verdict(&allowed), pass(), "{allowed:?}");
        assert!(
            allowed.json()["details"].get("legacy_tls").is_none(),
            "an allowed rule is not even tested: {allowed:?}"
        );
    }
}

#[tokio::test]
async fn auth_before_starttls_warns_the_smtp_check() {
    let f = Fixture::new();
    let server = SmtpServer::start(SmtpScript {
        auth_before_tls: true,
        ..SmtpScript::with_starttls(f.tls())
    })
    .await
    .unwrap();
    let r = f.run("smtp", &server, &[]).await;
    assert_eq!(verdict(&r), warn_tls(), "{r:?}");
    assert!(
        r.stdout
            .contains("AUTH offered before STARTTLS (credentials in clear)"),
        "{r:?}"
    );
    let allowed = f
        .run("smtp", &server, &["--allow", "auth-before-starttls"])
        .await;
    assert_eq!(verdict(&allowed), pass(), "{allowed:?}");
    // Without STARTTLS on offer there is nothing to say before it.
    let plain = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let r = f.run("smtp", &plain, &[]).await;
    assert_eq!(verdict(&r), pass(), "{r:?}");
}

#[tokio::test]
async fn rsa_keys_below_the_threshold_warn() {
    let f = Fixture::new();
    let tls =
        f.ca.issue_with_fixture_key("rsa2048", &["mx.test"], Validity::GOOD)
            .unwrap()
            .server_config()
            .unwrap();
    let server = SmtpServer::start(SmtpScript::with_starttls(tls))
        .await
        .unwrap();
    let r = f.run("tls", &server, &["--tls", "starttls"]).await;
    assert_eq!(verdict(&r), pass(), "{r:?}");
    assert_eq!(r.json()["details"]["tls_key"], "RSA 2048");
    let r = f
        .run(
            "tls",
            &server,
            &["--tls", "starttls", "--min-rsa-bits", "3072"],
        )
        .await;
    assert_eq!(verdict(&r), warn_tls(), "{r:?}");
    assert!(r.stdout.contains("RSA 2048-bit key (< 3072)"), "{r:?}");
    let r = f
        .run(
            "tls",
            &server,
            &[
                "--tls",
                "starttls",
                "--min-rsa-bits",
                "3072",
                "--allow",
                "weak-rsa",
            ],
        )
        .await;
    assert_eq!(verdict(&r), pass(), "{r:?}");
}

#[tokio::test]
async fn a_chain_signed_with_sha1_warns_smtp_and_fails_verification() {
    let f = Fixture::new();
    let server = SmtpServer::start(SmtpScript::with_starttls(fixture_config("sha1").unwrap()))
        .await
        .unwrap();
    let r = f.run("smtp", &server, &[]).await;
    assert_eq!(verdict(&r), warn_tls(), "{r:?}");
    assert_eq!(r.json()["details"]["tls_signature"], "RSA-SHA1");
    assert!(
        r.stdout.contains("signed with SHA-1/MD5: CN=mx.test"),
        "{r:?}"
    );
    let allowed = f.run("smtp", &server, &["--allow", "sha1"]).await;
    assert_eq!(verdict(&allowed), pass(), "{allowed:?}");

    // The tls check verifies the chain: a SHA-1 signature is refused
    // there, and the posture says why.
    let ca = format!("{}/data/tls/sha1-ca.pem", env!("CARGO_MANIFEST_DIR"));
    let port = server.addr.port().to_string();
    let r = probe(&[
        "tls",
        "127.0.0.1",
        "--port",
        &port,
        "--tls-name",
        "mx.test",
        "--tls",
        "starttls",
        "--ca-file",
        &ca,
        "-o",
        "json",
    ])
    .await;
    assert_eq!(verdict(&r), ("fail".into(), "tls".into()), "{r:?}");
    assert!(
        r.json()["details"]["posture"][0]
            .as_str()
            .unwrap_or("")
            .contains("SHA-1"),
        "{r:?}"
    );
}

/// `openssl s_server` on a free loopback port with `args`, serving `cert`;
/// killed when dropped.
struct OpenSsl {
    port: u16,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

async fn openssl_server(cert: &vantage_tests::certs::TestCert, args: &[&str]) -> OpenSsl {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = (dir.path().join("chain.pem"), dir.path().join("key.pem"));
    std::fs::write(&chain, &cert.chain_pem).unwrap();
    std::fs::write(&key, &cert.key_pem).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new("openssl")
        .arg("s_server")
        .args(["-accept", &format!("127.0.0.1:{port}"), "-quiet"])
        .arg("-cert")
        .arg(&chain)
        .arg("-key")
        .arg(&key)
        .args(args)
        // Its own configuration: the system's may forbid what is tested.
        .env("OPENSSL_CONF", "/dev/null")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    vantage_tests::cluster::wait_for("openssl s_server listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await
    .unwrap();
    OpenSsl {
        port,
        _child: child,
        _dir: dir,
    }
}

#[tokio::test]
async fn real_openssl_servers_are_told_apart_by_their_answer_to_a_legacy_hello() {
    if vantage_tests::find_program(&["/usr/bin/openssl"]).is_none() {
        vantage_tests::missing("openssl");
        return;
    }
    let f = Fixture::new();
    let cert = f.ca.issue(&["mx.test"], Validity::GOOD).unwrap();
    // TLS 1.0 to 1.3 (security level 0 allows the old ones) and 1.2+ only.
    let legacy = openssl_server(
        &cert,
        &["-cipher", "DEFAULT:@SECLEVEL=0", "-min_protocol", "TLSv1"],
    )
    .await;
    let modern = openssl_server(&cert, &["-min_protocol", "TLSv1.2"]).await;
    let ca_file = f.ca_file();
    let run = |port: u16| {
        let (port, ca_file) = (port.to_string(), ca_file.clone());
        async move {
            probe(&[
                "tls",
                "127.0.0.1",
                "--port",
                &port,
                "--tls",
                "implicit",
                "--tls-name",
                "mx.test",
                "--ca-file",
                &ca_file,
                "-o",
                "json",
            ])
            .await
        }
    };
    let r = run(legacy.port).await;
    assert_eq!(verdict(&r), warn_tls(), "{r:?}");
    assert_eq!(r.json()["details"]["legacy_tls"], "TLSv1.1", "{r:?}");
    let r = run(modern.port).await;
    assert_eq!(verdict(&r), pass(), "{r:?}");
    assert_eq!(r.json()["details"]["legacy_tls"], "refused", "{r:?}");
}

#[tokio::test]
async fn the_legacy_answer_of_an_endpoint_is_reused_within_the_hour() {
    use vantage_agent::check::{CheckSpec, run};
    use vantage_agent::context::ProbeContext;
    use vantage_common::spec::smtp::SmtpCheck;

    let f = Fixture::new();
    let server = SmtpServer::start(SmtpScript {
        legacy_tls: true,
        ..SmtpScript::with_starttls(f.tls())
    })
    .await
    .unwrap();
    // One context, as the agent runtime keeps one for all its probes.
    let ctx = ProbeContext::new(None, None, None);
    let spec = CheckSpec::Smtp(SmtpCheck::new("127.0.0.1", server.addr.port()));
    let first = run(&spec, &ctx).await;
    let second = run(&spec, &ctx).await;
    for o in [&first, &second] {
        assert_eq!(o.status.as_str(), "warn", "{o:?}");
        assert_eq!(o.details["legacy_tls"], "TLSv1.1", "{o:?}");
    }
    assert!(!first.details.contains_key("legacy_tls_reused"));
    assert_eq!(second.details["legacy_tls_reused"], true);
    // Two dialogues and one legacy test.
    let connections = server
        .seen
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(connections, 3);
}
