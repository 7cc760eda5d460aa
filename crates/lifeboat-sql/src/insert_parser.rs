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

/// A parsed `INSERT INTO t [(cols)] VALUES (…)[, (…)]…;`, with owned values.
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    /// The statement text up to and including the column list, e.g. `INSERT INTO "t"("a","b")`.
    pub prefix: String,
    pub rows: Vec<Vec<Value>>,
}

/// One value of [`Rows`]: numbers inline, text and blobs as byte ranges of its arena.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(usize, usize),
    Blob(usize, usize),
}

/// Parsed rows, flat: cells in row order and the bytes of every text and blob in one arena, so
/// a row costs no allocation of its own (the importer parses millions).
#[derive(Debug, Default)]
pub struct Rows {
    cells: Vec<Cell>,
    arena: Vec<u8>,
}

/// A position in [`Rows`], to cut or roll back to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mark {
    cells: usize,
    arena: usize,
}

impl Mark {
    /// Cells before this mark.
    pub fn cells(&self) -> usize {
        self.cells
    }
}

impl Rows {
    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    pub fn bytes(&self, start: usize, end: usize) -> &[u8] {
        &self.arena[start..end]
    }

    /// Memory held, roughly.
    pub fn size(&self) -> usize {
        self.arena.len() + self.cells.len() * std::mem::size_of::<Cell>()
    }

    pub fn mark(&self) -> Mark {
        Mark {
            cells: self.cells.len(),
            arena: self.arena.len(),
        }
    }

    pub fn truncate(&mut self, m: Mark) {
        self.cells.truncate(m.cells);
        self.arena.truncate(m.arena);
    }

    /// Everything after `m`, as rows of their own.
    pub fn split_off(&mut self, m: Mark) -> Rows {
        let shift = |a: usize| a - m.arena;
        let cells = self
            .cells
            .drain(m.cells..)
            .map(|c| match c {
                Cell::Text(a, b) => Cell::Text(shift(a), shift(b)),
                Cell::Blob(a, b) => Cell::Blob(shift(a), shift(b)),
                c => c,
            })
            .collect();
        Rows {
            cells,
            arena: self.arena.split_off(m.arena),
        }
    }

    /// The value of a cell, owned.
    pub fn value(&self, c: &Cell) -> Value {
        match *c {
            Cell::Null => Value::Null,
            Cell::Integer(i) => Value::Integer(i),
            Cell::Real(f) => Value::Real(f),
            Cell::Text(a, b) => Value::Text(self.arena[a..b].to_vec()),
            Cell::Blob(a, b) => Value::Blob(self.arena[a..b].to_vec()),
        }
    }
}

/// What [`parse_insert_into`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The statement text up to and including the column list.
    pub prefix: &'a str,
    /// Values per row (every row of the statement has this many).
    pub width: usize,
}

/// Parse an INSERT whose values are all literals this parser knows; None means "give the
/// statement to SQLite as it is".
pub fn parse_insert(sql: &[u8]) -> Option<Insert> {
    let mut rows = Rows::default();
    let parsed = parse_insert_into(sql, &mut rows)?;
    let values: Vec<Value> = rows.cells.iter().map(|c| rows.value(c)).collect();
    Some(Insert {
        prefix: parsed.prefix.to_string(),
        rows: values.chunks(parsed.width).map(<[Value]>::to_vec).collect(),
    })
}

/// [`parse_insert`], appending the rows to `out`; on None, `out` is left as it was.
pub fn parse_insert_into<'a>(sql: &'a [u8], out: &mut Rows) -> Option<Parsed<'a>> {
    let mark = out.mark();
    let parsed = parse(sql, out);
    if parsed.is_none() {
        out.truncate(mark);
    }
    parsed
}

fn parse<'a>(sql: &'a [u8], out: &mut Rows) -> Option<Parsed<'a>> {
    let mut p = Parser {
        s: sql,
        i: 0,
        arena: &mut out.arena,
    };
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
    let mut width = None;
    loop {
        p.expect(b'(')?;
        let mut n = 0;
        loop {
            out.cells.push(p.value()?);
            n += 1;
            match p.next_byte()? {
                b',' => continue,
                b')' => break,
                _ => return None,
            }
        }
        // Rows of different widths: SQLite's own error says it best.
        if *width.get_or_insert(n) != n {
            return None;
        }
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
    Some(Parsed {
        prefix: std::str::from_utf8(&sql[..prefix_end]).ok()?.trim_end(),
        width: width?,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// Where text and blob bytes go.
    arena: &'a mut Vec<u8>,
}

impl<'a> Parser<'a> {
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

    fn word(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let s: &'a [u8] = self.s;
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric()
                || self.s[self.i] == b'_'
                || self.s[self.i] == b'$'
                || self.s[self.i] >= 0x80)
        {
            self.i += 1;
        }
        let end = self.i;
        (end > start)
            .then(|| std::str::from_utf8(&s[start..end]).ok())
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

    /// Skip a quoted identifier's body, through its closing quote.
    fn skip_quoted(&mut self, close: u8) -> Option<()> {
        loop {
            let p = memchr::memchr(close, &self.s[self.i..])?;
            self.i += p + 1;
            if self.s.get(self.i) == Some(&close) && close != b']' {
                self.i += 1; // a doubled quote stands for one
            } else {
                return Some(());
            }
        }
    }

    /// Copy a string literal's body into the arena (doubled quotes undone); its range there.
    fn quoted(&mut self) -> Option<(usize, usize)> {
        let start = self.arena.len();
        loop {
            let p = memchr::memchr(b'\'', &self.s[self.i..])?;
            self.arena.extend_from_slice(&self.s[self.i..self.i + p]);
            self.i += p + 1;
            if self.s.get(self.i) == Some(&b'\'') {
                self.arena.push(b'\''); // a doubled quote stands for one
                self.i += 1;
            } else {
                return Some((start, self.arena.len()));
            }
        }
    }

    fn ident(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' | b'`' => {
                let q = self.s[self.i];
                self.i += 1;
                self.skip_quoted(q)
            }
            b'[' => {
                self.i += 1;
                self.skip_quoted(b']')
            }
            _ => self.word().map(|_| ()),
        }
    }

    fn value(&mut self) -> Option<Cell> {
        match self.peek()? {
            b'\'' => {
                self.i += 1;
                let (a, b) = self.quoted()?;
                Some(Cell::Text(a, b))
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
                    Cell::Integer(n) if neg => Some(
                        n.checked_neg()
                            .map_or(Cell::Real(-(n as f64)), Cell::Integer),
                    ),
                    Cell::Real(f) if neg => Some(Cell::Real(-f)),
                    v @ (Cell::Integer(_) | Cell::Real(_)) => Some(v),
                    _ => None,
                }
            }
            b'0'..=b'9' | b'.' => self.number(false),
            _ => {
                let save = self.i;
                let w = self.word()?;
                let is = |k: &str| w.eq_ignore_ascii_case(k);
                if is("NULL") {
                    Some(Cell::Null)
                } else if is("X") && self.s.get(self.i) == Some(&b'\'') {
                    self.i += 1;
                    let (a, b) = self.quoted()?;
                    let n = decode_hex_in_place(&mut self.arena[a..b])?;
                    self.arena.truncate(a + n);
                    Some(Cell::Blob(a, a + n))
                } else if is("REPLACE") {
                    let start = self.arena.len();
                    let args = self.args()?;
                    match args.as_slice() {
                        [Cell::Text(a0, a1), Cell::Text(b0, b1), Cell::Text(c0, c1)] if b1 > b0 => {
                            let arena = &self.arena;
                            let out =
                                replace_bytes(&arena[*a0..*a1], &arena[*b0..*b1], &arena[*c0..*c1]);
                            self.arena.truncate(start);
                            self.arena.extend_from_slice(&out);
                            Some(Cell::Text(start, self.arena.len()))
                        }
                        _ => None,
                    }
                } else if is("CHAR") {
                    let mut s = String::new();
                    for a in self.args()? {
                        match a {
                            Cell::Integer(n) => s.push(char::from_u32(u32::try_from(n).ok()?)?),
                            _ => return None,
                        }
                    }
                    let start = self.arena.len();
                    self.arena.extend_from_slice(s.as_bytes());
                    Some(Cell::Text(start, self.arena.len()))
                } else if is("CAST") {
                    self.expect(b'(')?;
                    let v = self.value()?;
                    self.keyword("AS")?;
                    let ty = self.word()?;
                    let (text, blob) = (
                        ty.eq_ignore_ascii_case("TEXT"),
                        ty.eq_ignore_ascii_case("BLOB"),
                    );
                    self.expect(b')')?;
                    match v {
                        Cell::Blob(a, b) if text => Some(Cell::Text(a, b)),
                        Cell::Blob(a, b) if blob => Some(Cell::Blob(a, b)),
                        _ => None,
                    }
                } else {
                    self.i = save;
                    None
                }
            }
        }
    }

    fn args(&mut self) -> Option<Vec<Cell>> {
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

    fn number(&mut self, neg: bool) -> Option<Cell> {
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
            return Some(Cell::Integer(if neg { n.wrapping_neg() } else { n }));
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
        if !real {
            if let Ok(n) = digits.parse::<u64>() {
                // i64::MIN's magnitude fits only when negated.
                if neg && n <= 1 << 63 {
                    return Some(Cell::Integer((n as i64).wrapping_neg()));
                }
                if !neg && n <= i64::MAX as u64 {
                    return Some(Cell::Integer(n as i64));
                }
            }
        }
        // Too big for an integer, or a real: SQLite reads both as REAL. Rust's parser is
        // correctly rounded (and negation exact), so subnormals and 17-digit values come back
        // exactly.
        let f = digits.parse::<f64>().ok()?;
        Some(Cell::Real(if neg { -f } else { f }))
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

/// Decode hex digits in place; the number of bytes decoded.
fn decode_hex_in_place(h: &mut [u8]) -> Option<usize> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    for i in 0..h.len() / 2 {
        h[i] = (digit(h[2 * i])? << 4) | digit(h[2 * i + 1])?;
    }
    Some(h.len() / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        let ins = parse_insert(b"INSERT INTO \"t\" (\"a\",b) VALUES(NULL,-5,1.5e-3,'x''y',X'00ff',replace('a\\nb','\\n',char(10)),CAST(X'6869' AS TEXT),9223372036854775808),(1,2,3,4,5,6,7,8);").unwrap();
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
        // Rows of different widths go to SQLite, whose error explains them.
        assert!(parse_insert(b"INSERT INTO t VALUES(1,2),(3);").is_none());
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
