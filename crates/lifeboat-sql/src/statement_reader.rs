//! SQL text, read: cuts a dump into statements, with quotes, doubled quotes, comments and
//! `CREATE TRIGGER … BEGIN … END;` bodies handled.

use std::io::BufRead;

/// Lines are read in pieces of at most this many bytes.
const LINE_PIECE: u64 = 16 * 1024 * 1024;

/// SQLite refuses SQL text longer than this (SQLITE_MAX_SQL_LENGTH): a statement that grows past
/// it is a broken dump, and reading on would only use up memory.
const MAX_STATEMENT: usize = 1_000_000_000;

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

/// What the reader saw besides statements.
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
pub struct StatementReader<R> {
    input: R,
    line: u64,
    state: State,
    buf: Vec<u8>,
    line_buf: Vec<u8>,
    /// The last piece read did not end its line.
    mid_line: bool,
    start_line: u64,
    has_content: bool,
    comment_start: usize,
    pending: std::collections::VecDeque<Statement>,
    pub trailer: Trailer,
    done: bool,
}

/// A reading failure: the line it concerns and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadError {
    pub line: u64,
    pub message: String,
}

impl<R: BufRead> StatementReader<R> {
    pub fn new(input: R) -> Self {
        StatementReader {
            input,
            line: 0,
            state: State::Normal,
            buf: Vec::new(),
            line_buf: Vec::new(),
            mid_line: false,
            start_line: 0,
            has_content: false,
            comment_start: 0,
            pending: Default::default(),
            trailer: Trailer::default(),
            done: false,
        }
    }

    /// The next statement, `Ok(None)` at a clean end of input.
    pub fn next_statement(&mut self) -> Result<Option<Statement>, ReadError> {
        loop {
            if let Some(s) = self.pending.pop_front() {
                return Ok(Some(s));
            }
            if self.done {
                return Ok(None);
            }
            let mut line = std::mem::take(&mut self.line_buf);
            line.clear();
            // A line is read in pieces of at most LINE_PIECE bytes, so that input with no line
            // ends (a binary file, /dev/zero) cannot grow a buffer without bound.
            let n = std::io::Read::take(&mut self.input, LINE_PIECE)
                .read_until(b'\n', &mut line)
                .map_err(|e| ReadError {
                    line: self.line + 1,
                    message: format!("read error: {e}"),
                })?;
            if n == 0 {
                self.done = true;
                return self.finish().map(|_| self.pending.pop_front());
            }
            let whole = line.last() == Some(&b'\n');
            if memchr::memchr(0, &line).is_some() {
                return Err(ReadError {
                    line: self.line + 1,
                    message: "a NUL byte: this is not a SQL text dump".into(),
                });
            }
            if self.buf.len() + line.len() > MAX_STATEMENT {
                return Err(ReadError {
                    line: self.start_line.max(self.line + 1),
                    message: format!(
                        "a statement longer than {MAX_STATEMENT} bytes, SQLite's own limit (an unterminated string?)"
                    ),
                });
            }
            if !self.mid_line {
                self.line += 1;
            }
            self.mid_line = !whole;
            let scanned = self.scan(&line);
            self.line_buf = line; // reused: one allocation for the whole input
            scanned?;
        }
    }

    fn finish(&mut self) -> Result<(), ReadError> {
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
            return Err(ReadError {
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
            return Err(ReadError {
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

    fn scan(&mut self, line: &[u8]) -> Result<(), ReadError> {
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
        let mut words = self.buf[..self.buf.len().min(200)]
            .split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty());
        // Only `CREATE [TEMP] TRIGGER` has a body (checked without allocating: every statement
        // of a dump passes here).
        let is_trigger = words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(b"CREATE"))
            && words.take(2).any(|w| w.eq_ignore_ascii_case(b"TRIGGER"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insert_parser::{parse_insert, Value};

    fn split(sql: &str) -> Result<Vec<Statement>, ReadError> {
        let mut s = StatementReader::new(sql.as_bytes());
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
        use crate::dump::Dialect;
        use crate::value_literal::push_value;
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
                let mut sp = StatementReader::new(&sql[..]);
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
            let mut sp = StatementReader::new(&text[..]);
            while let Ok(Some(st)) = sp.next_statement() {
                let _ = parse_insert(&st.sql);
            }
            let _ = parse_insert(&text);
        }
    }
}
