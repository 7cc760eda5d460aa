//! INSERT statements, read: parses the literal values of `INSERT INTO t [(cols)] VALUES (…)…`
//! (numbers, strings, `X'…'` blobs, and the `replace(…, char(N))` and `CAST(… AS TEXT|BLOB)`
//! forms dumps use) so the importer can bind them instead of compiling every statement.

/// A literal value of an INSERT.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    /// Text as bytes (usually UTF-8, but not necessarily).
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// A parsed `INSERT INTO t [(cols)] VALUES (…)[, (…)]…;`.
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    /// The statement text up to and including the column list, e.g. `INSERT INTO "t"("a","b")`.
    pub prefix: String,
    pub rows: Vec<Vec<Value>>,
}

/// Parse an INSERT whose values are all literals this parser knows; None means "give the
/// statement to SQLite as it is".
pub fn parse_insert(sql: &[u8]) -> Option<Insert> {
    let mut p = Parser { s: sql, i: 0 };
    p.keyword("INSERT")?;
    if p.keyword("OR").is_some() {
        p.word()?;
    }
    p.keyword("INTO")?;
    p.ident()?;
    if p.peek() == Some(b'.') {
        p.i += 1;
        p.ident()?;
    }
    if p.peek() == Some(b'(') {
        p.i += 1;
        loop {
            p.ident()?;
            match p.next_byte()? {
                b',' => continue,
                b')' => break,
                _ => return None,
            }
        }
    }
    let prefix_end = p.i;
    p.keyword("VALUES")?;
    let mut rows = Vec::new();
    loop {
        p.expect(b'(')?;
        let mut row = Vec::new();
        loop {
            row.push(p.value()?);
            match p.next_byte()? {
                b',' => continue,
                b')' => break,
                _ => return None,
            }
        }
        rows.push(row);
        match p.next_byte() {
            Some(b',') => continue,
            Some(b';') | None => break,
            _ => return None,
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return None; // e.g. ON CONFLICT … or RETURNING
    }
    Some(Insert {
        prefix: std::str::from_utf8(&sql[..prefix_end])
            .ok()?
            .trim_end()
            .to_string(),
        rows,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next_byte()? == b).then_some(())
    }

    fn word(&mut self) -> Option<&str> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric()
                || self.s[self.i] == b'_'
                || self.s[self.i] == b'$'
                || self.s[self.i] >= 0x80)
        {
            self.i += 1;
        }
        (self.i > start)
            .then(|| std::str::from_utf8(&self.s[start..self.i]).ok())
            .flatten()
    }

    fn keyword(&mut self, kw: &str) -> Option<()> {
        let save = self.i;
        match self.word() {
            Some(w) if w.eq_ignore_ascii_case(kw) => Some(()),
            _ => {
                self.i = save;
                None
            }
        }
    }

    fn quoted(&mut self, close: u8) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let p = self.s[self.i..].iter().position(|&c| c == close)?;
            out.extend_from_slice(&self.s[self.i..self.i + p]);
            self.i += p + 1;
            if self.s.get(self.i) == Some(&close) && close != b']' {
                out.push(close); // a doubled quote stands for one
                self.i += 1;
            } else {
                return Some(out);
            }
        }
    }

    fn ident(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' | b'`' => {
                let q = self.s[self.i];
                self.i += 1;
                self.quoted(q).map(|_| ())
            }
            b'[' => {
                self.i += 1;
                self.quoted(b']').map(|_| ())
            }
            _ => self.word().map(|_| ()),
        }
    }

    fn value(&mut self) -> Option<Value> {
        match self.peek()? {
            b'\'' => {
                self.i += 1;
                Some(Value::Text(self.quoted(b'\'')?))
            }
            b'-' | b'+' if matches!(self.s.get(self.i + 1), Some(b'0'..=b'9' | b'.')) => {
                // Signed numbers are read whole, so -9223372036854775808 stays an INTEGER.
                let neg = self.s[self.i] == b'-';
                self.i += 1;
                self.number(neg)
            }
            b'-' | b'+' => {
                let neg = self.s[self.i] == b'-';
                self.i += 1;
                match self.value()? {
                    Value::Integer(n) if neg => Some(
                        n.checked_neg()
                            .map_or(Value::Real(-(n as f64)), Value::Integer),
                    ),
                    Value::Real(f) if neg => Some(Value::Real(-f)),
                    v @ (Value::Integer(_) | Value::Real(_)) => Some(v),
                    _ => None,
                }
            }
            b'0'..=b'9' | b'.' => self.number(false),
            _ => {
                let save = self.i;
                let w = self.word()?.to_ascii_uppercase();
                match w.as_str() {
                    "NULL" => Some(Value::Null),
                    "X" if self.s.get(self.i) == Some(&b'\'') => {
                        self.i += 1;
                        let hex = self.quoted(b'\'')?;
                        decode_hex(&hex).map(Value::Blob)
                    }
                    "REPLACE" => {
                        let args = self.args()?;
                        match args.as_slice() {
                            [Value::Text(a), Value::Text(b), Value::Text(c)] if !b.is_empty() => {
                                Some(Value::Text(replace_bytes(a, b, c)))
                            }
                            _ => None,
                        }
                    }
                    "CHAR" => {
                        let args = self.args()?;
                        let mut s = String::new();
                        for a in args {
                            match a {
                                Value::Integer(n) => {
                                    s.push(char::from_u32(u32::try_from(n).ok()?)?)
                                }
                                _ => return None,
                            }
                        }
                        Some(Value::Text(s.into_bytes()))
                    }
                    "CAST" => {
                        self.expect(b'(')?;
                        let v = self.value()?;
                        self.keyword("AS")?;
                        let ty = self.word()?.to_ascii_uppercase();
                        self.expect(b')')?;
                        match (v, ty.as_str()) {
                            (Value::Blob(b), "TEXT") => Some(Value::Text(b)),
                            (Value::Blob(b), "BLOB") => Some(Value::Blob(b)),
                            _ => None,
                        }
                    }
                    _ => {
                        self.i = save;
                        None
                    }
                }
            }
        }
    }

    fn args(&mut self) -> Option<Vec<Value>> {
        self.expect(b'(')?;
        let mut args = Vec::new();
        loop {
            args.push(self.value()?);
            match self.next_byte()? {
                b',' => continue,
                b')' => return Some(args),
                _ => return None,
            }
        }
    }

    fn number(&mut self, neg: bool) -> Option<Value> {
        let start = self.i;
        if self.s[self.i..].starts_with(b"0x") || self.s[self.i..].starts_with(b"0X") {
            self.i += 2;
            let h = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_hexdigit() {
                self.i += 1;
            }
            let text = std::str::from_utf8(&self.s[h..self.i]).ok()?;
            // SQLite reads hex literals as 64-bit two's complement.
            let n = u64::from_str_radix(text, 16).ok()? as i64;
            return Some(Value::Integer(if neg { n.wrapping_neg() } else { n }));
        }
        let mut real = false;
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'0'..=b'9' => {}
                b'.' => real = true,
                b'e' | b'E' => {
                    real = true;
                    if matches!(self.s.get(self.i + 1), Some(b'+' | b'-')) {
                        self.i += 1;
                    }
                }
                _ => break,
            }
            self.i += 1;
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        let text = if neg {
            format!("-{digits}")
        } else {
            digits.to_string()
        };
        if !real {
            if let Ok(n) = text.parse::<i64>() {
                return Some(Value::Integer(n));
            }
        }
        // Too big for an integer, or a real: SQLite reads both as REAL. Rust's parser is
        // correctly rounded, so subnormals and 17-digit values come back exactly.
        text.parse::<f64>().ok().map(Value::Real)
    }
}

/// SQLite's replace() on bytes: every non-overlapping `from`, left to right.
fn replace_bytes(s: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn decode_hex(h: &[u8]) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    h.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        let ins = parse_insert(b"INSERT INTO \"t\" (\"a\",b) VALUES(NULL,-5,1.5e-3,'x''y',X'00ff',replace('a\\nb','\\n',char(10)),CAST(X'6869' AS TEXT),9223372036854775808),(1,2);").unwrap();
        assert_eq!(ins.prefix, "INSERT INTO \"t\" (\"a\",b)");
        assert_eq!(
            ins.rows[0],
            vec![
                Value::Null,
                Value::Integer(-5),
                Value::Real(1.5e-3),
                Value::Text(b"x'y".to_vec()),
                Value::Blob(vec![0, 255]),
                Value::Text(b"a\nb".to_vec()),
                Value::Text(b"hi".to_vec()),
                Value::Real(9223372036854775808.0),
            ]
        );
        assert_eq!(ins.rows.len(), 2);
        assert_eq!(
            parse_insert(b"INSERT INTO t VALUES(-9223372036854775808);")
                .unwrap()
                .rows[0][0],
            Value::Integer(i64::MIN)
        );
        assert!(parse_insert(b"INSERT INTO t SELECT 1;").is_none());
        assert!(parse_insert(b"INSERT INTO t VALUES(abs(1));").is_none());
        assert!(parse_insert(b"INSERT INTO t VALUES(1) ON CONFLICT DO NOTHING;").is_none());
        assert_eq!(
            parse_insert(b"INSERT INTO t VALUES('\xff\xfe');")
                .unwrap()
                .rows[0][0],
            Value::Text(vec![0xff, 0xfe])
        );
    }
}
