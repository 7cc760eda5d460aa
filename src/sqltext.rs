//! SQL text, read: splits a dump into statements (quotes, doubled quotes, comments, and
//! `CREATE TRIGGER … BEGIN … END;` bodies handled), and parses the literal values of INSERT
//! statements so the importer can bind them instead of compiling every statement.

use std::io::BufRead;

/// One statement of a dump, with the line it starts on. Kept as bytes: a dump may hold text
/// that is not valid UTF-8, and it must reach the database unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub line: u64,
    pub sql: Vec<u8>,
}

impl Statement {
    /// The statement for messages (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.sql).into_owned()
    }
}

/// What the splitter saw besides statements.
#[derive(Debug, Default, Clone)]
pub struct Trailer {
    /// The dump said it was written by lifeboat (its first line).
    pub lifeboat_header: bool,
    /// `-- lifeboat dump complete: N statements`, if present.
    pub complete: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Normal,
    Single,
    Double,
    Bracket,
    Backtick,
    LineComment,
    BlockComment,
}

/// Splits SQL text read from `input` into statements.
pub struct Splitter<R> {
    input: R,
    line: u64,
    state: State,
    buf: Vec<u8>,
    start_line: u64,
    has_content: bool,
    comment_start: usize,
    pending: std::collections::VecDeque<Statement>,
    pub trailer: Trailer,
    done: bool,
}

/// A splitting failure: the line it concerns and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitError {
    pub line: u64,
    pub message: String,
}

impl<R: BufRead> Splitter<R> {
    pub fn new(input: R) -> Self {
        Splitter {
            input,
            line: 0,
            state: State::Normal,
            buf: Vec::new(),
            start_line: 0,
            has_content: false,
            comment_start: 0,
            pending: Default::default(),
            trailer: Trailer::default(),
            done: false,
        }
    }

    /// The next statement, `Ok(None)` at a clean end of input.
    pub fn next_statement(&mut self) -> Result<Option<Statement>, SplitError> {
        loop {
            if let Some(s) = self.pending.pop_front() {
                return Ok(Some(s));
            }
            if self.done {
                return Ok(None);
            }
            let mut line = Vec::new();
            let n = self
                .input
                .read_until(b'\n', &mut line)
                .map_err(|e| SplitError {
                    line: self.line + 1,
                    message: format!("read error: {e}"),
                })?;
            if n == 0 {
                self.done = true;
                return self.finish().map(|_| self.pending.pop_front());
            }
            self.line += 1;
            self.scan(&line)?;
        }
    }

    fn finish(&mut self) -> Result<(), SplitError> {
        if self.state == State::LineComment {
            self.end_comment();
            self.state = State::Normal;
        }
        let open = match self.state {
            State::Normal | State::LineComment => None,
            State::Single => Some("a string literal ('…')"),
            State::Double => Some("a quoted identifier (\"…\")"),
            State::Bracket => Some("a bracketed identifier ([…])"),
            State::Backtick => Some("a quoted identifier (`…`)"),
            State::BlockComment => Some("a /* comment */"),
        };
        if let Some(what) = open {
            return Err(SplitError {
                line: self.start_line.max(1),
                message: format!("input ends inside {what} (truncated?)"),
            });
        }
        if self.has_content {
            let text = String::from_utf8_lossy(&self.buf)
                .trim()
                .chars()
                .take(60)
                .collect::<String>();
            return Err(SplitError {
                line: self.start_line,
                message: format!("input ends in the middle of a statement (truncated?): {text}"),
            });
        }
        Ok(())
    }

    fn end_comment(&mut self) {
        let text = String::from_utf8_lossy(&self.buf[self.comment_start..]).into_owned();
        let text = text.trim_end();
        if text.starts_with(crate::dump::HEADER) && self.line == 1 {
            self.trailer.lifeboat_header = true;
        }
        if let Some(rest) = text.strip_prefix(crate::dump::FOOTER) {
            self.trailer.complete = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }

    fn scan(&mut self, line: &[u8]) -> Result<(), SplitError> {
        let mut i = 0;
        while i < line.len() {
            // Inside quotes only the closing quote matters: jump to it.
            if let State::Single | State::Double | State::Backtick = self.state {
                let quote = match self.state {
                    State::Single => b'\'',
                    State::Double => b'"',
                    _ => b'`',
                };
                match line[i..].iter().position(|&c| c == quote) {
                    None => {
                        self.buf.extend_from_slice(&line[i..]);
                        i = line.len();
                    }
                    Some(p) => {
                        self.buf.extend_from_slice(&line[i..=i + p]);
                        i += p + 1;
                        if line.get(i) == Some(&quote) {
                            self.buf.push(quote); // a doubled quote stands for one
                            i += 1;
                        } else {
                            self.state = State::Normal;
                        }
                    }
                }
                continue;
            }
            let b = line[i];
            let next = line.get(i + 1).copied();
            self.buf.push(b);
            match self.state {
                State::Normal => match b {
                    b'\'' => self.content(State::Single),
                    b'"' => self.content(State::Double),
                    b'[' => self.content(State::Bracket),
                    b'`' => self.content(State::Backtick),
                    b'-' if next == Some(b'-') => {
                        self.comment_start = self.buf.len() - 1;
                        self.state = State::LineComment;
                    }
                    b'/' if next == Some(b'*') => {
                        self.buf.push(b'*');
                        i += 1;
                        self.state = State::BlockComment;
                    }
                    b';' => {
                        if self.has_content && self.statement_complete() {
                            let sql = self.buf.trim_ascii().to_vec();
                            self.pending.push_back(Statement {
                                line: self.start_line,
                                sql,
                            });
                            self.buf.clear();
                            self.has_content = false;
                        }
                    }
                    c if c.is_ascii_whitespace() => {}
                    _ => self.content(State::Normal),
                },
                State::Single | State::Double | State::Backtick => {
                    let quote = match self.state {
                        State::Single => b'\'',
                        State::Double => b'"',
                        _ => b'`',
                    };
                    if b == quote {
                        if next == Some(quote) {
                            self.buf.push(quote);
                            i += 1;
                        } else {
                            self.state = State::Normal;
                        }
                    }
                }
                State::Bracket => {
                    if b == b']' {
                        self.state = State::Normal;
                    }
                }
                State::LineComment => {
                    if b == b'\n' {
                        self.buf.pop();
                        self.end_comment();
                        self.buf.push(b'\n');
                        self.state = State::Normal;
                    }
                }
                State::BlockComment => {
                    if b == b'*' && next == Some(b'/') {
                        self.buf.push(b'/');
                        i += 1;
                        self.state = State::Normal;
                    }
                }
            }
            i += 1;
        }
        // Comments and blank lines between statements are dropped.
        if !self.has_content && self.state == State::Normal {
            self.buf.clear();
        }
        Ok(())
    }

    fn content(&mut self, state: State) {
        if !self.has_content {
            self.has_content = true;
            self.start_line = self.line;
            // Drop what came before the statement (blank space, comments).
            let last = self.buf.pop();
            self.buf.clear();
            self.buf.extend(last);
        }
        self.state = state;
    }

    /// A `;` ends the statement unless it is inside a trigger body, which SQLite's own
    /// `sqlite3_complete` knows how to tell.
    fn statement_complete(&self) -> bool {
        let head: String =
            String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)]).to_ascii_uppercase();
        let words: Vec<&str> = head.split_whitespace().take(4).collect();
        let is_trigger = words.first() == Some(&"CREATE")
            && words.iter().skip(1).take(2).any(|w| *w == "TRIGGER");
        if !is_trigger {
            return true;
        }
        let Ok(c) = std::ffi::CString::new(self.buf.clone()) else {
            return true;
        };
        // SAFETY: a valid NUL-terminated string; sqlite3_complete only reads it.
        unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 }
    }
}

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

    fn split(sql: &str) -> Result<Vec<Statement>, SplitError> {
        let mut s = Splitter::new(sql.as_bytes());
        let mut out = Vec::new();
        while let Some(st) = s.next_statement()? {
            out.push(st);
        }
        Ok(out)
    }

    #[test]
    fn splits_around_tricky_literals_and_triggers() {
        let sql = "-- header\nCREATE TABLE \"a;b\" (x TEXT);\nINSERT INTO \"a;b\" VALUES('it''s; -- not /* a */ comment');\n\
                   /* block; */ CREATE TRIGGER t AFTER INSERT ON \"a;b\" BEGIN\n  INSERT INTO log VALUES(';');\n  SELECT 1;\nEND;\n\
                   INSERT INTO [x;y] VALUES(`z;`);";
        let st = split(sql).unwrap();
        assert_eq!(st.len(), 4, "{st:#?}");
        assert_eq!(
            st[1].text(),
            "INSERT INTO \"a;b\" VALUES('it''s; -- not /* a */ comment');"
        );
        assert!(st[2].text().starts_with("CREATE TRIGGER") && st[2].text().ends_with("END;"));
        assert_eq!(st[2].line, 4);
        assert_eq!(st[3].line, 8);
    }

    #[test]
    fn truncation_names_the_line() {
        let e = split("CREATE TABLE t(x);\nINSERT INTO t VALUES('abc").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("string literal"), "{}", e.message);
        let e = split("CREATE TABLE t(x);\n\nINSERT INTO t VALUES(1)").unwrap_err();
        assert_eq!(e.line, 3);
    }

    /// xorshift: deterministic randomness without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const NASTY: &[&[u8]] = &[
        b"'",
        b"''",
        b"\"",
        b";",
        b"--",
        b"/*",
        b"*/",
        b"\n",
        b"\r",
        b"\r\n",
        b"[",
        b"]",
        b"`",
        b"\\",
        b"\\n",
        b"\\r",
        b"END;",
        b"BEGIN",
        b"X'",
        b"\0",
        b"\xff",
        b"\xc3",
        "é🧘".as_bytes(),
        b"a",
        b" ",
        b"7",
    ];

    fn random_value(r: &mut Rng) -> (Value, Vec<u8>) {
        match r.below(6) {
            0 => (Value::Null, vec![]),
            1 => {
                let n = r.next() as i64;
                (Value::Integer(n), vec![])
            }
            2 => {
                let f = f64::from_bits(r.next());
                let f = if f.is_finite() { f } else { 0.5 };
                (Value::Real(f), vec![])
            }
            3 => {
                let b: Vec<u8> = (0..r.below(40)).map(|_| r.next() as u8).collect();
                (Value::Blob(b), vec![])
            }
            _ => {
                let mut t = Vec::new();
                for _ in 0..r.below(30) {
                    t.extend_from_slice(NASTY[r.below(NASTY.len() as u64) as usize]);
                }
                (Value::Text(t.clone()), t)
            }
        }
    }

    fn as_ref(v: &Value) -> rusqlite::types::ValueRef<'_> {
        use rusqlite::types::ValueRef;
        match v {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(t) => ValueRef::Text(t),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }

    #[test]
    fn property_dumped_values_split_and_parse_back_exactly() {
        use crate::dump::{push_value, Dialect};
        let mut r = Rng(0x5EED_1234_ABCD_0001);
        for dialect in [Dialect::Sqlite, Dialect::D1] {
            for _ in 0..300 {
                let mut sql = Vec::new();
                let mut expected = Vec::new();
                for _ in 0..(1 + r.below(8)) {
                    if r.below(3) == 0 {
                        sql.extend_from_slice(b"-- a comment; with 'quotes\n");
                    }
                    let row: Vec<Value> = (0..(1 + r.below(5)))
                        .map(|_| random_value(&mut r).0)
                        .collect();
                    sql.extend_from_slice(b"INSERT INTO \"t;x\" VALUES(");
                    for (i, v) in row.iter().enumerate() {
                        if i > 0 {
                            sql.push(b',');
                        }
                        push_value(&mut sql, as_ref(v), dialect);
                    }
                    sql.extend_from_slice(b");\n");
                    expected.push(row);
                }
                let mut sp = Splitter::new(&sql[..]);
                let mut got = Vec::new();
                while let Some(st) = sp.next_statement().unwrap() {
                    let ins =
                        parse_insert(&st.sql).unwrap_or_else(|| panic!("unparsed: {}", st.text()));
                    got.push(ins.rows.into_iter().next().unwrap());
                }
                assert_eq!(
                    got.len(),
                    expected.len(),
                    "{}",
                    String::from_utf8_lossy(&sql)
                );
                for (g, e) in got.iter().zip(&expected) {
                    for (a, b) in g.iter().zip(e) {
                        match (a, b) {
                            (Value::Real(x), Value::Real(y)) => assert!(
                                x.to_bits() == y.to_bits() || (*x == 0.0 && *y == 0.0),
                                "{x:e} vs {y:e}"
                            ),
                            _ => assert_eq!(a, b),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn property_garbage_never_panics() {
        let mut r = Rng(0xBAD_5EED);
        for _ in 0..2000 {
            let mut text = Vec::new();
            for _ in 0..r.below(60) {
                text.extend_from_slice(NASTY[r.below(NASTY.len() as u64) as usize]);
                if r.below(4) == 0 {
                    text.extend_from_slice(b"INSERT INTO t VALUES(");
                }
            }
            let mut sp = Splitter::new(&text[..]);
            while let Ok(Some(st)) = sp.next_statement() {
                let _ = parse_insert(&st.sql);
            }
            let _ = parse_insert(&text);
        }
    }

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
