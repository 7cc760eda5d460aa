//! SQL literals that read back exactly: the value formats shared by both dump dialects.
//! REALs as the shortest text that parses to the same bits, text that is not plain UTF-8 (or
//! holds NUL) as `CAST(X'…' AS TEXT)`, CR (and, for D1, LF) through `replace(…, char(N))`.

use std::io::Write;

use rusqlite::types::ValueRef;

use crate::dump::Dialect;

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    let start = buf.len();
    buf.resize(start + bytes.len() * 2, 0);
    for (out, b) in buf[start..].chunks_exact_mut(2).zip(bytes) {
        out[0] = HEX[(b >> 4) as usize];
        out[1] = HEX[(b & 15) as usize];
    }
}

/// Append one value as an SQL literal that reads back exactly.
pub fn push_value(buf: &mut Vec<u8>, v: ValueRef, dialect: Dialect) {
    match v {
        ValueRef::Null => buf.extend_from_slice(b"NULL"),
        ValueRef::Integer(i) => {
            let _ = write!(buf, "{i}");
        }
        ValueRef::Real(f) => push_real(buf, f),
        ValueRef::Blob(b) => {
            buf.extend_from_slice(b"X'");
            push_hex(buf, b);
            buf.push(b'\'');
        }
        ValueRef::Text(t) => push_text(buf, t, dialect),
    }
}

/// Shortest decimal text that parses back to the same f64 (Rust's `Debug` for f64 is exactly
/// that, and always has a `.` or an exponent, so SQLite reads it as REAL).
pub(crate) fn push_real(buf: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        buf.extend_from_slice(b"NULL");
    } else if f.is_infinite() {
        buf.extend_from_slice(if f > 0.0 { b"9e999" } else { b"-9e999" });
    } else {
        let _ = write!(buf, "{f:?}");
    }
}

fn push_text(buf: &mut Vec<u8>, t: &[u8], dialect: Dialect) {
    let Ok(s) = std::str::from_utf8(t) else {
        return push_text_hex(buf, t);
    };
    if s.contains('\0') {
        return push_text_hex(buf, t);
    }
    // D1: keep each statement on one line, as wrangler's export does. Both dialects: never a
    // raw CR, which the sqlite3 shell drops before a line end.
    let escape_nl = dialect == Dialect::D1 && s.contains('\n');
    let escape_cr = s.contains('\r');
    if escape_nl || escape_cr {
        let (nl, cr) = (marker(s, "\\n"), marker(s, "\\r"));
        let mut body = s.to_string();
        let mut steps: Vec<(&str, u32, char)> = Vec::new();
        if escape_nl {
            body = body.replace('\n', &nl);
            steps.push((&nl, 10, '\n'));
        }
        if escape_cr {
            body = body.replace('\r', &cr);
            steps.push((&cr, 13, '\r'));
        }
        // SQLite applies the innermost replace() first: check that order reads back exactly,
        // else fall back to hex, which always does.
        let mut back = body.clone();
        for (m, _, c) in &steps {
            back = back.replace(m, &c.to_string());
        }
        if back != s {
            return push_text_hex(buf, t);
        }
        let mut expr = Vec::new();
        push_quoted(&mut expr, &body);
        for (m, code, _) in &steps {
            let mut e = b"replace(".to_vec();
            e.extend_from_slice(&expr);
            e.push(b',');
            push_quoted(&mut e, m);
            e.extend_from_slice(format!(",char({code}))").as_bytes());
            expr = e;
        }
        buf.extend_from_slice(&expr);
        return;
    }
    push_quoted(buf, s);
}

/// A marker that does not occur in `s`: `\n`, then `\n1`, `\n2`, …
fn marker(s: &str, base: &str) -> String {
    if !s.contains(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|m| !s.contains(m.as_str()))
        .expect("some marker is free")
}

fn push_quoted(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'\'');
    let mut parts = s.as_bytes().split(|&b| b == b'\'');
    if let Some(first) = parts.next() {
        buf.extend_from_slice(first);
    }
    for part in parts {
        buf.extend_from_slice(b"''");
        buf.extend_from_slice(part);
    }
    buf.push(b'\'');
}

fn push_text_hex(buf: &mut Vec<u8>, t: &[u8]) {
    buf.extend_from_slice(b"CAST(X'");
    push_hex(buf, t);
    buf.extend_from_slice(b"' AS TEXT)");
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn lit(v: ValueRef, d: Dialect) -> String {
        let mut b = Vec::new();
        push_value(&mut b, v, d);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn literals() {
        assert_eq!(
            lit(ValueRef::Real(f64::from_bits(1)), Dialect::Sqlite),
            "5e-324"
        );
        assert_eq!(lit(ValueRef::Real(1.0), Dialect::Sqlite), "1.0");
        assert_eq!(lit(ValueRef::Real(0.1), Dialect::Sqlite), "0.1");
        assert_eq!(
            lit(ValueRef::Integer(i64::MIN), Dialect::Sqlite),
            "-9223372036854775808"
        );
        assert_eq!(lit(ValueRef::Text(b"it's"), Dialect::Sqlite), "'it''s'");
        assert_eq!(lit(ValueRef::Text(b"a\nb"), Dialect::Sqlite), "'a\nb'");
        assert_eq!(
            lit(ValueRef::Text(b"a\nb"), Dialect::D1),
            "replace('a\\nb','\\n',char(10))"
        );
        assert_eq!(
            lit(ValueRef::Text(b"a\\nb\nc"), Dialect::D1),
            "replace('a\\nb\\n1c','\\n1',char(10))"
        );
        assert_eq!(
            lit(ValueRef::Text(b"nul\0"), Dialect::Sqlite),
            "CAST(X'6e756c00' AS TEXT)"
        );
        assert_eq!(
            lit(ValueRef::Text(b"\xff"), Dialect::Sqlite),
            "CAST(X'ff' AS TEXT)"
        );
        assert_eq!(lit(ValueRef::Blob(&[0, 255]), Dialect::D1), "X'00ff'");
        // A literal backslash-n must stay one in the sqlite dialect.
        assert_eq!(
            lit(ValueRef::Text(b"\\n\r"), Dialect::Sqlite),
            "replace('\\n\\r','\\r',char(13))"
        );
        assert_eq!(
            lit(ValueRef::Text(b"a\r\nb"), Dialect::Sqlite),
            "replace('a\\r\nb','\\r',char(13))"
        );
    }

    #[test]
    fn every_real_reads_back_exactly_in_sqlite() {
        let c = Connection::open_in_memory().unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..5000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(if i < 100 { i } else { x });
            if !f.is_finite() {
                continue;
            }
            let mut b = Vec::new();
            push_real(&mut b, f);
            let sql = format!("SELECT {}", String::from_utf8(b).unwrap());
            let back: f64 = c.query_row(&sql, [], |r| r.get(0)).unwrap();
            assert!(
                back.to_bits() == f.to_bits() || (f == 0.0 && back == 0.0),
                "{f:e} came back as {back:e}"
            );
        }
    }
}
