//! Reads on PostgreSQL: committed rows overlaid with this process's staged writes
//! (`store/overlay.rs`).

use std::collections::BTreeMap;

use super::conn::OpError;
use super::PgStore;
use crate::entry::{decode_segment, Entry};
use crate::error::{Error, Result};
use crate::store::{overlay, Store, Table};

pub(super) fn get(store: &PgStore, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
    if let Some(latest) = store.commit.latest(table, key) {
        return Ok(latest);
    }
    let text = match table {
        Table::Invocations => store.sql.get_invocation,
        Table::Data => store.sql.get_data,
    };
    store.pool.run("reading", |session| {
        let st = session.statement(text)?;
        let row = session.client.query_opt(&st, &[&key])?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
    })
}

pub(super) fn scan(
    store: &PgStore,
    table: Table,
    prefix: &[u8],
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let staged = overlay::staged_rows(&store.commit, table, prefix);
    let text = match table {
        Table::Invocations => store.sql.scan_invocations,
        Table::Data => store.sql.scan_data,
    };
    let upper = successor(prefix);
    let rows = store.pool.run("scanning", |session| {
        let st = session.statement(text)?;
        let mut rows = BTreeMap::new();
        for r in session.client.query(&st, &[&prefix, &upper])? {
            rows.insert(r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1));
        }
        Ok(rows)
    })?;
    Ok(overlay::lay_over(rows, staged))
}

pub(super) fn journal(store: &PgStore, invocation: &[u8; 16]) -> Result<Vec<Entry>> {
    let staged = store.commit.journal(invocation);
    if staged.deleted {
        return Ok(overlay::concat_journal(Vec::new(), staged)); // what is committed is gone
    }
    let segments = store.pool.run("reading the journal", |session| {
        let st = session.statement(store.sql.journal)?;
        let mut out = Vec::new();
        let mut next = 0u64;
        for r in session.client.query(&st, &[&invocation.as_slice()])? {
            let first = r.get::<_, i64>(0) as u64;
            if first != next {
                let detail =
                    format!("no entries at positions {next}..{first}: a segment is missing");
                return Err(OpError::Core(corrupt(store, invocation, next, detail)));
            }
            let raw: &[u8] = r.get(1);
            let entries = decode_segment(raw, first)
                .map_err(|e| OpError::Core(corrupt(store, invocation, e.position, e.detail)))?;
            next = first + entries.len() as u64;
            out.push((first, entries));
        }
        Ok(out)
    })?;
    Ok(overlay::concat_journal(segments, staged))
}

fn corrupt(store: &PgStore, invocation: &[u8; 16], position: u64, detail: String) -> Error {
    Error::CorruptEntry {
        path: store.location().into(),
        invocation_id: crate::ids::format(invocation),
        position,
        detail,
    }
}

/// The least byte string greater than every string starting with `prefix`; None when there
/// is none (an empty prefix, or only 0xff bytes).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xff {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}
