//! An in-process IMAP server (implicit TLS) over the messages a testkit
//! SMTP server received: enough of IMAP4rev1 for the delivery probe
//! (AUTHENTICATE PLAIN, LOGIN, SELECT, UID SEARCH HEADER, UID FETCH of
//! header fields, UID STORE, UID EXPUNGE, IDLE, NOOP, LOGOUT), and the
//! hostile behaviours the probe must survive once logged in (an endless
//! literal, a huge FETCH, a drip feed, an endless line).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rustls::ServerConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::smtp::Seen;

/// Misbehaviour, met when the client searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImapFault {
    /// Announce a literal of this many octets and send it (slowly) in full.
    Literal(usize),
    /// A line that never ends.
    EndlessLine,
    /// The search answer one octet at a time, this far apart.
    Drip(Duration),
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ImapScript {
    /// Its certificate (implicit TLS).
    pub tls: Arc<ServerConfig>,
    /// The one user and password accepted.
    pub credentials: (String, String),
    /// Offer IDLE.
    pub idle: bool,
    /// Misbehaviour.
    pub fault: Option<ImapFault>,
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct ImapServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Messages expunged so far (their header texts).
    pub expunged: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for ImapServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The mailbox: the SMTP server's messages, less the expunged ones.
struct Mailbox {
    seen: Arc<Seen>,
    expunged: Arc<Mutex<Vec<String>>>,
}

impl Mailbox {
    /// (UID, message) of every message still there; UIDs are positions in
    /// the SMTP server's list, so they never change.
    fn messages(&self) -> Vec<(u32, String)> {
        let all = self
            .seen
            .messages
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let gone = self.expunged.lock().map(|e| e.clone()).unwrap_or_default();
        all.into_iter()
            .zip(1u32..)
            .filter(|((m, _), _)| !gone.contains(m))
            .map(|((m, _), uid)| (uid, m))
            .collect()
    }
}

impl ImapServer {
    /// Starts a server on 127.0.0.1 over `seen`'s messages.
    pub async fn start(script: ImapScript, seen: Arc<Seen>) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let expunged = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let task = tokio::spawn({
            let expunged = expunged.clone();
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let script = script.clone();
                    let mailbox = Mailbox {
                        seen: seen.clone(),
                        expunged: expunged.clone(),
                    };
                    tokio::spawn(async move {
                        let acceptor = TlsAcceptor::from(script.tls.clone());
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            // A client that goes away mid-session is normal here.
                            let _ = serve(BufReader::new(stream), &script, &mailbox).await;
                        }
                    });
                }
            }
        });
        Ok(ImapServer {
            addr,
            expunged,
            task,
        })
    }
}

/// The quoted string after `key` in `line` (`HEADER X-Vantage-Probe "v"`).
fn last_quoted(line: &str) -> String {
    line.rsplit('"').nth(1).unwrap_or("").to_owned()
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: BufReader<S>,
    script: &ImapScript,
    mailbox: &Mailbox,
) -> io::Result<()> {
    let caps = if script.idle {
        "IMAP4rev1 AUTH=PLAIN IDLE UIDPLUS"
    } else {
        "IMAP4rev1 AUTH=PLAIN UIDPLUS"
    };
    io.write_all(format!("* OK [CAPABILITY {caps}] testkit ready\r\n").as_bytes())
        .await?;
    io.flush().await?;
    let mut deleted: Vec<u32> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let text = line.trim_end().to_owned();
        let mut words = text.splitn(3, ' ');
        let tag = words.next().unwrap_or("*").to_owned();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let rest = words.next().unwrap_or("").to_owned();
        let reply = match verb.as_str() {
            "CAPABILITY" => format!("* CAPABILITY {caps}\r\n{tag} OK done\r\n"),
            "AUTHENTICATE" => {
                io.write_all(b"+ \r\n").await?;
                io.flush().await?;
                line.clear();
                io.read_line(&mut line).await?;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(line.trim_end())
                    .unwrap_or_default();
                let decoded = String::from_utf8_lossy(&decoded).into_owned();
                let mut parts = decoded.split('\0').skip(1);
                let (user, password) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if (user, password)
                    == (script.credentials.0.as_str(), script.credentials.1.as_str())
                {
                    format!("{tag} OK logged in\r\n")
                } else {
                    format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
                }
            }
            "SELECT" => format!(
                "* {} EXISTS\r\n{tag} OK [READ-WRITE] selected\r\n",
                mailbox.messages().len()
            ),
            "NOOP" => format!("{tag} OK done\r\n"),
            "LOGOUT" => {
                io.write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())
                    .await?;
                io.flush().await?;
                return Ok(());
            }
            "IDLE" => {
                let before = mailbox.messages().len();
                io.write_all(b"+ idling\r\n").await?;
                io.flush().await?;
                let mut done = String::new();
                let mut told = false;
                loop {
                    tokio::select! {
                        read = io.read_line(&mut done) => {
                            if read? == 0 {
                                return Ok(());
                            }
                            break;
                        }
                        _ = tokio::time::sleep(Duration::from_millis(50)), if !told => {
                            let now = mailbox.messages().len();
                            if now != before {
                                io.write_all(format!("* {now} EXISTS\r\n").as_bytes()).await?;
                                io.flush().await?;
                                told = true;
                            }
                        }
                    }
                }
                format!("{tag} OK idle done\r\n")
            }
            "UID" => {
                let mut sub = rest.splitn(3, ' ');
                let command = sub.next().unwrap_or("").to_ascii_uppercase();
                let set = sub.next().unwrap_or("").to_owned();
                let args = format!("{set} {}", sub.next().unwrap_or(""));
                match command.as_str() {
                    "SEARCH" => {
                        match &script.fault {
                            Some(ImapFault::Literal(size)) => {
                                io.write_all(format!("* SEARCH {{{size}}}\r\n").as_bytes())
                                    .await?;
                                let chunk = vec![b'7'; 64 * 1024];
                                let mut left = *size;
                                while left > 0 {
                                    let n = left.min(chunk.len());
                                    io.write_all(&chunk[..n]).await?;
                                    left -= n;
                                }
                                return Ok(());
                            }
                            Some(ImapFault::EndlessLine) => {
                                io.write_all(b"* SEARCH ").await?;
                                let chunk = [b'1'; 4096];
                                for _ in 0..25_600 {
                                    io.write_all(&chunk).await?;
                                }
                                return Ok(());
                            }
                            Some(ImapFault::Drip(every)) => {
                                for b in b"* SEARCH 1 2 3 4 5 6 7 8 9\r\n" {
                                    io.write_all(&[*b]).await?;
                                    io.flush().await?;
                                    tokio::time::sleep(*every).await;
                                }
                            }
                            None => {}
                        }
                        let value = last_quoted(&args);
                        let uids: Vec<String> = mailbox
                            .messages()
                            .into_iter()
                            .filter(|(_, m)| {
                                m.lines().any(|l| {
                                    l.to_ascii_lowercase().starts_with("x-vantage-probe:")
                                        && l.contains(&value)
                                })
                            })
                            .map(|(uid, _)| uid.to_string())
                            .collect();
                        format!("* SEARCH {}\r\n{tag} OK done\r\n", uids.join(" "))
                    }
                    "FETCH" => {
                        let uid: u32 = set.parse().unwrap_or(0);
                        match mailbox.messages().into_iter().find(|(u, _)| *u == uid) {
                            Some((_, m)) => {
                                let headers: String = m
                                    .split("\r\n\r\n")
                                    .next()
                                    .unwrap_or("")
                                    .lines()
                                    .map(|l| format!("{}\r\n", l.trim_end()))
                                    .collect::<String>()
                                    + "\r\n";
                                format!(
                                    "* 1 FETCH (UID {uid} BODY[HEADER.FIELDS (RECEIVED AUTHENTICATION-RESULTS)] {{{}}}\r\n{headers})\r\n{tag} OK done\r\n",
                                    headers.len()
                                )
                            }
                            None => format!("{tag} OK done\r\n"),
                        }
                    }
                    "STORE" => {
                        deleted.extend(set.split(',').filter_map(|u| u.parse::<u32>().ok()));
                        format!("{tag} OK done\r\n")
                    }
                    "EXPUNGE" => {
                        let gone: Vec<String> = mailbox
                            .messages()
                            .into_iter()
                            .filter(|(u, _)| deleted.contains(u))
                            .map(|(_, m)| m)
                            .collect();
                        if let Ok(mut e) = mailbox.expunged.lock() {
                            e.extend(gone);
                        }
                        format!("{tag} OK expunged\r\n")
                    }
                    _ => format!("{tag} BAD unknown UID command\r\n"),
                }
            }
            _ => format!("{tag} BAD unknown command\r\n"),
        };
        io.write_all(reply.as_bytes()).await?;
        io.flush().await?;
    }
}
