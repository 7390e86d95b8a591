//! One bounded HTTPS GET (hyper over the probe's own TLS): the server's
//! certificate verified for its name against the given roots, redirects
//! never followed (the caller sees the 3xx), the body at most a given
//! size. For MTA-STS policies.

use std::net::{IpAddr, SocketAddr};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use vantage_common::FailureClass;

use crate::check::Finding;
use crate::net;

/// What came back.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, as sent.
    pub content_type: Option<String>,
    /// `Location` of a redirect.
    pub location: Option<String>,
    /// The body (empty for a redirect).
    pub body: Vec<u8>,
}

fn http_error(what: &str, e: impl std::fmt::Display) -> Finding {
    Finding::fail(FailureClass::Protocol, format!("HTTPS {what}: {e}"))
}

/// GETs `https://{host}{path}` from `addr`, the certificate verified for
/// `host` against `roots`; a body over `max` octets is refused.
pub async fn get(
    addr: SocketAddr,
    source: Option<IpAddr>,
    host: &str,
    path: &str,
    roots: RootCertStore,
    max: usize,
) -> Result<Fetched, Finding> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| Finding::error(FailureClass::Tls, format!("invalid TLS name {host:?}")))?;
    let tcp = net::connect(addr, source).await?;
    let tls = net::handshake(tcp, &name).await?;
    let chain: Vec<_> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    net::verify_chain(&chain, &name, roots)?;

    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| http_error("handshake", e))?;
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "vantage")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| http_error("request", e))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http_error("request", e))?;
        let header = |name: http::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let content_type = header(http::header::CONTENT_TYPE);
        let location = header(http::header::LOCATION);
        let body = if response.status().is_redirection() {
            Vec::new()
        } else {
            Limited::new(response.into_body(), max)
                .collect()
                .await
                .map_err(|e| http_error("body", format!("{e} (at most {max} octets)")))?
                .to_bytes()
                .to_vec()
        };
        Ok(Fetched {
            status,
            content_type,
            location,
            body,
        })
    };
    let mut exchange = std::pin::pin!(exchange);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        biased;
        fetched = &mut exchange => fetched,
        // The connection ended first (closed after the response): what was
        // received is still there to read.
        _ = &mut conn => exchange.await,
    }
}
