//! D1's statement limit: a row too long for one 100,000-byte statement is written as an INSERT
//! with its largest values left empty, followed by `UPDATE … SET c = c || piece` appends that
//! rebuild each value exactly.

use std::collections::BTreeSet;

use rusqlite::types::ValueRef;

use super::{Dialect, Table, Writer, D1_MAX_STATEMENT, D1_MAX_VALUE};
use crate::error::{Error, Kind, Result};
use crate::ident::quote_ident;
use crate::value_literal::push_value;

/// Write a row too long for one D1 statement as an INSERT with its largest values left empty,
/// then `UPDATE … SET c = c || piece` appends that rebuild each of them exactly.
///
/// `values` start with the rowid when `t.rowid` is set. Into a live database (`keep_rowid`
/// false) that rowid is not written: the UPDATEs find the new row by its declared key, or by
/// `last_insert_rowid()`. With `guard` (rows written `INSERT OR IGNORE`, which may already
/// exist), every UPDATE also requires `changes()=1`: the statement before it changed exactly
/// one row, so the appends apply only to a row the INSERT created, never to an existing one.
#[allow(clippy::too_many_arguments)]
pub(super) fn row_statements(
    t: &Table,
    with_rowid: &str,
    plain: &str,
    values: &[ValueRef],
    keep_rowid: bool,
    guard: bool,
    w: &mut Writer,
) -> Result<()> {
    let offset = usize::from(t.rowid.is_some());
    // The first value the INSERT writes: the rowid is left out when it is not kept.
    let first = usize::from(t.rowid.is_some() && !keep_rowid);
    let prefix = if t.rowid.is_some() && keep_rowid {
        with_rowid
    } else {
        plain
    };
    // Name the row by its primary key when it has one, else by rowid.
    let describe = || -> String {
        let key: Vec<String> = t
            .key
            .iter()
            .filter_map(|c| {
                t.columns.iter().position(|x| x == c).map(|i| {
                    let mut b = Vec::new();
                    push_value(&mut b, values[i + offset], Dialect::Sqlite);
                    format!("{c}={}", String::from_utf8_lossy(&b[..b.len().min(60)]))
                })
            })
            .collect();
        match (key.is_empty(), t.rowid, values.first()) {
            (false, _, _) => format!("table {} row {}", t.name, key.join(" ")),
            (true, Some(_), Some(ValueRef::Integer(id))) => {
                format!("table {} row with rowid {id}", t.name)
            }
            _ => format!("table {}", t.name),
        }
    };
    let total: usize = values.iter().map(value_len).sum();
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| value_len(v) > D1_MAX_VALUE)
    {
        let col = if i < offset {
            "rowid"
        } else {
            &t.columns[i - offset]
        };
        return Err(Error::new(
            Kind::Source,
            format!(
                "dump: {} column {col}: a {}-byte value exceeds D1's {D1_MAX_VALUE}-byte limit",
                describe(),
                value_len(v)
            ),
        ));
    }
    if total > D1_MAX_VALUE {
        return Err(Error::new(
            Kind::Source,
            format!(
                "dump: {}: a {total}-byte row exceeds D1's {D1_MAX_VALUE}-byte limit",
                describe()
            ),
        ));
    }
    // The WHERE clause that finds the row again.
    let by_key = |columns: &[String]| -> Vec<u8> {
        let mut b = b" WHERE ".to_vec();
        for (k, c) in columns.iter().enumerate() {
            let i = t
                .columns
                .iter()
                .position(|x| x == c)
                .expect("key is a column");
            if k > 0 {
                b.extend_from_slice(b" AND ");
            }
            b.extend_from_slice(quote_ident(c).as_bytes());
            b.push(b'=');
            push_value(&mut b, values[i + offset], Dialect::D1);
        }
        b
    };
    let mut locate = match (t.rowid, &t.ipk) {
        (Some(_), _) if first == 1 && !t.key.is_empty() => by_key(&t.key),
        (Some(_), _) if first == 1 => b" WHERE rowid=last_insert_rowid()".to_vec(),
        (Some(alias), _) => {
            let mut b = format!(" WHERE {alias}=").into_bytes();
            push_value(&mut b, values[0], Dialect::D1);
            b
        }
        (None, Some(ipk)) => {
            let i = t
                .columns
                .iter()
                .position(|c| c == ipk)
                .expect("ipk is a column");
            let mut b = format!(" WHERE {}=", quote_ident(ipk)).into_bytes();
            push_value(&mut b, values[i], Dialect::D1);
            b
        }
        (None, None) => by_key(&t.pk),
    };
    if guard {
        locate.extend_from_slice(b" AND changes()=1");
    }
    // Defer the longest text/blob values until the INSERT fits.
    let mut order: Vec<usize> = (first..values.len())
        .filter(|&i| matches!(values[i], ValueRef::Text(_) | ValueRef::Blob(_)))
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(value_len(&values[i])));
    let encoded: Vec<Vec<u8>> = values
        .iter()
        .map(|v| {
            let mut b = Vec::new();
            push_value(&mut b, *v, Dialect::D1);
            b
        })
        .collect();
    let mut deferred: BTreeSet<usize> = BTreeSet::new();
    let size = |deferred: &BTreeSet<usize>| -> usize {
        prefix.len()
            + 2
            + encoded
                .iter()
                .enumerate()
                .skip(first)
                .map(|(i, e)| if deferred.contains(&i) { 3 } else { e.len() } + 1)
                .sum::<usize>()
    };
    for &i in &order {
        if size(&deferred) <= D1_MAX_STATEMENT {
            break;
        }
        if (i < offset)
            || t.pk
                .iter()
                .chain(t.ipk.iter())
                .any(|c| t.columns.get(i - offset) == Some(c))
        {
            continue; // keys stay in the INSERT: the UPDATEs find the row by them
        }
        deferred.insert(i);
    }
    if size(&deferred) > D1_MAX_STATEMENT {
        return Err(Error::new(
            Kind::Source,
            format!("dump: {}: its key or many small values do not fit one {D1_MAX_STATEMENT}-byte statement", describe()),
        ));
    }
    let mut insert = prefix.as_bytes().to_vec();
    for (i, e) in encoded.iter().enumerate().skip(first) {
        if i > first {
            insert.push(b',');
        }
        match (deferred.contains(&i), values[i]) {
            (true, ValueRef::Blob(_)) => insert.extend_from_slice(b"X''"),
            (true, _) => insert.extend_from_slice(b"''"),
            (false, _) => insert.extend_from_slice(e),
        }
    }
    insert.extend_from_slice(b");");
    w.statement(&insert)?;
    for &i in &deferred {
        let col = quote_ident(&t.columns[i - offset]);
        let room = D1_MAX_STATEMENT - (col.len() * 2 + locate.len() + 64 + t.name.len());
        match values[i] {
            ValueRef::Blob(b) => {
                for piece in b.chunks(room / 2 - 4) {
                    let mut s = format!("UPDATE {} SET {col}=CAST({col}||", quote_ident(&t.name))
                        .into_bytes();
                    push_value(&mut s, ValueRef::Blob(piece), Dialect::D1);
                    s.extend_from_slice(b" AS BLOB)");
                    s.extend_from_slice(&locate);
                    s.push(b';');
                    w.statement(&s)?;
                }
            }
            ValueRef::Text(text) => {
                for piece in text_pieces(text, room) {
                    let mut s =
                        format!("UPDATE {} SET {col}={col}||", quote_ident(&t.name)).into_bytes();
                    push_value(&mut s, ValueRef::Text(piece), Dialect::D1);
                    s.extend_from_slice(&locate);
                    s.push(b';');
                    w.statement(&s)?;
                }
            }
            _ => unreachable!("only text and blob values are deferred"),
        }
    }
    Ok(())
}

/// Split text into pieces whose encoding fits `room` bytes, on UTF-8 boundaries when the text
/// is UTF-8 (encodings grow at most 4x: hex for odd text, doubled quotes, newline markers).
fn text_pieces(text: &[u8], room: usize) -> Vec<&[u8]> {
    let target = room / 4;
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = target.min(rest.len());
        if std::str::from_utf8(text).is_ok() {
            while cut < rest.len() && (rest[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces
}

fn value_len(v: &ValueRef) -> usize {
    match v {
        ValueRef::Text(t) => t.len(),
        ValueRef::Blob(b) => b.len(),
        _ => 8,
    }
}
