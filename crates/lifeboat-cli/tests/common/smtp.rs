//! A real SMTP server on loopback for the email alert tests: aiosmtpd (installed by
//! scripts/test.sh) writing what it receives into a Maildir. Stopped when dropped, also when a
//! test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// With a login: aiosmtpd's own server with an authenticator that takes one user and password
/// (over plain SMTP, as a loopback test may).
const WITH_LOGIN: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
port, maildir, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
    # handled=False: the server says 235 or 535 itself.
    return AuthResult(success=ok, handled=False)
Controller(Mailbox(maildir), hostname="127.0.0.1", port=port, authenticator=check,
           auth_require_tls=False).start()
while True:
    time.sleep(3600)
"#;

/// One message as received.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope's recipients, as the server was told them.
    pub rcpt_to: String,
    pub to: String,
    pub from: String,
    pub subject: String,
    /// The body, decoded (quoted-printable and all) by Python's `email` package.
    pub body: String,
}

pub struct SmtpSink {
    pub port: u16,
    maildir: PathBuf,
    child: Child,
}

/// How the server talks.
enum Mode<'a> {
    Plain,
    /// AUTH with this user and password.
    Login(&'a str, &'a str),
    /// STARTTLS offered, with this certificate and key.
    StartTls(&'a Path, &'a Path),
    /// TLS from the first byte (SMTPS).
    Smtps(&'a Path, &'a Path),
}

impl SmtpSink {
    /// A server that takes any message, without a login.
    pub fn start(dir: &Path) -> SmtpSink {
        Self::spawn(dir, Mode::Plain)
    }

    /// A server that asks for `user` and `password` (AUTH PLAIN/LOGIN).
    pub fn with_login(dir: &Path, user: &str, password: &str) -> SmtpSink {
        Self::spawn(dir, Mode::Login(user, password))
    }

    /// A server offering STARTTLS with `cert` (PEM) and `key`.
    pub fn starttls(dir: &Path, cert: &Path, key: &Path) -> SmtpSink {
        Self::spawn(dir, Mode::StartTls(cert, key))
    }

    /// A server speaking TLS from the start (SMTPS) with `cert` and `key`.
    pub fn smtps(dir: &Path, cert: &Path, key: &Path) -> SmtpSink {
        Self::spawn(dir, Mode::Smtps(cert, key))
    }

    fn spawn(dir: &Path, mode: Mode) -> SmtpSink {
        // The free port is found by binding and letting go: another process may take it in
        // between, so a server that dies at once is started again on another.
        for _ in 0..5 {
            let port = super::receiver::closed_port();
            // aiosmtpd creates the Maildir, and refuses one that exists without its folders.
            let maildir = dir.join(format!("maildir-{port}"));
            let mut cmd = Command::new("python3");
            if let Mode::Login(user, password) = mode {
                cmd.args(["-c", WITH_LOGIN])
                    .arg(port.to_string())
                    .arg(&maildir)
                    .args([user, password]);
            } else {
                cmd.args(["-m", "aiosmtpd", "-n", "-l"])
                    .arg(format!("127.0.0.1:{port}"))
                    .args(["-c", "aiosmtpd.handlers.Mailbox"])
                    .arg(&maildir);
                match mode {
                    Mode::StartTls(cert, key) => {
                        cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
                    }
                    Mode::Smtps(cert, key) => {
                        cmd.arg("--smtpscert").arg(cert).arg("--smtpskey").arg(key);
                    }
                    _ => {}
                }
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 (scripts/test.sh installs it, with aiosmtpd)");
            let mut sink = SmtpSink {
                port,
                maildir,
                child,
            };
            if sink.wait_until_it_accepts() {
                return sink;
            }
        }
        panic!("aiosmtpd did not start: is it installed? (scripts/test.sh installs it: pip install aiosmtpd)");
    }

    /// True once the port accepts; false if the server died first.
    fn wait_until_it_accepts(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The messages received so far, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort_by_key(|f| delivered_at(f));
        files.iter().map(|f| read(f)).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When a Maildir file was delivered, from its name (`<seconds>.M<microseconds>P<pid>…`, as
/// Python's `mailbox` writes it): compared as numbers, since `M99` comes before `M100`.
fn delivered_at(file: &Path) -> (u64, u64, String) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let secs = name.split('.').next().and_then(|s| s.parse().ok());
    let micros = name
        .split_once(".M")
        .and_then(|(_, rest)| rest.split('P').next())
        .and_then(|m| m.parse().ok());
    (secs.unwrap_or(0), micros.unwrap_or(0), name)
}

/// A test certificate authority and a server certificate it signed for `localhost` and
/// 127.0.0.1, made by the real openssl: (CA certificate, server certificate, server key).
pub fn test_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (cert, key, csr) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("server.csr"),
    );
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let o = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl (scripts/test.sh installs it)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let s = |v: &'static str| std::ffi::OsStr::new(v);
    openssl(&[
        s("req"),
        s("-x509"),
        s("-newkey"),
        s("rsa:2048"),
        s("-nodes"),
        s("-keyout"),
        ca_key.as_os_str(),
        s("-out"),
        ca.as_os_str(),
        s("-days"),
        s("2"),
        s("-subj"),
        s("/CN=lifeboat test CA"),
    ]);
    openssl(&[
        s("req"),
        s("-newkey"),
        s("rsa:2048"),
        s("-nodes"),
        s("-keyout"),
        key.as_os_str(),
        s("-out"),
        csr.as_os_str(),
        s("-subj"),
        s("/CN=localhost"),
    ]);
    openssl(&[
        s("x509"),
        s("-req"),
        s("-in"),
        csr.as_os_str(),
        s("-CA"),
        ca.as_os_str(),
        s("-CAkey"),
        ca_key.as_os_str(),
        s("-CAcreateserial"),
        s("-out"),
        cert.as_os_str(),
        s("-days"),
        s("2"),
        s("-extfile"),
        ext.as_os_str(),
    ]);
    (ca, cert, key)
}

/// Read one Maildir file with Python's `email` package: an independent decoder.
fn read(file: &Path) -> Mail {
    let script = r#"
import email, json, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
print(json.dumps({k: str(m[h] or "") for k, h in [("rcpt_to", "X-RcptTo"), ("to", "To"), ("from", "From"), ("subject", "Subject")]} | {"body": m.get_content()}))
"#;
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    Mail {
        rcpt_to: s("rcpt_to"),
        to: s("to"),
        from: s("from"),
        subject: s("subject"),
        body: s("body"),
    }
}
