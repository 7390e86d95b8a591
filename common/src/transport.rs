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

/// Accepts TCP connections on `listener` and completes mTLS handshakes
/// concurrently; connections whose certificate is not from the deployment CA
/// or names no vantage identity are dropped and logged. Feed the stream to
/// `tonic::transport::Server::serve_with_incoming`.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
) -> ReceiverStream<Result<MtlsConn, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
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
