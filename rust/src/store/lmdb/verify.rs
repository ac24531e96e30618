//! Verification of a whole store: every row's checksum and layout, journals without gaps, the
//! queue and its index in agreement. Two walks share the row checks: `verify_file` reads the
//! data file page by page with `pread` (`pages.rs`), so no damage can crash it;
//! `verify_table` reads one table through LMDB, as every other read does, for the
//! damage only LMDB's own code trips over (run it in a child process: `pynenc verify`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;

use super::keys;
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, EnvFlags, EnvOpenOptions};

use super::tables::{check_row, describe_key, table_name, TABLES};
use crate::entry::decode_segment;
use crate::error::{Error, Result};

/// One thing wrong with a store: where (table, key or page) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub table: String,
    pub key: String,
    pub detail: String,
}

impl Finding {
    pub(crate) fn new(table: &str, key: &str, detail: String) -> Finding {
        Finding {
            table: table.to_string(),
            key: key.to_string(),
            detail,
        }
    }
}

/// The checks of the rows of the main database, fed one row at a time in key order.
#[derive(Default)]
pub(crate) struct RowChecker {
    /// The journal being walked: invocation and the next position its segments should start at.
    journal: Option<([u8; 16], u64)>,
    queue: BTreeSet<(u64, [u8; 16])>,
    queued: BTreeMap<[u8; 16], u64>,
    pub rows: u64,
}

impl RowChecker {
    /// Check one row: `tagged` is its key in the main database, `stored` its value.
    pub fn row(&mut self, tagged: &[u8], stored: &[u8], out: &mut Vec<Finding>) {
        self.rows += 1;
        let Some((&tag, key)) = tagged.split_first() else {
            out.push(Finding::new(
                "main database",
                "empty key",
                "a row has an empty key".into(),
            ));
            return;
        };
        let Some(table) = table_name(tag) else {
            if !tag.is_ascii_alphabetic() {
                let described = describe_key("", tagged);
                out.push(Finding::new(
                    "main database",
                    &described,
                    format!("a row with tag {tag:#04x}, which is no table's"),
                ));
            }
            return; // a named database's record: the page walk checks it
        };
        let finding = |detail: String| Finding::new(table, &describe_key(table, key), detail);
        let value = match check_row(tagged, stored) {
            Ok(v) => v,
            Err(detail) => {
                out.push(finding(detail));
                return;
            }
        };
        let wrong = match table {
            "journal" => self.journal_row(key, value, out),
            "invocations" | "queued" | "leases" if key.len() != 16 => Some(format!(
                "the key has {} bytes, not an invocation id's 16",
                key.len()
            )),
            "data" if key.len() < 16 => Some(format!(
                "the key has {} bytes, less than a workflow id",
                key.len()
            )),
            "queue" => match keys::queue_key_invocation(key) {
                None => Some(format!("the key has {} bytes, not 24", key.len())),
                Some(_) if !value.is_empty() => Some("a queue row has a value".into()),
                Some(inv) => {
                    self.queue
                        .insert((keys::decode_u64(&key[..8]).unwrap_or(0), inv));
                    None
                }
            },
            "queued" => match keys::decode_u64(value) {
                None => Some(format!(
                    "the value has {} bytes, not a queue position's 8",
                    value.len()
                )),
                Some(seq) => {
                    self.queued.insert(key.try_into().expect("16 bytes"), seq);
                    None
                }
            },
            "leases" if keys::decode_lease(value).is_none() => {
                Some(format!("the lease has {} bytes, too short", value.len()))
            }
            "counters" if keys::decode_u64(value).is_none() => {
                Some(format!("the counter has {} bytes, not 8", value.len()))
            }
            _ => None,
        };
        if let Some(wrong) = wrong {
            out.push(finding(wrong));
        }
    }

    fn journal_row(&mut self, key: &[u8], value: &[u8], out: &mut Vec<Finding>) -> Option<String> {
        let Some(first) = keys::journal_key_position(key) else {
            return Some(format!("the key has {} bytes, not 24", key.len()));
        };
        let inv: [u8; 16] = key[..16].try_into().expect("16 bytes");
        let expected = match self.journal {
            Some((current, next)) if current == inv => next,
            _ => {
                self.end_journal(out);
                0
            }
        };
        if first == keys::JOURNAL_END {
            self.journal = None;
            return match keys::decode_u64(value) {
                None => Some(format!("the end record has {} bytes, not 8", value.len())),
                Some(end) if end != expected => Some(format!(
                    "the journal records {end} entries but {expected} are stored: a segment is missing"
                )),
                Some(_) => None,
            };
        }
        let entries = match decode_segment(value, first) {
            Ok(entries) => entries,
            Err(e) => {
                self.journal = None;
                return Some(format!("entry at position {}: {}", e.position, e.detail));
            }
        };
        self.journal = Some((inv, first + entries.len() as u64));
        (first != expected).then(|| {
            format!(
                "the journal has no entries at positions {expected}..{first}: a segment is missing"
            )
        })
    }

    /// A journal's segments ended without its end record.
    fn end_journal(&mut self, out: &mut Vec<Finding>) {
        if let Some((inv, next)) = self.journal.take() {
            let key = describe_key("journal", &keys::journal_key(&inv, keys::JOURNAL_END));
            let detail = format!("the journal of {next} entries has no end record (damaged)");
            out.push(Finding::new("journal", &key, detail));
        }
    }

    /// Findings of the checks across rows, once every row was seen.
    pub fn finish(&mut self, out: &mut Vec<Finding>) {
        self.end_journal(out);
        for (seq, inv) in &self.queue {
            if self.queued.get(inv) != Some(seq) {
                let id = crate::ids::format(inv);
                out.push(Finding::new(
                    "queue",
                    &format!("invocation {id}"),
                    format!("queued at position {seq} but the queue index disagrees"),
                ));
            }
        }
        for (inv, seq) in &self.queued {
            if !self.queue.contains(&(*seq, *inv)) {
                let id = crate::ids::format(inv);
                out.push(Finding::new(
                    "queued",
                    &format!("invocation {id}"),
                    format!("indexed at queue position {seq}, which the queue does not hold"),
                ));
            }
        }
    }
}

/// Walk every page and row of the data file of the store in `dir` without LMDB (see the
/// module docs). Nothing is written; the store need not be open.
/// A walk that saw another process commit meanwhile is repeated, up to three walks in all.
pub fn verify_file(dir: &Path) -> (Vec<Finding>, u64) {
    let data = dir.join("data.mdb");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = super::pages::snapshot_id(&data);
        let mut rows = RowChecker::default();
        let mut findings = super::pages::walk(&data, &mut |k, v, out| rows.row(k, v, out));
        rows.finish(&mut findings);
        if attempt == 3 || findings.is_empty() || super::pages::snapshot_id(&data) == before {
            return (findings, rows.rows);
        }
    }
}

/// Walk table `table` of the store in `dir` through LMDB, checking every row as
/// `verify_file` does; an LMDB failure ends the walk as a finding. The environment is opened
/// read-only: verifying never writes (no migration, no database created). Damage that LMDB's
/// own code trips over can crash the process: `pynenc verify` runs this in a child process.
pub fn verify_table(dir: &Path, table: &str) -> Result<Vec<Finding>> {
    let Some(&(name, tag)) = TABLES.iter().find(|(n, _)| *n == table) else {
        return Err(Error::InvalidArgument(format!(
            "no table {table:?}: the tables are {}",
            TABLES.map(|(n, _)| n).join(", ")
        )));
    };
    let lmdb = |during: &'static str| move |e: heed::Error| super::env::map_err(dir, during, e);
    let file_len = std::fs::metadata(dir.join("data.mdb"))
        .map_err(|e| super::env::map_io(dir, "opening the store to verify", e))?
        .len();
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    let map_size = usize::try_from(file_len).unwrap_or(usize::MAX).max(1 << 20);
    options
        .map_size(map_size.next_multiple_of(1 << 16))
        .max_dbs(9);
    // SAFETY: a read-only environment: this process writes nothing through the map, and opens
    // no other environment on `dir` (the walk runs in a process of its own); other processes
    // writing the store go through LMDB's lock file as usual. LMDB trusts the pages it reads,
    // which is why the caller runs this in a child process.
    unsafe { options.flags(EnvFlags::READ_ONLY) };
    let env = unsafe { options.open(dir) }.map_err(lmdb("opening the store to verify"))?;
    let opening = env.read_txn().map_err(lmdb("verifying"))?;
    let opened = env.open_databases_and_commit(opening, |opener, txn| {
        let main = opener.open_database::<Bytes, Bytes>(txn, None)?;
        Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit(main))
    });
    let main: Database<Bytes, Bytes> = match opened.map_err(lmdb("verifying"))? {
        CommitOrAbort::Commit(Some(main)) => main,
        _ => {
            let detail = "the main database cannot be opened".into();
            return Ok(vec![Finding::new("main database", "", detail)]);
        }
    };
    let txn = env.read_txn().map_err(lmdb("verifying"))?;
    let mut out = Vec::new();
    let mut rows = RowChecker::default();
    let mut last: Option<Vec<u8>> = None;
    let lmdb_failed = |last: &Option<Vec<u8>>, e: heed::Error| {
        let after = last
            .as_deref()
            .map_or("the first row".into(), |k| describe_key(name, &k[1..]));
        Finding::new(name, &format!("after {after}"), format!("LMDB: {e}"))
    };
    let start = [tag];
    let range = (Bound::Included(&start[..]), Bound::Unbounded);
    match main.range(&txn, &range) {
        Err(e) => out.push(lmdb_failed(&last, e)),
        Ok(iter) => {
            for row in iter {
                match row {
                    Ok((k, _))
                        if last.as_ref().is_some_and(|l| k[..] <= l[..]) || k < &start[..] =>
                    {
                        let after = last
                            .as_deref()
                            .map_or("the first row".into(), |k| describe_key(name, &k[1..]));
                        let detail = "the next row's key is out of order: a page is damaged".into();
                        out.push(Finding::new(name, &format!("after {after}"), detail));
                        break;
                    }
                    Ok((k, _)) if !k.starts_with(&start) => break,
                    Ok((k, v)) => {
                        rows.row(k, v, &mut out);
                        last = Some(k.to_vec());
                    }
                    Err(e) => {
                        out.push(lmdb_failed(&last, e));
                        break;
                    }
                }
            }
        }
    }
    // The queue's cross-check needs both of its tables: `verify_file` does it.
    if name != "queue" && name != "queued" {
        rows.finish(&mut out);
    }
    Ok(out)
}
