//! gRPC over mutually authenticated TLS: the listener side hands tonic
//! connections that carry the peer's [`Identity`] (read from its
//! certificate, never from the request), and the client side dials with our
//! certificate. Both follow certificate rotation on disk.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use crate::identity::Identity;
use crate::tls::ReloadingTls;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is calling: set by the listener on every request's extensions.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Identity from the client certificate.
    pub identity: Identity,
    /// Remote address.
    pub addr: SocketAddr,
}

/// An accepted mTLS connection.
#[derive(Debug)]
pub struct MtlsConn {
    stream: TlsStream<TcpStream>,
    peer: Peer,
    /// Its place among the connections the port may hold.
    _slot: OwnedSemaphorePermit,
}

impl Connected for MtlsConn {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for MtlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for MtlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Failed handshakes and accepts are logged at most every 10 s each (with
/// how many were held back): anyone who can reach the port can cause them.
static HANDSHAKE_LOG: crate::logging::Throttle = crate::logging::Throttle::new(10_000);
static ACCEPT_LOG: crate::logging::Throttle = crate::logging::Throttle::new(10_000);
static FULL_LOG: crate::logging::Throttle = crate::logging::Throttle::new(10_000);

/// Accepts TCP connections on `listener` and completes mTLS handshakes
/// concurrently; connections whose certificate is not from the deployment CA
/// or names no vantage identity are dropped and logged. At most
/// [`limits::grpc_connections`](crate::limits::grpc_connections) are held
/// at once (handshaking or open): beyond that the port stops accepting and
/// newcomers wait in the kernel's backlog, so a flood of connections cannot
/// take the descriptors the rest of the process needs. Feed the stream to
/// `tonic::transport::Server::serve_with_incoming`.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
) -> ReceiverStream<Result<MtlsConn, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let cap = crate::limits::grpc_connections();
    let slots = Arc::new(Semaphore::new(cap));
    tokio::spawn(async move {
        loop {
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if let Some(held) = FULL_LOG.allow() {
                        tracing::warn!(
                            connections = cap,
                            held_back = held,
                            "gRPC port at its connection limit: new connections wait"
                        );
                    }
                    match slots.clone().acquire_owned().await {
                        Ok(slot) => slot,
                        Err(_) => return,
                    }
                }
            };
            let (tcp, addr) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    if let Some(held) = ACCEPT_LOG.allow() {
                        tracing::warn!(error = %e, held_back = held, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return; // the server is gone
            }
            let acceptor = TlsAcceptor::from(tls.server_config());
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        if let Some(held) = HANDSHAKE_LOG.allow() {
                            tracing::warn!(peer = %addr, error = %e, held_back = held, "refused connection: TLS handshake failed");
                        }
                        return;
                    }
                    Err(_) => {
                        if let Some(held) = HANDSHAKE_LOG.allow() {
                            tracing::warn!(peer = %addr, held_back = held, "refused connection: TLS handshake timed out");
                        }
                        return;
                    }
                };
                let identity = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .ok_or(crate::identity::IdentityError::Missing)
                    .and_then(|c| Identity::from_cert_der(c));
                match identity {
                    Ok(identity) => {
                        let _ = tx
                            .send(Ok(MtlsConn {
                                stream,
                                peer: Peer { identity, addr },
                                _slot: slot,
                            }))
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(peer = %addr, error = %e, "refused connection: no vantage identity")
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A channel to `addr` (`host:port`) over mTLS. The server certificate must
/// come from the deployment CA and name `host`. Connects lazily; TLS
/// material is re-read on every new connection.
pub fn channel(addr: &str, tls: Arc<ReloadingTls>) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    let connector = tower::service_fn(move |uri: http::Uri| {
        let tls = tls.clone();
        async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad server name {host}: {e}"),
                )
            })?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = TlsConnector::from(tls.client_config())
                .connect(name, tcp)
                .await?;
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// The caller of a request, as the listener recorded it.
pub fn peer<T>(request: &tonic::Request<T>) -> Option<&Peer> {
    request.extensions().get::<Peer>()
}

/// When a call to `addr` failed below gRPC (tonic says only "transport
/// error" or "Cancelled"), finds out why over a fresh connection: the TLS
/// handshake, then the server's verdict on our certificate (in TLS 1.3 an
/// alert that arrives after the handshake). `None` when TLS is fine or the
/// server cannot be reached (the caller's own error says that better).
pub async fn diagnose(addr: &str, tls: &ReloadingTls) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned()).ok()?;
    let attempt = async {
        let tcp = TcpStream::connect((host, port)).await.ok()?;
        let mut stream = match TlsConnector::from(tls.client_config())
            .connect(name, tcp)
            .await
        {
            Ok(s) => s,
            Err(e) => return Some(explain_tls(&e, host)),
        };
        // The server judges our certificate now: it answers the HTTP/2
        // preface, or sends an alert.
        if let Err(e) = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await {
            return Some(explain_tls(&e, host));
        }
        let mut buf = [0u8; 64];
        match stream.read(&mut buf).await {
            Ok(n) if n > 0 => None,
            Ok(_) => Some("the server closed the connection after the TLS handshake".into()),
            Err(e) => Some(explain_tls(&e, host)),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// A TLS failure in an operator's words.
fn explain_tls(e: &io::Error, host: &str) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) else {
        return format!("TLS failure: {e}");
    };
    match tls {
        E::AlertReceived(A::UnknownCA) => {
            "the server rejected this certificate: unknown CA (it was not issued by the deployment's CA)".into()
        }
        E::AlertReceived(A::CertificateExpired) => {
            "the server rejected this certificate: it has expired (or is not valid yet: check the clock)".into()
        }
        E::AlertReceived(A::DecryptError) => {
            "the server rejected this certificate: its signature does not match the deployment's CA (issued by another CA of the same name?)".into()
        }
        E::AlertReceived(A::CertificateRequired) => {
            "the server requires a client certificate".into()
        }
        E::AlertReceived(alert) => format!("the server rejected this certificate: {alert:?}"),
        E::InvalidCertificate(C::UnknownIssuer) => {
            "this client does not trust the server's certificate: unknown issuer (is the CA file the deployment's ca.pem?)".into()
        }
        E::InvalidCertificate(C::Expired) => "the server's certificate has expired".into(),
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!("the server's certificate does not name {host}")
        }
        other => format!("TLS failure: {other}"),
    }
}
