//! Text for humans: names, labels and ids come from databases and users, and may hold control
//! characters. Escaped before they reach a terminal, they cannot forge a line of output (a
//! label with a newline posing as a backup in `list`) or drive the terminal.

use std::borrow::Cow;

/// `s` with control characters (C0, DEL, C1) and bidirectional overrides written as escapes:
/// `\n`, `\r`, `\t`, `\\` only where an escape follows, otherwise `\u{…}`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `s` with secrets blanked: the userinfo of any URL (`http://key:secret@host` becomes
/// `http://***@host`) and the values of the AWS secret variables wherever they appear.
pub fn redact(s: &str) -> Cow<'_, str> {
    let secrets: Vec<String> = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .filter(|v| v.len() >= 6)
        .collect();
    let has_userinfo = s
        .match_indices("://")
        .any(|(i, _)| userinfo_end(&s[i + 3..]).is_some());
    if !has_userinfo && !secrets.iter().any(|v| s.contains(v.as_str())) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        if let Some(at) = userinfo_end(rest) {
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    for v in &secrets {
        out = out.replace(v.as_str(), "***");
    }
    Cow::Owned(out)
}

/// In the text after `://`: the position of the `@` ending a userinfo, if there is one before
/// the host ends.
fn userinfo_end(after_scheme: &str) -> Option<usize> {
    let end = after_scheme
        .find(|c: char| {
            c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == ')' || c == '"'
        })
        .unwrap_or(after_scheme.len());
    after_scheme[..end].rfind('@')
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// `s` as one shell word: as it is when plain, else in single quotes.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo() {
        assert_eq!(
            redact("GET http://AKIA:s3cr3t@127.0.0.1:9000/b/k failed"),
            "GET http://***@127.0.0.1:9000/b/k failed"
        );
        assert_eq!(redact("s3://bucket/prefix"), "s3://bucket/prefix");
        assert_eq!(
            redact("mailto a@b, http://x/y@z"),
            "mailto a@b, http://x/y@z"
        );
    }

    #[test]
    fn escapes_what_could_forge_a_line() {
        assert_eq!(escape("plain label ü"), "plain label ü");
        assert_eq!(
            escape("a\nbackup-2026 manual\r\x1b[2J\u{202e}"),
            "a\\nbackup-2026 manual\\r\\u{1b}[2J\\u{202e}"
        );
        assert!(!escape("x\u{85}y").contains('\u{85}'));
    }
}
