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

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

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
