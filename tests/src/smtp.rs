//! An in-process SMTP server with scripted behaviour: banner, EHLO
//! extensions, STARTTLS or implicit TLS with test certificates, delays, and
//! the hostile behaviours a probe must survive (endless lines, huge banners,
//! slow drips, garbage instead of TLS, early close, endless continuations);
//! for the email sink.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Misbehaviour of a scripted server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection as soon as it is accepted.
    CloseOnConnect,
    /// Accept and never say anything.
    Silent,
    /// Send `220 ` and then `x` forever, never a line end.
    EndlessLine,
    /// A banner line of this many octets.
    HugeBanner(usize),
    /// Send the banner one octet per interval.
    Drip(Duration),
    /// Send this instead of a TLS handshake (implicit TLS or after STARTTLS).
    GarbageInsteadOfTls,
    /// Close in the middle of the EHLO reply.
    CloseMidReply,
    /// Answer EHLO with this many continuation lines.
    ContinuationLines(usize),
    /// Pipeline a plaintext reply right behind the STARTTLS reply.
    InjectAfterStarttls,
}

/// A fault seen from one client address only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFault {
    /// Connections are closed at once (like a refused port).
    Closed,
    /// Connections are accepted and never answered (a timeout).
    Silent,
    /// Closed, served, closed, served... (a flapping target).
    Flapping {
        /// Connections seen so far.
        connections: u64,
    },
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct SmtpScript {
    /// Full first reply, e.g. `220 mx.test ESMTP`.
    pub banner: String,
    /// Wait this long before the banner.
    pub banner_delay: Duration,
    /// Extensions after the EHLO greeting line (`STARTTLS` is added when
    /// [`Self::starttls`] is set and TLS is not up yet).
    pub extensions: Vec<String>,
    /// Offer STARTTLS with this certificate.
    pub starttls: Option<Arc<ServerConfig>>,
    /// Reply to STARTTLS; a non-220 reply refuses it.
    pub starttls_reply: String,
    /// Speak TLS from the first byte with this certificate.
    pub implicit_tls: Option<Arc<ServerConfig>>,
    /// Reply to EHLO when not 250 (e.g. `550 go away`).
    pub ehlo_reply: Option<String>,
    /// Misbehaviour.
    pub fault: Option<Fault>,
    /// Advertise AUTH before STARTTLS too (by default AUTH is offered
    /// only once TLS is up, when STARTTLS is offered).
    pub auth_before_tls: bool,
    /// Also accept TLS 1.0/1.1: a legacy ClientHello is answered with a
    /// ServerHello at its version (and nothing more); rustls serves the rest.
    pub legacy_tls: bool,
    /// Replies to RCPT TO by address (`("b@x.test", "450 4.2.0 try later")`);
    /// other recipients get 250.
    pub rcpt_replies: Vec<(String, String)>,
    /// The one user and password AUTH PLAIN and LOGIN accept (others get
    /// `535 5.7.8`); `None` accepts anyone.
    pub credentials: Option<(String, String)>,
}

impl Default for SmtpScript {
    fn default() -> Self {
        SmtpScript {
            banner: "220 mx.test ESMTP vantage-testkit".into(),
            banner_delay: Duration::ZERO,
            extensions: vec![
                "PIPELINING".into(),
                "SIZE 10240000".into(),
                "AUTH PLAIN LOGIN".into(),
                "8BITMIME".into(),
            ],
            starttls: None,
            starttls_reply: "220 2.0.0 Ready to start TLS".into(),
            implicit_tls: None,
            ehlo_reply: None,
            fault: None,
            auth_before_tls: false,
            legacy_tls: false,
            rcpt_replies: Vec::new(),
            credentials: None,
        }
    }
}

impl SmtpScript {
    /// The default script offering STARTTLS with `tls`.
    pub fn with_starttls(tls: Arc<ServerConfig>) -> Self {
        SmtpScript {
            starttls: Some(tls),
            ..Default::default()
        }
    }

    /// The default script speaking TLS from the first byte.
    pub fn with_implicit_tls(tls: Arc<ServerConfig>) -> Self {
        SmtpScript {
            implicit_tls: Some(tls),
            ..Default::default()
        }
    }

    /// The default script with a fault.
    pub fn faulty(fault: Fault) -> Self {
        SmtpScript {
            fault: Some(fault),
            ..Default::default()
        }
    }
}

/// What a server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Command lines received, in order, across connections.
    pub commands: Mutex<Vec<String>>,
    /// Client addresses, in order of connection.
    pub peers: Mutex<Vec<SocketAddr>>,
    /// Faults seen from some client addresses only.
    pub per_source: Mutex<std::collections::HashMap<std::net::IpAddr, SourceFault>>,
    /// Messages received with DATA (headers and body), and whether the
    /// session was under TLS.
    pub messages: Mutex<Vec<(String, bool)>>,
    /// How long each dialogue served lasted, accept to close (µs), in the
    /// order they ended.
    pub dialogues_us: Mutex<Vec<u64>>,
}

/// A running scripted SMTP server on loopback; stops when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    /// Starts a server on 127.0.0.1, port chosen by the OS.
    pub async fn start(script: SmtpScript) -> io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().map_err(io::Error::other)?, script).await
    }

    /// Starts a server on `addr`.
    pub async fn start_on(addr: SocketAddr, script: SmtpScript) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Seen::default());
        let script = Arc::new(script);
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((stream, peer)) = listener.accept().await {
                    seen.connections.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut peers) = seen.peers.lock() {
                        peers.push(peer);
                    }
                    let fault = seen.per_source.lock().ok().and_then(|mut f| {
                        let fault = f.get_mut(&peer.ip())?;
                        if let SourceFault::Flapping { connections } = fault {
                            *connections += 1;
                            if *connections % 2 == 0 {
                                return None; // this one is served
                            }
                        }
                        Some(fault.clone())
                    });
                    match fault {
                        Some(SourceFault::Closed | SourceFault::Flapping { .. }) => {
                            drop(stream);
                            continue;
                        }
                        Some(SourceFault::Silent) => {
                            // Held open, silent, until the client gives up.
                            tokio::spawn(drain(stream));
                            continue;
                        }
                        None => {}
                    }
                    let (script, seen) = (script.clone(), seen.clone());
                    // Replies go out at once, as from a server that writes
                    // each reply whole: with Nagle, a reply written while a
                    // session ticket is still unacknowledged would wait for
                    // the client's delayed ACK (40 ms), and the benchmarks
                    // would measure that instead of the client.
                    stream.set_nodelay(true).ok();
                    let accepted = std::time::Instant::now();
                    tokio::spawn(async move {
                        // A client that goes away mid-dialogue is normal here.
                        let _ = serve(stream, &script, &seen).await;
                        let took =
                            u64::try_from(accepted.elapsed().as_micros()).unwrap_or(u64::MAX);
                        if let Ok(mut d) = seen.dialogues_us.lock() {
                            d.push(took);
                        }
                    });
                }
            }
        });
        Ok(SmtpServer { addr, seen, task })
    }

    /// Client addresses so far.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.seen
            .peers
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Sets (or with `None` clears) the fault connections from `ip` meet.
    pub fn fault_from(&self, ip: std::net::IpAddr, fault: Option<SourceFault>) {
        if let Ok(mut f) = self.seen.per_source.lock() {
            match fault {
                Some(fault) => f.insert(ip, fault),
                None => f.remove(&ip),
            };
        }
    }

    /// Closes connections from `ip` at once (`false`: serves it again).
    pub fn block_from(&self, ip: std::net::IpAddr, blocked: bool) {
        self.fault_from(ip, blocked.then_some(SourceFault::Closed));
    }

    /// Accepts connections from `ip` and never answers (`false`: serves it again).
    pub fn silence_from(&self, ip: std::net::IpAddr, silenced: bool) {
        self.fault_from(ip, silenced.then_some(SourceFault::Silent));
    }

    /// Makes connections from `ip` alternate between closed and served
    /// (`false`: serves it again).
    pub fn flap_from(&self, ip: std::net::IpAddr, flapping: bool) {
        self.fault_from(
            ip,
            flapping.then_some(SourceFault::Flapping { connections: 0 }),
        );
    }

    /// Messages received so far: (headers and body, under TLS).
    pub fn messages(&self) -> Vec<(String, bool)> {
        self.seen
            .messages
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Commands received so far.
    pub fn commands(&self) -> Vec<String> {
        self.seen
            .commands
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

const GARBAGE: &[u8] = b"HTTP/1.1 400 Bad Request\r\nThis is not TLS at all.\r\n\r\n";

async fn serve(mut tcp: TcpStream, script: &SmtpScript, seen: &Seen) -> io::Result<()> {
    match &script.fault {
        Some(Fault::CloseOnConnect) => return Ok(()),
        Some(Fault::Silent) => {
            // Hold the connection open until the client gives up.
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut tcp, &mut sink).await;
            return Ok(());
        }
        _ => {}
    }
    if let Some(tls) = &script.implicit_tls {
        if script.fault == Some(Fault::GarbageInsteadOfTls) {
            tcp.write_all(GARBAGE).await?;
            return drain(tcp).await;
        }
        if script.legacy_tls && answer_legacy(&mut tcp).await? {
            return drain(tcp).await;
        }
        let stream = TlsAcceptor::from(tls.clone()).accept(tcp).await?;
        greet(stream, script, seen, true).await?;
        return Ok(());
    }
    if let Some(mut tcp) = greet(tcp, script, seen, false).await? {
        let Some(tls) = &script.starttls else {
            return Ok(());
        };
        if script.fault == Some(Fault::GarbageInsteadOfTls) {
            tcp.write_all(GARBAGE).await?;
            return drain(tcp).await;
        }
        if script.legacy_tls && answer_legacy(&mut tcp).await? {
            return drain(tcp).await;
        }
        let stream = TlsAcceptor::from(tls.clone()).accept(tcp).await?;
        dialogue(BufReader::new(stream), script, seen, true).await?;
    }
    Ok(())
}

/// When the client's first bytes are a ClientHello offering at most TLS
/// 1.1, answers with a ServerHello at that version (what a server still
/// speaking 1.0/1.1 does) and returns true; anything else is left unread.
async fn answer_legacy(tcp: &mut TcpStream) -> io::Result<bool> {
    let mut head = [0u8; 11];
    // A ClientHello fits in one segment; wait until its start is here.
    for _ in 0..100 {
        let n = tcp.peek(&mut head).await?;
        if n == 0 || n >= head.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let legacy = head[0] == 0x16 && head[5] == 0x01 && [head[9], head[10]] <= [0x03, 0x02];
    if !legacy {
        return Ok(false);
    }
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, head[9], head[10],
    ];
    hello.extend_from_slice(&[0x5a; 32]); // random
    hello.extend_from_slice(&[0x00, 0xc0, 0x13, 0x00]); // no session id, ECDHE-RSA-AES128-SHA, null
    tcp.write_all(&hello).await?;
    tcp.flush().await?;
    Ok(true)
}

/// Reads until the client closes, so the client sees our bytes before EOF.
async fn drain<S: AsyncRead + Unpin>(mut s: S) -> io::Result<()> {
    let mut sink = tokio::io::sink();
    tokio::io::copy(&mut s, &mut sink).await.map(|_| ())
}

/// Sends the banner (or its faulty version), then runs the dialogue.
/// Returns the raw stream when the client asked for STARTTLS.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    script: &SmtpScript,
    seen: &Seen,
    tls: bool,
) -> io::Result<Option<S>> {
    tokio::time::sleep(script.banner_delay).await;
    match &script.fault {
        Some(Fault::EndlessLine) => {
            io.write_all(b"220 ").await?;
            let chunk = [b'x'; 4096];
            // Bounded so a client that never stops reading cannot keep us busy forever.
            for _ in 0..25_600 {
                io.write_all(&chunk).await?;
            }
            return Ok(None);
        }
        Some(Fault::HugeBanner(size)) => {
            io.write_all(b"220 ").await?;
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = *size;
            while left > 0 {
                let n = left.min(chunk.len());
                io.write_all(&chunk[..n]).await?;
                left -= n;
            }
            io.write_all(b"\r\n").await?;
            return drain(io).await.map(|_| None);
        }
        Some(Fault::Drip(every)) => {
            for b in format!("{}\r\n", script.banner).bytes() {
                io.write_all(&[b]).await?;
                io.flush().await?;
                tokio::time::sleep(*every).await;
            }
        }
        _ => {
            io.write_all(format!("{}\r\n", script.banner).as_bytes())
                .await?;
        }
    }
    dialogue(BufReader::new(io), script, seen, tls).await
}

/// Reads one line into `line` (replacing it), keeping at most 4 KiB: what
/// the probe under test sends is short. False at the end of the stream.
async fn read_line<R: AsyncBufRead + Unpin>(io: &mut R, line: &mut String) -> io::Result<bool> {
    line.clear();
    Ok(AsyncReadExt::take(io, 4096).read_line(line).await? > 0)
}

async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: BufReader<S>,
    script: &SmtpScript,
    seen: &Seen,
    tls: bool,
) -> io::Result<Option<S>> {
    let mut line = String::new();
    loop {
        if !read_line(&mut io, &mut line).await? {
            return Ok(None);
        }
        let cmd = line.trim_end().to_owned();
        if let Ok(mut c) = seen.commands.lock() {
            c.push(cmd.clone());
        }
        let verb = cmd
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => match (&script.ehlo_reply, &script.fault) {
                (Some(r), _) => format!("{r}\r\n"),
                (None, Some(Fault::CloseMidReply)) => {
                    io.write_all(b"250-mx.test\r\n250-PIPEL").await?;
                    return Ok(None);
                }
                (None, Some(Fault::ContinuationLines(n))) => {
                    let mut r = String::from("250-mx.test\r\n");
                    for i in 0..*n {
                        r.push_str(&format!("250-X-FILLER-{i}\r\n"));
                    }
                    r.push_str("250 OK\r\n");
                    r
                }
                _ => {
                    let mut exts = script.extensions.clone();
                    if script.starttls.is_some() && !tls {
                        exts.push("STARTTLS".into());
                        if !script.auth_before_tls {
                            exts.retain(|e| !e.starts_with("AUTH"));
                        }
                    }
                    let mut r = String::from("250");
                    r.push_str(if exts.is_empty() { " " } else { "-" });
                    r.push_str("mx.test greets you\r\n");
                    for (i, e) in exts.iter().enumerate() {
                        let sep = if i + 1 == exts.len() { ' ' } else { '-' };
                        r.push_str(&format!("250{sep}{e}\r\n"));
                    }
                    r
                }
            },
            "HELO" => "250 mx.test\r\n".into(),
            "STARTTLS" if script.starttls.is_some() && !tls => {
                let accepted = script.starttls_reply.starts_with("220");
                let mut reply = format!("{}\r\n", script.starttls_reply);
                if script.fault == Some(Fault::InjectAfterStarttls) {
                    reply.push_str("250 injected before TLS\r\n");
                }
                io.write_all(reply.as_bytes()).await?;
                io.flush().await?;
                if accepted {
                    return Ok(Some(io.into_inner()));
                }
                continue;
            }
            "NOOP" | "RSET" => "250 2.0.0 OK\r\n".into(),
            "AUTH" => match authenticate(&mut io, &cmd, script).await? {
                Some(true) => "235 2.7.0 Authentication successful\r\n".into(),
                Some(false) => "535 5.7.8 Error: authentication failed\r\n".into(),
                None => "504 5.5.4 Unrecognized authentication type\r\n".into(),
            },
            "MAIL" => "250 2.1.0 OK\r\n".into(),
            "RCPT" => {
                let address = cmd
                    .split_once('<')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(a, _)| a.to_ascii_lowercase())
                    .unwrap_or_default();
                match script.rcpt_replies.iter().find(|(a, _)| *a == address) {
                    Some((_, reply)) => format!("{reply}\r\n"),
                    None => "250 2.1.5 OK\r\n".into(),
                }
            }
            "DATA" => {
                io.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                io.flush().await?;
                let mut message = String::new();
                loop {
                    if !read_line(&mut io, &mut line).await? {
                        return Ok(None);
                    }
                    if line.trim_end() == "." {
                        break;
                    }
                    if message.len() < 1 << 20 {
                        message.push_str(&line);
                    }
                }
                if let Ok(mut m) = seen.messages.lock() {
                    m.push((message, tls));
                }
                "250 2.0.0 Queued\r\n".into()
            }
            "QUIT" => {
                io.write_all(b"221 2.0.0 Bye\r\n").await?;
                io.flush().await?;
                return Ok(None);
            }
            _ => "502 5.5.2 Command not recognised\r\n".into(),
        };
        io.write_all(reply.as_bytes()).await?;
        io.flush().await?;
    }
}

/// Runs an AUTH PLAIN or LOGIN exchange: whether the credentials are the
/// script's (any when it has none); `None` for another mechanism.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    cmd: &str,
    script: &SmtpScript,
) -> io::Result<Option<bool>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut words = cmd.split_whitespace().skip(1);
    let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
    let initial = words.next().map(str::to_owned);
    let mut line = String::new();
    let mut ask = async |io: &mut BufReader<S>, challenge: &str| -> io::Result<String> {
        io.write_all(format!("334 {challenge}\r\n").as_bytes())
            .await?;
        io.flush().await?;
        read_line(io, &mut line).await?;
        let decoded = b64.decode(line.trim_end()).unwrap_or_default();
        Ok(String::from_utf8_lossy(&decoded).into_owned())
    };
    let (user, password) = match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(i) => String::from_utf8_lossy(&b64.decode(i).unwrap_or_default()).into_owned(),
                None => ask(io, "").await?,
            };
            let mut parts = response.split('\0').skip(1);
            let user = parts.next().unwrap_or("").to_owned();
            (user, parts.next().unwrap_or("").to_owned())
        }
        "LOGIN" => {
            let user = ask(io, "VXNlcm5hbWU6").await?;
            (user, ask(io, "UGFzc3dvcmQ6").await?)
        }
        _ => return Ok(None),
    };
    Ok(Some(
        script
            .credentials
            .as_ref()
            .is_none_or(|(u, p)| *u == user && *p == password),
    ))
}
