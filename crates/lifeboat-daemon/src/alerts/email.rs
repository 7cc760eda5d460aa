//! Email over SMTP (lettre): a readable subject and a plain-text body with the facts. The SMTP URL
//! and credentials are secrets: only the server's host is ever shown, and every error is scrubbed
//! of them before anyone sees it.

use lettre::message::{header::ContentType, Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::retry::{self, Failure, Outcome};
use super::{facts, Event};

/// The email settings as written, from `[alerts]` or (without it) the environment.
#[derive(Clone, Default)]
pub struct EmailSettings {
    /// `email_to` / `PLATFORM_ADMIN_EMAIL`: one address or a comma-separated list.
    pub to: Option<String>,
    /// `smtp_url` / `SMTP_URL`: `smtp://[user:pass@]host[:port][?tls=required|opportunistic]`,
    /// or `smtps://…` (TLS from the start).
    pub smtp_url: Option<String>,
    /// `email_from` / `SMTP_FROM`.
    pub from: Option<String>,
    /// `smtp_username` / `SMTP_USERNAME`: over the URL's user.
    pub username: Option<String>,
    /// `smtp_password` / `SMTP_PASSWORD`: over the URL's password.
    pub password: Option<String>,
    /// The settings came from the environment: errors name its variables.
    pub from_env: bool,
}

/// An email channel: ready to send, or the reason it cannot (said when it is used).
#[derive(Clone)]
pub struct Email {
    host: String,
    ready: Result<Ready, String>,
    /// What errors must never show: the URL, the user name, the password.
    secrets: Vec<String>,
}

#[derive(Clone)]
struct Ready {
    url: String,
    credentials: Option<Credentials>,
    from: Mailbox,
    to: Mailboxes,
}

impl Email {
    /// The channel `s` describes; `None` when it names neither a recipient nor a server.
    pub fn new(s: &EmailSettings) -> Option<Email> {
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let (to, url) = (set(&s.to), set(&s.smtp_url));
        if to.is_none() && url.is_none() {
            return None;
        }
        let parsed = url.as_deref().and_then(|u| url::Url::parse(u).ok());
        let decode = |v: &str| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        };
        let username = set(&s.username).or_else(|| {
            parsed
                .as_ref()
                .map(|u| decode(u.username()))
                .filter(|u| !u.is_empty())
        });
        let password =
            set(&s.password).or_else(|| parsed.as_ref().and_then(|u| u.password()).map(decode));
        let mut secrets: Vec<String> = [url.clone(), username.clone(), password.clone()]
            .into_iter()
            .flatten()
            .chain(
                parsed
                    .as_ref()
                    .and_then(|u| u.password())
                    .map(str::to_string),
            )
            // Blanking a shorter one would blank ordinary words with it.
            .filter(|v| v.len() >= 4)
            .collect();
        // The longest first, so a secret inside another is blanked with it.
        secrets.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let host = parsed
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "?".into());
        let ready = ready(s, to, url, parsed.as_ref(), username, password);
        Some(Email {
            host,
            ready,
            secrets,
        })
    }

    /// The SMTP server's host: all of the settings that may be shown.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// What is wrong with the settings, if anything.
    pub fn problem(&self) -> Option<&str> {
        self.ready.as_ref().err().map(String::as_str)
    }

    /// Send `event` as one email to every recipient.
    pub async fn send(&self, event: &Event) -> Outcome {
        let r = match &self.ready {
            Ok(r) => r,
            Err(problem) => return (false, 0, Some(problem.clone())),
        };
        let message = match message(r, event) {
            Ok(m) => m,
            Err(e) => return (false, 1, Some(self.scrub(&format!("email: {e}")))),
        };
        let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(&r.url) {
            // No timeout of lettre's own: retry's, around each whole attempt, is the one.
            Ok(b) => {
                let b = b.timeout(None);
                match &r.credentials {
                    Some(c) => b.credentials(c.clone()),
                    None => b,
                }
                .build()
            }
            Err(e) => return (false, 1, Some(self.scrub(&format!("SMTP {e}")))),
        };
        retry::attempts(|| {
            let (t, m) = (&transport, message.clone());
            async move {
                t.send(m).await.map(|_| ()).map_err(|e| {
                    let text = self.scrub(&format!("SMTP {e}"));
                    if lasting(&e) {
                        Failure::Final(text)
                    } else {
                        Failure::Retry(text)
                    }
                })
            }
        })
        .await
    }

    /// `text` with every secret blanked, whatever lettre (or the server) put in it.
    fn scrub(&self, text: &str) -> String {
        // lettre says "Connection error: Connection error: …" when it wraps its own.
        let mut out = facts::one_line(text).replace("error: Connection error: ", "error: ");
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

/// Whether no retry can help: a login refused, an address rejected (5xx), a certificate the
/// server's name or the trusted roots refuse (rustls says so as `InvalidData`).
fn lasting(e: &lettre::transport::smtp::Error) -> bool {
    if e.is_permanent() || e.is_client() || e.is_tls() {
        return true;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The settings checked, with the names the user wrote them under.
fn ready(
    s: &EmailSettings,
    to: Option<String>,
    url: Option<String>,
    parsed: Option<&url::Url>,
    username: Option<String>,
    password: Option<String>,
) -> Result<Ready, String> {
    let name = |conf: &'static str, env: &'static str| if s.from_env { env } else { conf };
    let (to_key, url_key) = (
        name("email_to", "PLATFORM_ADMIN_EMAIL"),
        name("smtp_url", "SMTP_URL"),
    );
    let (Some(to), Some(url)) = (to, url) else {
        return Err(if s.from_env {
            "email: PLATFORM_ADMIN_EMAIL and SMTP_URL must both be set".to_string()
        } else {
            "email: [alerts] needs both email_to and smtp_url".to_string()
        });
    };
    let Some(parsed) = parsed else {
        return Err(format!(
            "email: {url_key} is not a URL (smtp://user:pass@host:587?tls=required)"
        ));
    };
    let tls = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match (parsed.scheme(), tls.as_deref()) {
        ("smtp", None | Some("required" | "opportunistic")) | ("smtps", None) => {}
        ("smtp" | "smtps", _) => {
            return Err(format!(
                "email: {url_key}: tls= must be `required` or `opportunistic` (with smtp://), or absent"
            ))
        }
        _ => return Err(format!("email: {url_key} must start with smtp:// or smtps://")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("email: {url_key} names no host"));
    }
    let to: Mailboxes = to
        .parse()
        .ok()
        .filter(|m: &Mailboxes| m.iter().next().is_some())
        .ok_or_else(|| {
            format!("email: {to_key} {to:?} is not an email address (or a comma-separated list)")
        })?;
    let from_key = name("email_from", "SMTP_FROM");
    let from = match s.from.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(f) => f
            .parse::<Mailbox>()
            .map_err(|_| format!("email: {from_key} {f:?} is not an email address"))?,
        None => default_from(username.as_deref(), &to),
    };
    let credentials = match (username, password) {
        (Some(u), Some(p)) => Some(Credentials::new(u, p)),
        (None, Some(_)) => {
            return Err(format!(
                "email: an SMTP password is set but no user name ({} or the user in {url_key})",
                name("smtp_username", "SMTP_USERNAME")
            ))
        }
        // A user without a password logs in with none: lettre needs both or neither.
        (Some(_), None) | (None, None) => None,
    };
    Ok(Ready {
        url,
        credentials,
        from,
        to,
    })
}

/// Without `email_from`: the SMTP user when it is an address (what most providers require),
/// else `lifeboat@` the first recipient's domain.
fn default_from(username: Option<&str>, to: &Mailboxes) -> Mailbox {
    let named = |addr: lettre::Address| Mailbox::new(Some("lifeboat".into()), addr);
    if let Some(a) = username.and_then(|u| u.parse::<lettre::Address>().ok()) {
        return named(a);
    }
    let domain = to
        .iter()
        .next()
        .map(|m| m.email.domain().to_string())
        .unwrap_or_else(|| "localhost".into());
    named(
        lettre::Address::new("lifeboat", domain)
            .unwrap_or_else(|_| lettre::Address::new("lifeboat", "localhost").expect("an address")),
    )
}

/// The email: the subject line, then the facts and the commands, as plain text.
fn message(r: &Ready, e: &Event) -> Result<Message, lettre::error::Error> {
    let mut b = Message::builder()
        .from(r.from.clone())
        .subject(facts::subject(e));
    for m in r.to.iter() {
        b = b.to(m.clone());
    }
    b.header(ContentType::TEXT_PLAIN).body(body(e))
}

/// The body: each fact on its line (a long value's further lines indented under it), then how
/// to look closer.
pub fn body(e: &Event) -> String {
    let facts = facts::facts(e);
    let width = facts.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 2;
    let mut out = format!("{}\n\n", facts::subject(e));
    for (label, value) in facts {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(&format!("{:<width$}{first}\n", format!("{label}:")));
        for l in lines {
            out.push_str(&format!("{:width$}{l}\n", ""));
        }
    }
    let commands = facts::commands(e);
    if !commands.is_empty() {
        out.push_str("\nTo investigate:\n");
        for c in commands {
            out.push_str(&format!("  {c}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(to: &str, url: &str) -> Email {
        Email::new(&EmailSettings {
            to: Some(to.into()),
            smtp_url: Some(url.into()),
            ..EmailSettings::default()
        })
        .unwrap()
    }

    #[test]
    fn lettres_url_forms_are_accepted_and_others_refused_by_name() {
        for ok in [
            "smtp://user:p%40ss@mail.example.com:587?tls=required",
            "smtp://mail.example.com?tls=opportunistic",
            "smtp://127.0.0.1:2525",
            "smtps://user:pass@mail.example.com",
        ] {
            assert_eq!(email("ops@example.com", ok).problem(), None, "{ok}");
        }
        for (bad, says) in [
            ("http://mail.example.com", "must start with smtp://"),
            ("smtp://mail.example.com?tls=always", "tls="),
            ("smtps://mail.example.com?tls=required", "tls="),
            ("mail.example.com:587", "smtp_url"),
            ("smtp:///nohost", "host"),
        ] {
            let p = email("ops@example.com", bad).problem().map(str::to_string);
            assert!(
                p.as_deref().is_some_and(|p| p.contains(says)),
                "{bad}: {p:?}"
            );
        }
        let p = email("ops", "smtp://h").problem().unwrap().to_string();
        assert!(
            p.contains("email_to \"ops\" is not an email address"),
            "{p}"
        );
        let half = Email::new(&EmailSettings {
            to: Some("ops@example.com".into()),
            from_env: true,
            ..EmailSettings::default()
        })
        .unwrap();
        assert!(half.problem().unwrap().contains("SMTP_URL"));
        assert!(Email::new(&EmailSettings::default()).is_none());
    }

    #[test]
    fn only_the_host_is_shown_and_errors_lose_every_secret() {
        let e = email(
            "a@example.com, b@example.com",
            "smtp://login-name:s3cr%2Ft@mail.example.com:587?tls=required",
        );
        assert_eq!(e.host(), "mail.example.com");
        let leaky = "auth as login-name with s3cr/t (s3cr%2Ft) via smtp://login-name:s3cr%2Ft@mail.example.com:587?tls=required";
        let scrubbed = e.scrub(leaky);
        for secret in ["login-name", "s3cr/t", "s3cr%2Ft", "smtp://"] {
            assert!(!scrubbed.contains(secret), "{scrubbed}");
        }
        let Ok(r) = &e.ready else { panic!() };
        assert_eq!(r.to.iter().count(), 2);
    }

    #[test]
    fn the_sender_is_the_setting_or_the_smtp_user_or_lifeboat_at_the_recipients_domain() {
        let from = |settings: EmailSettings| {
            let Ok(r) = Email::new(&settings).unwrap().ready else {
                panic!()
            };
            r.from.email.to_string()
        };
        let base = EmailSettings {
            to: Some("admin@studio.example".into()),
            smtp_url: Some("smtp://mail.example.com".into()),
            ..EmailSettings::default()
        };
        assert_eq!(from(base.clone()), "lifeboat@studio.example");
        assert_eq!(
            from(EmailSettings {
                username: Some("alerts@studio.example".into()),
                password: Some("pw".into()),
                ..base.clone()
            }),
            "alerts@studio.example"
        );
        assert_eq!(
            from(EmailSettings {
                from: Some("Backups <b@x.example>".into()),
                ..base.clone()
            }),
            "b@x.example"
        );
        let p = Email::new(&EmailSettings {
            password: Some("pw".into()),
            ..base
        })
        .unwrap();
        assert!(p.problem().unwrap().contains("no user name"));
    }

    #[test]
    fn the_body_indents_a_long_error_under_its_label() {
        let e = Event {
            kind: super::super::EventKind::BackupFailed,
            source: "db".into(),
            message: "first\nsecond".into(),
            at: chrono::Utc::now(),
            details: serde_json::Value::Null,
        };
        let b = body(&e);
        assert!(
            b.contains("Error:            first\n                  second\n"),
            "{b}"
        );
    }
}
