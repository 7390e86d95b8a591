//! mTLS and roles: who may call what is decided by the caller's certificate
//! (and the replicated deny-list), and every refusal is logged.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vantage_common::identity::Identity;
use vantage_common::pki::{Ca, file_stem};
use vantage_common::tls::{ReloadingTls, TlsFiles};
use vantage_proto::v1::{ClusterStatusRequest, RaftPayload, RevokeRequest};
use vantage_tests::cluster::{Cluster, Timers, wait_for};

async fn single_node() -> Cluster {
    Cluster::start(1, Timers::default()).await.unwrap()
}

fn tls_for(cluster: &Cluster, identity: Identity) -> Arc<ReloadingTls> {
    ReloadingTls::load(cluster.issue(&identity).unwrap()).unwrap()
}

#[tokio::test]
async fn client_without_certificate_is_refused_and_logged() {
    let cluster = single_node().await;
    let addr = cluster.nodes[&1].addr;
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(cluster.pki_dir().join("ca.pem")).unwrap();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let answered = match tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Err(_) => false,
        Ok(mut tls) => {
            let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            let mut buf = [0u8; 64];
            matches!(tls.read(&mut buf).await, Ok(n) if n > 0)
        }
    };
    assert!(!answered, "a client without certificate got an answer");
    wait_for("the refusal in the log", || async {
        cluster.log(1).contains("refused connection").then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let cluster = single_node().await;
    let other = tempfile::tempdir().unwrap();
    let ca = Ca::create(other.path(), 30).unwrap();
    let id = Identity::Operator {
        name: "tester".into(),
    };
    let (cert, key) = ca
        .issue(&id, &[], &[], 30)
        .unwrap()
        .write(other.path(), &file_stem(&id))
        .unwrap();
    // Trust the real CA for the server, but present the foreign certificate.
    let tls = ReloadingTls::load(TlsFiles {
        ca: cluster.pki_dir().join("ca.pem"),
        cert,
        key,
    })
    .unwrap();
    let mut client = cluster.client_as(1, tls).unwrap();
    let err = client
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap_err();
    // Refused at the TLS layer, before any service saw the call.
    // (hyper reports the closed connection as unavailable, unknown or
    // cancelled, depending on timing.)
    assert!(
        !matches!(err.code(), tonic::Code::PermissionDenied | tonic::Code::Ok),
        "{err}"
    );
    wait_for("the refusal in the log", || async {
        cluster
            .log(1)
            .contains("refused connection: TLS handshake failed")
            .then_some(())
    })
    .await
    .unwrap();
    // A flood of failed handshakes is not a flood of log lines.
    for _ in 0..50 {
        let mut tcp = tokio::net::TcpStream::connect(cluster.nodes[&1].addr)
            .await
            .unwrap();
        tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink).await;
    }
    wait_for("the node still serving", || async {
        let tls = tls_for(&cluster, Identity::Operator { name: "ok".into() });
        let mut c = cluster.client_as(1, tls).ok()?;
        c.cluster_status(ClusterStatusRequest {}).await.ok()
    })
    .await
    .unwrap();
    let lines = cluster
        .log(1)
        .lines()
        .filter(|l| l.contains("TLS handshake failed"))
        .count();
    assert!(lines <= 2, "{lines} lines for 51 failed handshakes");
}

#[tokio::test]
async fn roles_are_enforced_per_service_and_logged_with_identity() {
    let cluster = single_node().await;
    let agent = tls_for(
        &cluster,
        Identity::Agent {
            region: "ru".into(),
            name: "msk-1".into(),
        },
    );
    let err = cluster
        .client_as(1, agent)
        .unwrap()
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains("agent msk-1"), "{err}");
    assert!(
        err.message()
            .contains("agent certificates may not call ClusterStatus (operator certificates only"),
        "{err}"
    );

    let operator = tls_for(
        &cluster,
        Identity::Operator {
            name: "tester".into(),
        },
    );
    let err = cluster
        .raft_client_as(1, operator)
        .unwrap()
        .vote(RaftPayload {
            json: b"{}".to_vec(),
            ..RaftPayload::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");

    let log = cluster.log(1);
    assert!(log.contains("refused: wrong role"), "{log}");
    assert!(log.contains("agent msk-1 (region ru)"), "{log}");
    assert!(log.contains("operator tester"), "{log}");
}

#[tokio::test]
async fn revoked_names_are_refused() {
    let cluster = single_node().await;
    let mallory = tls_for(
        &cluster,
        Identity::Operator {
            name: "mallory".into(),
        },
    );
    let mut as_mallory = cluster.client_as(1, mallory).unwrap();
    as_mallory
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap();

    // Revoking an agent of the same name leaves the operator alone.
    cluster.revoke(1, "agent/ru/mallory").await.unwrap();
    as_mallory
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap();
    cluster.revoke(1, "operator/mallory").await.unwrap();
    let err = as_mallory
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains("revoked"), "{err}");
    assert!(cluster.log(1).contains("refused: revoked"));
}

/// The first certificate a TLS server at `addr` presents to the operator.
async fn presented_cert(cluster: &Cluster, addr: std::net::SocketAddr) -> Vec<u8> {
    let tls = tls_for(
        cluster,
        Identity::Operator {
            name: "tester".into(),
        },
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls.client_config())
        .connect(name, tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn rotated_server_certificate_is_served_without_restart() {
    let cluster = single_node().await;
    let addr = cluster.nodes[&1].addr;
    let before = presented_cert(&cluster, addr).await;

    // Issue a fresh certificate for the same node and move it into place.
    let id = Identity::Coordinator { id: 1 };
    let ca = Ca::load(&cluster.pki_dir()).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let (cert, key) = ca
        .issue(
            &id,
            &["localhost".into()],
            &["127.0.0.1".parse().unwrap()],
            30,
        )
        .unwrap()
        .write(fresh.path(), &file_stem(&id))
        .unwrap();
    let live = cluster.issue(&id).unwrap();
    std::fs::rename(&key, &live.key).unwrap();
    std::fs::rename(&cert, &live.cert).unwrap();

    let after = presented_cert(&cluster, addr).await;
    assert_ne!(before, after, "the node still presents the old certificate");
    let expected = std::fs::read(&live.cert).unwrap();
    let expected = rustls_pki_types::CertificateDer::pem_slice_iter(&expected)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(after, expected.to_vec());
    // And it still serves operators.
    cluster
        .operator(1)
        .unwrap()
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap();
}

/// A certificate for `identity` in a directory of its own, signed by `ca`,
/// valid for `days` (0: it expires at once).
fn certificate(
    ca: &Ca,
    identity: &Identity,
    days: u32,
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    ca.issue(identity, &[], &[], days)
        .unwrap()
        .write(dir, &file_stem(identity))
        .unwrap()
}

#[tokio::test]
async fn clients_say_what_is_wrong_with_their_certificate() {
    let mut cluster = single_node().await;
    let scratch = tempfile::tempdir().unwrap();
    let real = Ca::load(&cluster.pki_dir()).unwrap();
    let foreign = Ca::create(&scratch.path().join("foreign-ca"), 30).unwrap();
    let tester = Identity::Operator {
        name: "tester".into(),
    };
    let agent = Identity::Agent {
        region: "ru".into(),
        name: "msk-7".into(),
    };
    let foreign_cert = certificate(&foreign, &tester, 30, &scratch.path().join("foreign"));
    let expired_cert = certificate(&real, &tester, 0, &scratch.path().join("expired"));
    let agent_cert = certificate(&real, &agent, 30, &scratch.path().join("agent"));
    // The agent's own certificate, expired, where the harness looks for it.
    certificate(&real, &agent, 0, &cluster.pki_dir());
    // Issued with not_after = now: expired once the clock's second turns.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    let ctl = |cert: &(std::path::PathBuf, std::path::PathBuf)| {
        let mut command = cluster.vantagectl_command(&[1], &["apply", "-f", "/dev/null"]);
        command
            .env("VANTAGE_CERT", &cert.0)
            .env("VANTAGE_KEY", &cert.1);
        command
    };
    for (what, cert, expected) in [
        (
            "a foreign CA",
            &foreign_cert,
            "the server rejected this certificate: its signature does not match the deployment's CA",
        ),
        (
            "an expired certificate",
            &expired_cert,
            "the server rejected this certificate: it has expired",
        ),
        (
            "an agent certificate",
            &agent_cert,
            "vantagectl needs an operator certificate",
        ),
    ] {
        let out = ctl(cert).output().await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {err}");
        assert!(err.contains(expected), "{what}: {err}");
        assert!(
            !err.contains("transport error") && !err.contains("Cancelled"),
            "{what}: {err}"
        );
    }
    // A refusal by the server is not "no coordinator reachable".
    cluster.revoke(1, "operator/tester").await.unwrap();
    let (code, _, err) = cluster.vantagectl(&[1], &["status"]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("permission denied: operator tester is revoked"),
        "{err}"
    );
    assert!(!err.contains("no coordinator reachable"), "{err}");
    // An agent whose certificate expired says so in its log.
    cluster
        .spawn_agent("msk-7", "ru", "127.0.0.1", &[])
        .await
        .unwrap();
    wait_for("the agent's reason in its log", || async {
        cluster
            .agent_log("msk-7")
            .contains("the server rejected this certificate: it has expired")
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.agent_log("msk-7")));
}

#[tokio::test]
async fn a_connection_flood_on_the_grpc_port_leaves_the_node_its_descriptors() {
    if vantage_tests::find_program(&["/usr/bin/prlimit", "/bin/prlimit"]).is_none() {
        vantage_tests::missing("prlimit (util-linux)");
        return;
    }
    let cluster = Cluster::new(Timers::default())
        .unwrap()
        .with_nofile(320)
        .started(1)
        .await
        .unwrap();
    let node = &cluster.nodes[&1];
    // An operator connected before the flood.
    let mut operator = cluster.operator(1).unwrap();
    operator
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap();
    // Connections that never start TLS, more than the node may open files.
    let mut flood = Vec::new();
    for _ in 0..600 {
        // Once the node stops accepting and the kernel's backlog is full,
        // connecting stalls: the flood is as big as it gets.
        let connect = tokio::net::TcpStream::connect(node.addr);
        match tokio::time::timeout(std::time::Duration::from_millis(500), connect).await {
            Ok(Ok(c)) => flood.push(c),
            _ => break,
        }
    }
    let cap = 320 - vantage_common::limits::RESERVED_FDS;
    assert!(flood.len() as u64 > cap, "only {} connections", flood.len());
    // The rest of the node keeps its descriptors: the side port answers and
    // the operator's connection still writes through Raft.
    let http = node.http.unwrap();
    let mut side = tokio::net::TcpStream::connect(http).await.unwrap();
    side.write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        side.read_to_string(&mut reply),
    )
    .await
    .expect("the side port answers during the flood")
    .unwrap();
    assert!(
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
        "{reply}"
    );
    operator
        .revoke(RevokeRequest {
            name: "agent/ru/during-flood".into(),
        })
        .await
        .unwrap();
    let log = cluster.log(1);
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(log.contains("gRPC port at its connection limit"), "{log}");
    // When the flood ends, new clients get in.
    drop(flood);
    wait_for("a new client served", || async {
        let mut c = cluster.operator(1).ok()?;
        c.cluster_status(ClusterStatusRequest {}).await.ok()
    })
    .await
    .unwrap();
}
