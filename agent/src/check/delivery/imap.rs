//! A small IMAP4rev1 client (RFC 3501) for the delivery check: TLS
//! (implicit or STARTTLS), login, SELECT, UID SEARCH/FETCH/STORE,
//! EXPUNGE, IDLE (RFC 2177), LOGOUT. Every read is bounded: a line is at
//! most [`MAX_LINE`] octets, a literal at most [`MAX_LITERAL`], and all
//! responses to one command together at most [`MAX_RESPONSE`], so a
//! hostile server (an endless literal, a huge FETCH, a drip feed under
//! the caller's deadline) cannot make the agent hold more.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use vantage_common::FailureClass;

use crate::check::Finding;
use crate::check::smtp::session::{Io, TlsInfo, write_line};
use crate::net;

/// Longest response line accepted, CRLF included.
pub const MAX_LINE: usize = 8 * 1024;
/// Largest literal (`{n}`) accepted.
pub const MAX_LITERAL: usize = 64 * 1024;
/// Most octets of all responses to one command.
pub const MAX_RESPONSE: usize = 256 * 1024;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// `OK`.
    Ok,
    /// `NO`: refused.
    No,
    /// `BAD`: not understood.
    Bad,
}

/// The responses to one command.
#[derive(Debug)]
pub struct Response {
    /// Untagged responses (`* ...`), each with its literals inlined.
    pub untagged: Vec<Vec<u8>>,
    /// How it ended.
    pub completion: Completion,
    /// The text of the tagged line.
    pub text: String,
}

impl Response {
    /// `NO`/`BAD` as a finding: `what` refused, the server's text quoted.
    pub fn ok_or(self, class: FailureClass, what: &str) -> Result<Response, Finding> {
        match self.completion {
            Completion::Ok => Ok(self),
            Completion::No | Completion::Bad => Err(Finding::fail(
                class,
                format!("IMAP {what} refused: {}", shown(&self.text)),
            )),
        }
    }
}

/// A server's text, cut for a message.
fn shown(text: &str) -> String {
    text.chars().take(200).filter(|c| !c.is_control()).collect()
}

fn protocol(what: impl std::fmt::Display) -> Finding {
    Finding::fail(FailureClass::Protocol, format!("IMAP: {what}"))
}

/// An IMAP connection.
pub struct Imap {
    io: BufReader<Box<dyn Io>>,
    tls: Option<TlsInfo>,
    tag: u32,
    /// What the server said it can do (after the last CAPABILITY).
    pub capabilities: Vec<String>,
}

impl std::fmt::Debug for Imap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("tls", &self.tls.is_some())
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

/// Reads one line (to LF) of at most [`MAX_LINE`] octets, appending it to
/// `out`; false at a clean end of stream.
async fn read_line<R: AsyncBufRead + Unpin>(
    io: &mut R,
    out: &mut Vec<u8>,
) -> Result<bool, Finding> {
    let start = out.len();
    loop {
        let available = io
            .fill_buf()
            .await
            .map_err(|e| protocol(format!("read: {e}")))?;
        if available.is_empty() {
            return if out.len() == start {
                Ok(false)
            } else {
                Err(protocol("connection closed mid-line"))
            };
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if out.len() - start + take > MAX_LINE {
            return Err(protocol(format!(
                "response line longer than {MAX_LINE} octets"
            )));
        }
        out.extend_from_slice(&available[..take]);
        io.consume(take);
        if done {
            return Ok(true);
        }
    }
}

/// The literal size a line announces at its end (`... {123}\r\n`).
fn literal(line: &[u8]) -> Option<usize> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Imap {
    /// Reads the greeting over `io` (TLS already up when `tls` is given).
    async fn greet(io: Box<dyn Io>, tls: Option<TlsInfo>) -> Result<Imap, Finding> {
        let mut imap = Imap {
            io: BufReader::new(io),
            tls,
            tag: 0,
            capabilities: Vec::new(),
        };
        let mut total = 0;
        let greeting = imap.read_response(&mut total).await?;
        let text = String::from_utf8_lossy(&greeting).into_owned();
        if !(text.starts_with("* OK") || text.starts_with("* PREAUTH")) {
            return Err(protocol(format!("greeting is not OK: {}", shown(&text))));
        }
        Ok(imap)
    }

    /// Connects over `tcp`: TLS from the first byte when `implicit`, else
    /// STARTTLS right after the greeting (a server without it fails).
    pub async fn connect(
        tcp: tokio::net::TcpStream,
        implicit: bool,
        sni: &ServerName<'static>,
    ) -> Result<Imap, Finding> {
        if implicit {
            let stream = net::handshake(tcp, sni).await?;
            let info = TlsInfo::of(stream.get_ref().1);
            return Imap::greet(Box::new(stream), Some(info)).await;
        }
        let mut imap = Imap::greet(Box::new(tcp), None).await?;
        imap.command("STARTTLS")
            .await?
            .ok_or(FailureClass::Policy, "STARTTLS")?;
        if !imap.io.buffer().is_empty() {
            return Err(protocol(
                "server sent data after its STARTTLS reply (plaintext injection)",
            ));
        }
        let stream = net::handshake(imap.io.into_inner(), sni).await?;
        let info = TlsInfo::of(stream.get_ref().1);
        Ok(Imap {
            io: BufReader::new(Box::new(stream)),
            tls: Some(info),
            tag: 0,
            capabilities: Vec::new(),
        })
    }

    /// The TLS state.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// One whole response (a line and the literals it announces), its
    /// size counted into `total`.
    async fn read_response(&mut self, total: &mut usize) -> Result<Vec<u8>, Finding> {
        let mut response = Vec::new();
        loop {
            let before = response.len();
            if !read_line(&mut self.io, &mut response).await? {
                return Err(protocol("connection closed by server"));
            }
            *total += response.len() - before;
            let Some(size) = literal(&response[before..]) else {
                break;
            };
            if size > MAX_LITERAL || *total + size > MAX_RESPONSE {
                return Err(protocol(format!(
                    "a literal of {size} octets is more than the {MAX_LITERAL} (or {MAX_RESPONSE} in all) accepted"
                )));
            }
            let at = response.len();
            response.resize(at + size, 0);
            self.io
                .read_exact(&mut response[at..])
                .await
                .map_err(|e| protocol(format!("reading a literal: {e}")))?;
            *total += size;
        }
        if *total > MAX_RESPONSE {
            return Err(protocol(format!(
                "responses larger than {MAX_RESPONSE} octets"
            )));
        }
        Ok(response)
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("v{}", self.tag)
    }

    async fn send(&mut self, line: &str, named: &str) -> Result<(), Finding> {
        write_line(self.io.get_mut(), line)
            .await
            .map_err(|e| protocol(format!("sending {named}: {e}")))
    }

    /// Reads responses up to the one tagged `tag`; a `+` continuation
    /// ends the read too when `until_continuation` (`Ok(None)`).
    async fn collect(
        &mut self,
        tag: &str,
        until_continuation: bool,
    ) -> Result<Option<Response>, Finding> {
        let mut untagged = Vec::new();
        let mut total = 0;
        loop {
            let response = self.read_response(&mut total).await?;
            if response.starts_with(b"+") && until_continuation {
                return Ok(None);
            }
            if response.starts_with(b"* ") {
                if let Some(caps) = response.strip_prefix(b"* CAPABILITY ") {
                    self.capabilities = String::from_utf8_lossy(caps)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect();
                }
                untagged.push(response);
                continue;
            }
            let text = String::from_utf8_lossy(&response).trim_end().to_owned();
            let Some(rest) = text.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) else {
                // A continuation nobody asked for, or another tag: skipped.
                continue;
            };
            let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let completion = match word.to_ascii_uppercase().as_str() {
                "OK" => Completion::Ok,
                "NO" => Completion::No,
                "BAD" => Completion::Bad,
                _ => return Err(protocol(format!("malformed completion: {}", shown(text)))),
            };
            return Ok(Some(Response {
                untagged,
                completion,
                text: text.to_owned(),
            }));
        }
    }

    /// Sends a command (without its tag) and reads its responses.
    pub async fn command(&mut self, command: &str) -> Result<Response, Finding> {
        let tag = self.next_tag();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or(command)
            .to_owned();
        self.send(&format!("{tag} {command}"), &verb).await?;
        self.collect(&tag, false)
            .await?
            .ok_or_else(|| protocol("unexpected continuation"))
    }

    /// Whether the server offers `capability` (asked for once when unknown).
    pub async fn offers(&mut self, capability: &str) -> Result<bool, Finding> {
        if self.capabilities.is_empty() {
            self.command("CAPABILITY").await?;
        }
        Ok(self
            .capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(capability)))
    }

    /// Logs in: AUTHENTICATE PLAIN where offered, else LOGIN. The
    /// credentials never appear in an error. Capabilities are asked anew
    /// afterwards (servers offer more once logged in).
    pub async fn login(&mut self, user: &str, password: &str) -> Result<Response, Finding> {
        let response = self.authenticate(user, password).await?;
        self.capabilities.clear();
        Ok(response)
    }

    async fn authenticate(&mut self, user: &str, password: &str) -> Result<Response, Finding> {
        if self.offers("AUTH=PLAIN").await? {
            let tag = self.next_tag();
            self.send(&format!("{tag} AUTHENTICATE PLAIN"), "AUTHENTICATE")
                .await?;
            if let Some(done) = self.collect(&tag, true).await? {
                return Ok(done);
            }
            let response = B64.encode(format!("\0{user}\0{password}"));
            self.send(&response, "AUTHENTICATE response").await?;
            return self
                .collect(&tag, false)
                .await?
                .ok_or_else(|| protocol("AUTHENTICATE: a second challenge"));
        }
        if [user, password]
            .iter()
            .any(|s| s.contains(['\r', '\n', '\0']))
        {
            return Err(Finding::error(
                FailureClass::Auth,
                "IMAP LOGIN cannot carry a user or password with line breaks",
            ));
        }
        let tag = self.next_tag();
        self.send(
            &format!("{tag} LOGIN {} {}", quoted(user), quoted(password)),
            "LOGIN",
        )
        .await?;
        self.collect(&tag, false)
            .await?
            .ok_or_else(|| protocol("LOGIN: unexpected continuation"))
    }

    /// UIDs a `UID SEARCH` answered.
    pub async fn search(&mut self, criteria: &str) -> Result<Vec<u32>, Finding> {
        let response = self
            .command(&format!("UID SEARCH {criteria}"))
            .await?
            .ok_or(FailureClass::Protocol, "SEARCH")?;
        Ok(response
            .untagged
            .iter()
            .filter_map(|r| r.strip_prefix(b"* SEARCH"))
            .flat_map(|ids| {
                String::from_utf8_lossy(ids)
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect())
    }

    /// Waits in IDLE until the server reports a change (`EXISTS`,
    /// `RECENT`) or `wait` has passed, then ends it. True on a change.
    pub async fn idle(&mut self, wait: std::time::Duration) -> Result<bool, Finding> {
        let tag = self.next_tag();
        self.send(&format!("{tag} IDLE"), "IDLE").await?;
        if let Some(done) = self.collect(&tag, true).await? {
            return Err(protocol(format!("IDLE refused: {}", shown(&done.text))));
        }
        let mut total = 0;
        let changed = tokio::time::timeout(wait, async {
            loop {
                let response = self.read_response(&mut total).await?;
                let text = String::from_utf8_lossy(&response).to_ascii_uppercase();
                if text.starts_with("* ") && (text.contains(" EXISTS") || text.contains(" RECENT"))
                {
                    return Ok::<bool, Finding>(true);
                }
                // Keep-alives (`* OK Still here`) and others: go on waiting.
                total = 0;
            }
        })
        .await
        .unwrap_or(Ok(false))?;
        self.send("DONE", "DONE").await?;
        self.collect(&tag, false)
            .await?
            .ok_or_else(|| protocol("IDLE: unexpected continuation"))?;
        Ok(changed)
    }
}

/// An IMAP quoted string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_found_at_the_end_of_a_line() {
        assert_eq!(literal(b"* 1 FETCH (BODY[HEADER] {342}\r\n"), Some(342));
        assert_eq!(literal(b"* 1 FETCH (BODY[HEADER] {12+}\r\n"), Some(12));
        assert_eq!(literal(b"* OK {not a literal}\r\n"), None);
        assert_eq!(literal(b"* OK done\r\n"), None);
        assert_eq!(quoted(r#"pa"ss\word"#), r#""pa\"ss\\word""#);
    }
}
