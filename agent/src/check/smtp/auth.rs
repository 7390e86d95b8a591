//! SMTP AUTH (RFC 4954) with the strongest mechanism both sides support:
//! SCRAM-SHA-256, SCRAM-SHA-1 (RFC 5802, 7677; no channel binding, and the
//! server's signature is verified), PLAIN (RFC 4616), LOGIN. Credentials
//! only ever go out through [`Session::respond`] or an `AUTH` line, whose
//! errors name the step, never the line.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2, rand};
use vantage_common::FailureClass;

use super::reply::Reply;
use super::session::Session;
use crate::check::Finding;

/// A SASL mechanism the agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SCRAM with SHA-256: the password never crosses the wire.
    ScramSha256,
    /// SCRAM with SHA-1.
    ScramSha1,
    /// The password, base64-encoded, in one line (over TLS only).
    Plain,
    /// User name and password in two lines (over TLS only).
    Login,
}

/// Most PBKDF2 iterations a SCRAM server may ask for: each one costs the
/// agent CPU, and a hostile server could ask for billions.
pub const MAX_ITERATIONS: u32 = 100_000;

impl Mechanism {
    /// Strongest first.
    const PREFERENCE: [Mechanism; 4] = [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
        Mechanism::Login,
    ];

    /// Its name in `AUTH`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }

    /// The strongest of `offered` (EHLO's AUTH list) the agent speaks.
    pub fn strongest(offered: &[String]) -> Option<Mechanism> {
        Self::PREFERENCE
            .into_iter()
            .find(|m| offered.iter().any(|o| o.eq_ignore_ascii_case(m.name())))
    }
}

/// Runs the exchange and returns the server's last reply (235 when the
/// user is logged in, a refusal otherwise). A malformed exchange is a
/// `protocol` failure; a SCRAM server that cannot prove it knows the
/// password is an `auth` failure.
pub async fn login(
    session: &mut Session,
    mechanism: Mechanism,
    user: &str,
    password: &str,
) -> Result<Reply, Finding> {
    match mechanism {
        Mechanism::Plain => {
            let response = B64.encode(format!("\0{user}\0{password}"));
            let reply = session.command(&format!("AUTH PLAIN {response}")).await?;
            // A server that ignores the initial response asks for it.
            if reply.code == 334 {
                return session.respond(&response).await;
            }
            Ok(reply)
        }
        Mechanism::Login => {
            let reply = session.command("AUTH LOGIN").await?;
            if reply.code != 334 {
                return Ok(reply);
            }
            let reply = session.respond(&B64.encode(user)).await?;
            if reply.code != 334 {
                return Ok(reply);
            }
            session.respond(&B64.encode(password)).await
        }
        Mechanism::ScramSha256 => scram(session, &SHA256, user, password).await,
        Mechanism::ScramSha1 => scram(session, &SHA1, user, password).await,
    }
}

/// The primitives of one SCRAM variant.
struct Scram {
    name: &'static str,
    pbkdf2: pbkdf2::Algorithm,
    hmac: hmac::Algorithm,
    digest: &'static digest::Algorithm,
}

const SHA256: Scram = Scram {
    name: "SCRAM-SHA-256",
    pbkdf2: pbkdf2::PBKDF2_HMAC_SHA256,
    hmac: hmac::HMAC_SHA256,
    digest: &digest::SHA256,
};

const SHA1: Scram = Scram {
    name: "SCRAM-SHA-1",
    pbkdf2: pbkdf2::PBKDF2_HMAC_SHA1,
    hmac: hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
    digest: &digest::SHA1_FOR_LEGACY_USE_ONLY,
};

impl Scram {
    /// The client's proof and the signature the server must send back
    /// for `auth_message` (RFC 5802 §3).
    fn sign(
        &self,
        password: &str,
        salt: &[u8],
        iterations: std::num::NonZeroU32,
        auth_message: &str,
    ) -> (Vec<u8>, hmac::Tag) {
        let mut salted = vec![0u8; self.digest.output_len()];
        pbkdf2::derive(
            self.pbkdf2,
            iterations,
            salt,
            password.as_bytes(),
            &mut salted,
        );
        let salted = hmac::Key::new(self.hmac, &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(self.digest, client_key.as_ref());
        let signature = hmac::sign(
            &hmac::Key::new(self.hmac, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::sign(&salted, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(self.hmac, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        (proof, server_signature)
    }
}

fn malformed(what: impl std::fmt::Display) -> Finding {
    Finding::fail(FailureClass::Protocol, format!("SCRAM: {what}"))
}

/// The decoded text of a 334 challenge.
fn challenge(reply: &Reply) -> Result<String, Finding> {
    let text = reply.lines.first().map_or("", |l| l.trim());
    let bytes = B64
        .decode(text)
        .map_err(|_| malformed("challenge is not base64"))?;
    String::from_utf8(bytes).map_err(|_| malformed("challenge is not UTF-8"))
}

/// `n=` value: `,` and `=` escaped (RFC 5802 §5.1).
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The value of attribute `key` in a SCRAM message.
fn attribute(message: &str, key: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(key) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

async fn scram(
    session: &mut Session,
    scram: &Scram,
    user: &str,
    password: &str,
) -> Result<Reply, Finding> {
    let mut raw = [0u8; 18];
    rand::SecureRandom::fill(&rand::SystemRandom::new(), &mut raw)
        .map_err(|_| Finding::error(FailureClass::Auth, "no randomness for a SCRAM nonce"))?;
    let nonce = B64.encode(raw);
    let client_first_bare = format!("n={},r={nonce}", saslname(user));
    let first = B64.encode(format!("n,,{client_first_bare}"));
    let reply = session
        .command(&format!("AUTH {} {first}", scram.name))
        .await?;
    if reply.code != 334 {
        return Ok(reply);
    }

    let server_first = challenge(&reply)?;
    if server_first.starts_with("m=") {
        return Err(malformed("server requires an unknown extension"));
    }
    let combined = attribute(&server_first, 'r').ok_or_else(|| malformed("no nonce"))?;
    if !combined.starts_with(&nonce) || combined.len() == nonce.len() {
        return Err(malformed("server nonce does not extend ours"));
    }
    let salt = attribute(&server_first, 's')
        .and_then(|s| B64.decode(s).ok())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("no salt"))?;
    let iterations = attribute(&server_first, 'i')
        .and_then(|i| i.parse::<u32>().ok())
        .and_then(std::num::NonZeroU32::new)
        .ok_or_else(|| malformed("no iteration count"))?;
    if iterations.get() > MAX_ITERATIONS {
        return Err(malformed(format!(
            "server asks for {iterations} iterations, more than {MAX_ITERATIONS}"
        )));
    }

    // "biws" is base64 of the GS2 header "n,,": no channel binding.
    let without_proof = format!("c=biws,r={combined}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let (proof, server_signature) = scram.sign(password, &salt, iterations, &auth_message);

    let final_message = B64.encode(format!("{without_proof},p={}", B64.encode(proof)));
    let reply = session.respond(&final_message).await?;
    if reply.code != 334 {
        // 235 without a server-final message (the server accepted the
        // proof, which only the password's holder can check), or a refusal.
        return Ok(reply);
    }
    let server_final = challenge(&reply)?;
    if let Some(e) = attribute(&server_final, 'e') {
        session.respond("*").await?;
        return Err(Finding::fail(
            FailureClass::Auth,
            format!("{}: server says {e}", scram.name),
        ));
    }
    let verified = attribute(&server_final, 'v')
        .and_then(|v| B64.decode(v).ok())
        .is_some_and(|v| v == server_signature.as_ref());
    if !verified {
        session.respond("*").await?;
        return Err(Finding::fail(
            FailureClass::Auth,
            format!(
                "{}: the server's signature does not verify (it does not know the password)",
                scram.name
            ),
        ));
    }
    session.respond("").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strongest_offered_mechanism_is_chosen() {
        let offered = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            Mechanism::strongest(&offered("LOGIN PLAIN scram-sha-1 SCRAM-SHA-256")),
            Some(Mechanism::ScramSha256)
        );
        assert_eq!(
            Mechanism::strongest(&offered("LOGIN PLAIN")),
            Some(Mechanism::Plain)
        );
        assert_eq!(Mechanism::strongest(&offered("CRAM-MD5 XOAUTH2")), None);
    }

    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap_or_default();
        let (proof, server) = SHA256.sign(
            "pencil",
            &salt,
            std::num::NonZeroU32::MIN.saturating_add(4095),
            &format!("{bare},{server_first},{without_proof}"),
        );
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            B64.encode(server.as_ref()),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn scram_attributes_and_names() {
        assert_eq!(saslname("a=b,c"), "a=3Db=2Cc");
        let m = "r=abc,s=c2FsdA==,i=4096";
        assert_eq!(attribute(m, 'r'), Some("abc"));
        assert_eq!(attribute(m, 's'), Some("c2FsdA=="));
        assert_eq!(attribute(m, 'x'), None);
    }
}
