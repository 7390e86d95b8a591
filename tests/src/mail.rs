//! A real Postfix and Dovecot (the Debian packages) for one test: each
//! instance with its own configuration, queue, state and mailboxes in a
//! temporary directory, listening on loopback ports chosen at start, with
//! a certificate from a test CA, one mailbox (`probe@mail.test`, password
//! [`PASSWORD`]) and Dovecot SASL behind Postfix's submission port.
//!
//! - `smtp`: like port 25 — STARTTLS offered, no AUTH, mail for
//!   `mail.test` accepted, `defer@mail.test` answered `450 4.2.0`.
//! - `submission`: like port 587 — STARTTLS required, AUTH (PLAIN, LOGIN,
//!   SCRAM-SHA-1, SCRAM-SHA-256) through Dovecot.
//! - `imap` (STARTTLS) and `imaps` (implicit TLS): Dovecot.
//!
//! Needs root (Postfix's master runs as root and drops privileges) and the
//! packages `postfix dovecot-core dovecot-imapd`; [`MailServers::start`]
//! says why it cannot run (see [`crate::missing`]).

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certs::{TestCa, Validity};

/// The mailbox's user (Dovecot) and address (Postfix).
pub const USER: &str = "probe";
/// Its address.
pub const ADDRESS: &str = "probe@mail.test";
/// Its password.
pub const PASSWORD: &str = "Pr0be-s3cret-for-vantage";
/// A recipient Postfix defers (`450 4.2.0`).
pub const DEFERRED: &str = "defer@mail.test";
/// The name the servers' certificate is for, and Postfix's `myhostname`.
pub const HOSTNAME: &str = "mx.mail.test";

/// Why the servers could not start.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Writing the configuration or starting a process failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A server did not come up.
    #[error("{0}")]
    Start(String),
}

/// A running Postfix and Dovecot; both are stopped when dropped.
#[derive(Debug)]
pub struct MailServers {
    dir: tempfile::TempDir,
    /// Port-25-style SMTP.
    pub smtp: SocketAddr,
    /// Submission with STARTTLS and AUTH.
    pub submission: SocketAddr,
    /// IMAP with STARTTLS.
    pub imap: SocketAddr,
    /// IMAP over implicit TLS.
    pub imaps: SocketAddr,
    /// The test CA's certificate (PEM), for `--ca-file`.
    pub ca_file: PathBuf,
    postfix: Option<Child>,
    dovecot: Option<Child>,
}

const POSTFIX: &str = "/usr/sbin/postfix";
const DOVECOT: &str = "/usr/sbin/dovecot";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Uid and gid of a system user, from `/etc/passwd`.
fn ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> Result<SocketAddr, MailError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| MailError::Io("binding a loopback port".into(), e))
}

fn write(path: &Path, text: &str) -> Result<(), MailError> {
    std::fs::write(path, text).map_err(|e| MailError::Io(path.display().to_string(), e))
}

fn mkdir(path: &Path) -> Result<(), MailError> {
    std::fs::create_dir_all(path).map_err(|e| MailError::Io(path.display().to_string(), e))
}

fn chown(path: &Path, (uid, gid): (u32, u32)) -> Result<(), MailError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| MailError::Io(format!("chown {}", path.display()), e))
}

fn log_file(path: &Path) -> Result<Stdio, MailError> {
    std::fs::File::create(path)
        .map(Stdio::from)
        .map_err(|e| MailError::Io(path.display().to_string(), e))
}

/// Waits until `addr` accepts connections and, with a `greeting`, sends
/// a line starting with it.
fn wait_for(
    addr: SocketAddr,
    greeting: Option<&str>,
    what: &str,
    log: &Path,
) -> Result<(), MailError> {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            let Some(greeting) = greeting else {
                return Ok(());
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf)
                && buf[..n].starts_with(greeting.as_bytes())
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(MailError::Start(format!(
                "{what} did not answer on {addr} within 30 s; its log:\n{tail}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl MailServers {
    /// Starts both, or says why they cannot run here: `Ok(None)` after
    /// printing why the test skips (a failure under
    /// `VANTAGE_REQUIRE_SERVERS`).
    pub fn start() -> Result<Option<Self>, MailError> {
        if !Path::new(POSTFIX).exists() || !Path::new(DOVECOT).exists() {
            crate::missing("Postfix or Dovecot (packages postfix, dovecot-core, dovecot-imapd)");
            return Ok(None);
        }
        if !is_root() {
            let why = "Postfix's master must start as root";
            assert!(
                std::env::var_os("VANTAGE_REQUIRE_SERVERS").is_none(),
                "VANTAGE_REQUIRE_SERVERS is set but {why}"
            );
            println!("SKIP: {why}");
            return Ok(None);
        }
        let (Some(postfix), Some(vmail)) = (ids("postfix"), ids("dovenull")) else {
            return Err(MailError::Start(
                "the users postfix and dovenull are missing".into(),
            ));
        };
        let dir = tempfile::Builder::new()
            .prefix("vt-mail-")
            .tempdir()
            .map_err(|e| MailError::Io("tempdir".into(), e))?;
        let root = dir.path().to_path_buf();
        // Postfix's and Dovecot's unprivileged processes walk these paths.
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| MailError::Io(root.display().to_string(), e))?;

        let ca = TestCa::new("vantage mail CA").map_err(|e| MailError::Start(e.to_string()))?;
        let cert = ca
            .issue(&[HOSTNAME], Validity::GOOD)
            .map_err(|e| MailError::Start(e.to_string()))?;
        let ca_file = ca
            .write_pem(&root)
            .map_err(|e| MailError::Start(e.to_string()))?;
        write(&root.join("cert.pem"), &cert.chain_pem)?;
        write(&root.join("key.pem"), &cert.key_pem)?;

        let (smtp, submission, imap, imaps) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let r = root.display();

        // Dovecot: IMAP for the mailbox, SASL for Postfix.
        let dove = root.join("dove");
        for d in ["run", "state"] {
            mkdir(&dove.join(d))?;
        }
        let home = root.join("home").join(USER);
        for dir in [home.clone(), home.join("Maildir")]
            .into_iter()
            .chain(["new", "cur", "tmp"].map(|d| home.join("Maildir").join(d)))
        {
            mkdir(&dir)?;
            chown(&dir, vmail)?;
        }
        write(
            &dove.join("users"),
            &format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"),
        )?;
        write(
            &dove.join("dovecot.conf"),
            &format!(
                "base_dir = {r}/dove/run
state_dir = {r}/dove/state
log_path = {r}/dove/log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{r}/cert.pem
ssl_key = <{r}/key.pem
auth_mechanisms = plain login scram-sha-256 scram-sha-1
disable_plaintext_auth = yes
mail_location = maildir:{r}/home/%n/Maildir
first_valid_uid = {uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/dove/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/home/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service auth {{
  unix_listener {r}/dove/auth-client {{
    mode = 0666
  }}
}}
",
                uid = vmail.0,
                gid = vmail.1,
                imap_port = imap.port(),
                imaps_port = imaps.port(),
            ),
        )?;

        // Postfix: a port-25 service and a submission service.
        let pf = root.join("pf");
        let etc = pf.join("etc");
        mkdir(&etc)?;
        mkdir(&pf.join("queue"))?;
        mkdir(&pf.join("data"))?;
        chown(&pf.join("data"), postfix)?;
        write(
            &etc.join("rcpt_access"),
            &format!("{DEFERRED} 450 4.2.0 greylisted, try again later\n"),
        )?;
        write(
            &etc.join("mailboxes"),
            &format!("{ADDRESS} {USER}/Maildir/\n"),
        )?;
        write(
            &etc.join("main.cf"),
            &format!(
                "compatibility_level = 3.6
queue_directory = {r}/pf/queue
data_directory = {r}/pf/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = /dev/stdout
myhostname = {HOSTNAME}
mydomain = mail.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relayhost =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{r}/pf/etc/rcpt_access
virtual_mailbox_domains = mail.test
virtual_mailbox_maps = texthash:{r}/pf/etc/mailboxes
virtual_mailbox_base = {r}/home
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_tls_cert_file = {r}/cert.pem
smtpd_tls_key_file = {r}/key.pem
smtpd_tls_security_level = may
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_sasl_type = dovecot
smtpd_sasl_path = {r}/dove/auth-client
smtpd_tls_auth_only = yes
",
                uid = vmail.0,
                gid = vmail.1,
            ),
        )?;
        write(
            &etc.join("master.cf"),
            &format!(
                "{smtp} inet n - n - - smtpd
{submission} inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
{SERVICES}"
            ),
        )?;

        let dovecot = Command::new(DOVECOT)
            .process_group(0)
            .args(["-F", "-c"])
            .arg(dove.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(log_file(&root.join("dovecot.out"))?)
            .stderr(log_file(&root.join("dovecot.err"))?)
            .spawn()
            .map_err(|e| MailError::Io(DOVECOT.into(), e))?;
        let postfix_log = root.join("postfix.log");
        // Postfix's master signals its whole process group when it stops:
        // a group of its own keeps that from reaching this process.
        let postfix = Command::new(POSTFIX)
            .process_group(0)
            .arg("-c")
            .arg(&etc)
            .arg("start-fg")
            .stdin(Stdio::null())
            .stdout(log_file(&postfix_log)?)
            .stderr(log_file(&root.join("postfix.err"))?)
            .spawn()
            .map_err(|e| MailError::Io(POSTFIX.into(), e))?;
        let servers = MailServers {
            dir,
            smtp,
            submission,
            imap,
            imaps,
            ca_file,
            postfix: Some(postfix),
            dovecot: Some(dovecot),
        };
        let dovecot_log = root.join("dove/log");
        wait_for(imaps, None, "Dovecot (imaps)", &dovecot_log)?;
        wait_for(imap, Some("* OK"), "Dovecot (imap)", &dovecot_log)?;
        wait_for(smtp, Some("220"), "Postfix (smtp)", &postfix_log)?;
        wait_for(
            submission,
            Some("220"),
            "Postfix (submission)",
            &postfix_log,
        )?;
        Ok(Some(servers))
    }

    /// The messages delivered to the mailbox so far (files in its
    /// maildir's `new` and `cur`).
    pub fn delivered(&self) -> Vec<PathBuf> {
        let maildir = self.maildir();
        ["new", "cur"]
            .iter()
            .filter_map(|d| std::fs::read_dir(maildir.join(d)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect()
    }

    /// A file holding [`PASSWORD`] (for `password_file` parameters).
    pub fn password_file(&self) -> Result<PathBuf, MailError> {
        let path = self.dir.path().join("password");
        write(&path, PASSWORD)?;
        Ok(path)
    }

    /// Puts a message straight into the mailbox's maildir (as if
    /// delivered), under a file name starting with `name`.
    pub fn deliver_raw(&self, name: &str, message: &str) -> Result<PathBuf, MailError> {
        let path = self
            .maildir()
            .join("new")
            .join(format!("{name}.vantage-test"));
        write(&path, message)?;
        Ok(path)
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("home").join(USER).join("Maildir")
    }

    /// Postfix's log so far (what it said of each connection).
    pub fn postfix_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// Dovecot's log so far.
    pub fn dovecot_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dove/log")).unwrap_or_default()
    }

    /// Stops Dovecot (IMAP and Postfix's SASL go with it) and waits until
    /// neither its IMAP ports nor its SASL socket answer: its master exits
    /// before every child has.
    pub fn stop_dovecot(&mut self) {
        assert!(
            self.halt_dovecot(),
            "Dovecot still answers 30 s after it was stopped"
        );
    }

    /// [`Self::stop_dovecot`]; false when it still answers after 30 s.
    fn halt_dovecot(&mut self) -> bool {
        let Some(mut child) = self.dovecot.take() else {
            return true;
        };
        stop(&mut child);
        let sasl = self.dir.path().join("dove/auth-client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let answers = std::os::unix::net::UnixStream::connect(&sasl).is_ok()
                || [self.imap, self.imaps].iter().any(|a| {
                    std::net::TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok()
                });
            if !answers {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// SIGTERM, then a bounded wait; SIGKILL if it does not go.
fn stop(child: &mut Child) {
    let _ = crate::measure::signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl MailServers {
    /// Stops Postfix: `postfix stop` signals its master (which
    /// `start-fg` runs as a child of its own, so signalling our child is
    /// not enough), then waits until the master is gone (SIGKILL after 10 s).
    fn stop_postfix(&mut self) {
        let Some(mut child) = self.postfix.take() else {
            return;
        };
        let pf = self.dir.path().join("pf");
        let master = std::fs::read_to_string(pf.join("queue/pid/master.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(pf.join("etc"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        stop(&mut child);
        if let Some(pid) = master {
            let alive = || Path::new(&format!("/proc/{pid}")).exists();
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive() {
                let _ = crate::measure::signal(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        self.stop_postfix();
        // Never a panic here: this also runs while a failed test unwinds.
        self.halt_dovecot();
    }
}

/// Postfix's internal services (Debian's master.cf, chroot off).
const SERVICES: &str = "pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";
