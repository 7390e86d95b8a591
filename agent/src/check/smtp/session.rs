//! One SMTP connection: plain or TLS, replies read with bounds, STARTTLS
//! upgrade with a guard against pipelined (injected) plaintext.

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use vantage_common::FailureClass;

use super::reply::{Reply, ReplyError, read_reply};
use crate::check::Finding;
use crate::net;

/// Anything a session can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the TLS handshake established.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// `TLSv1_3`, `TLSv1_2`.
    pub version: String,
    /// Negotiated cipher suite.
    pub cipher: String,
    /// Certificates as presented, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
}

impl TlsInfo {
    /// What a finished handshake negotiated and the chain it got.
    pub fn of(conn: &rustls::ClientConnection) -> Self {
        TlsInfo {
            version: conn
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher: conn
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
            chain: conn
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        }
    }
}

/// An SMTP client connection.
pub struct Session {
    io: BufReader<Box<dyn Io>>,
    tls: Option<TlsInfo>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session over an established plaintext connection.
    pub fn plain(io: impl Io + 'static) -> Self {
        Session {
            io: BufReader::new(Box::new(io)),
            tls: None,
        }
    }

    /// A session that starts with a TLS handshake (port 465).
    pub async fn implicit_tls(
        io: impl Io + 'static,
        sni: &ServerName<'static>,
    ) -> Result<Self, Finding> {
        let (io, info) = upgrade(Box::new(io), sni).await?;
        Ok(Session {
            io: BufReader::new(io),
            tls: Some(info),
        })
    }

    /// The TLS state, once TLS is up.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Reads one reply.
    pub async fn read_reply(&mut self) -> Result<Reply, Finding> {
        read_reply(&mut self.io).await.map_err(reply_error)
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, Finding> {
        self.exchange(line, verb(line)).await
    }

    /// Sends one line of a SASL exchange (credentials, proofs) and reads
    /// the reply; an error names the step only, never the line.
    pub async fn respond(&mut self, line: &str) -> Result<Reply, Finding> {
        self.exchange(line, "AUTH response").await
    }

    /// Sends a message after a 354 reply to DATA: dot-stuffed, CRLF line
    /// ends, ended by `.` alone on a line. Returns the server's verdict.
    pub async fn send_message(&mut self, message: &str) -> Result<Reply, Finding> {
        let mut wire = String::with_capacity(message.len() + 64);
        for line in message.lines() {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
            wire.push_str("\r\n");
        }
        wire.push('.');
        self.exchange(&wire, "the message").await
    }

    async fn exchange(&mut self, line: &str, named: &str) -> Result<Reply, Finding> {
        write_line(self.io.get_mut(), line)
            .await
            .map_err(|e| Finding::fail(FailureClass::Protocol, format!("sending {named}: {e}")))?;
        self.read_reply().await
    }

    /// Upgrades to TLS after a positive reply to STARTTLS. Fails if the server
    /// sent anything beyond that reply: such bytes would be read as if they
    /// had come over TLS (the STARTTLS command-injection flaw).
    pub async fn start_tls(self, sni: &ServerName<'static>) -> Result<Self, Finding> {
        let (io, info) = upgrade(self.into_raw()?, sni).await?;
        Ok(Session {
            io: BufReader::new(io),
            tls: Some(info),
        })
    }
}

impl Session {
    /// The connection itself, at the point where TLS would start after a
    /// positive reply to STARTTLS (refused, as in [`Session::start_tls`],
    /// when the server sent more than that reply).
    pub fn into_raw(self) -> Result<Box<dyn Io>, Finding> {
        if !self.io.buffer().is_empty() {
            return Err(Finding::fail(
                FailureClass::Protocol,
                "server sent data after its STARTTLS reply (plaintext injection)",
            ));
        }
        Ok(self.io.into_inner())
    }
}

async fn upgrade(
    io: Box<dyn Io>,
    sni: &ServerName<'static>,
) -> Result<(Box<dyn Io>, TlsInfo), Finding> {
    let stream = net::handshake(io, sni).await?;
    let info = TlsInfo::of(stream.get_ref().1);
    Ok((Box::new(stream), info))
}

/// Writes `line` and CRLF in one write (one segment, one TLS record), and
/// flushes.
pub async fn write_line<W: AsyncWrite + Unpin>(io: &mut W, line: &str) -> std::io::Result<()> {
    let mut wire = Vec::with_capacity(line.len() + 2);
    wire.extend_from_slice(line.as_bytes());
    wire.extend_from_slice(b"\r\n");
    io.write_all(&wire).await?;
    io.flush().await
}

fn verb(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or(line)
}

fn reply_error(e: ReplyError) -> Finding {
    match e {
        ReplyError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset => {
            Finding::fail(FailureClass::Protocol, "connection reset by server")
        }
        other => Finding::fail(FailureClass::Protocol, other.to_string()),
    }
}
