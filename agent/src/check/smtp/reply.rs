//! Bounded reading of SMTP replies (RFC 5321 §4.2, §4.5.3.1.5).
//!
//! A hostile server may send endless lines, megabyte banners, thousands of
//! continuation lines or garbage; every read here is capped so a probe's
//! memory stays bounded whatever arrives.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest reply line accepted, CRLF included (RFC 5321 §4.5.3.1.5).
pub const MAX_LINE: usize = 512;
/// Largest whole reply accepted.
pub const MAX_REPLY: usize = 64 * 1024;
/// Most lines accepted in one (multi-line) reply.
pub const MAX_LINES: usize = 100;

/// One complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// Text of each line, without code, separator and CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// First line as the server sent it: `220 mx.example.org ESMTP`.
    pub fn first_line(&self) -> String {
        match self.lines.first() {
            Some(text) if !text.is_empty() => format!("{} {text}", self.code),
            _ => self.code.to_string(),
        }
    }
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The connection closed before a complete reply.
    #[error("connection closed by server{}", if *.partial { " mid-reply" } else { "" })]
    Closed {
        /// Whether part of a reply had arrived.
        partial: bool,
    },
    /// A line exceeded [`MAX_LINE`].
    #[error("reply line longer than {MAX_LINE} octets")]
    LineTooLong,
    /// The reply exceeded [`MAX_REPLY`] octets.
    #[error("reply larger than {MAX_REPLY} octets")]
    TooLarge,
    /// The reply had more than [`MAX_LINES`] lines.
    #[error("reply has more than {MAX_LINES} lines")]
    TooManyLines,
    /// A line was not `ddd text`, `ddd-text` or `ddd`.
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    /// Continuation lines changed their code.
    #[error("reply code changed within a multi-line reply ({0} then {1})")]
    CodeChanged(u16, u16),
    /// Reading failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one line ending in LF, at most [`MAX_LINE`] octets, into `buf`.
/// Returns false on a clean EOF before any byte.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<bool, ReplyError> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return if buf.is_empty() {
                Ok(false)
            } else {
                Err(ReplyError::Closed { partial: true })
            };
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + take > MAX_LINE {
            return Err(ReplyError::LineTooLong);
        }
        buf.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            return Ok(true);
        }
    }
}

/// Reads one complete (possibly multi-line) reply.
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, ReplyError> {
    let mut buf = Vec::with_capacity(MAX_LINE);
    let mut lines = Vec::new();
    let mut total = 0usize;
    let mut code = None;
    loop {
        if !read_line(reader, &mut buf).await? {
            return Err(ReplyError::Closed {
                partial: code.is_some(),
            });
        }
        total += buf.len();
        if total > MAX_REPLY {
            return Err(ReplyError::TooLarge);
        }
        if lines.len() == MAX_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let line = trim_eol(&buf);
        let (line_code, last, text) = parse_line(line)?;
        match code {
            None => code = Some(line_code),
            Some(c) if c != line_code => return Err(ReplyError::CodeChanged(c, line_code)),
            Some(_) => {}
        }
        lines.push(text);
        if last {
            return Ok(Reply {
                code: line_code,
                lines,
            });
        }
    }
}

fn trim_eol(buf: &[u8]) -> &[u8] {
    let buf = buf.strip_suffix(b"\n").unwrap_or(buf);
    buf.strip_suffix(b"\r").unwrap_or(buf)
}

fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed =
        || ReplyError::Malformed(String::from_utf8_lossy(&line[..line.len().min(60)]).into());
    if line.len() < 3
        || !line[..3].iter().all(u8::is_ascii_digit)
        || !(b'2'..=b'5').contains(&line[0])
    {
        return Err(malformed());
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed()),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8]) -> Result<Reply, ReplyError> {
        let mut r = tokio::io::BufReader::new(input);
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn multi_line_reply() {
        let r = read(b"250-mx.example.org\r\n250-SIZE 1000\r\n250 STARTTLS\r\n")
            .await
            .unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, ["mx.example.org", "SIZE 1000", "STARTTLS"]);
    }

    #[tokio::test]
    async fn bare_code_and_lf_only() {
        let r = read(b"220\n").await.unwrap();
        assert_eq!((r.code, r.lines.len()), (220, 1));
    }

    #[tokio::test]
    async fn limits_and_garbage() {
        let long = [b"220 ".as_slice(), &[b'x'; 600], b"\r\n"].concat();
        assert!(matches!(read(&long).await, Err(ReplyError::LineTooLong)));
        let many: Vec<u8> = (0..150).flat_map(|_| b"250-x\r\n".to_vec()).collect();
        assert!(matches!(read(&many).await, Err(ReplyError::TooManyLines)));
        assert!(matches!(
            read(b"HTTP/1.1 400\r\n").await,
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            read(b"250-a\r\n251 b\r\n").await,
            Err(ReplyError::CodeChanged(250, 251))
        ));
        assert!(matches!(
            read(b"250-a\r\n").await,
            Err(ReplyError::Closed { partial: true })
        ));
        assert!(matches!(
            read(b"").await,
            Err(ReplyError::Closed { partial: false })
        ));
        assert!(matches!(
            read(b"220 no newline").await,
            Err(ReplyError::Closed { partial: true })
        ));
    }
}
