//! Identifiers in SQL text: every table, column and index name lifeboat writes goes through here.

/// `name` as a double-quoted SQL identifier (quotes inside doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_are_doubled() {
        assert_eq!(super::quote_ident(r#"a"b"#), r#""a""b""#);
    }
}
