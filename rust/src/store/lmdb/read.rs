//! Reads: committed data overlaid with the writes staged (or being committed) in this process
//! (`store/overlay.rs`).

use std::collections::BTreeMap;

use super::keys;
use super::tables::{Damage, CHECK_LEN};
use super::TxnError;
use super::{LmdbStore, Table};
use crate::entry::{decode_segment, Entry};
use crate::error::{Error, Result};
use crate::store::overlay;

impl LmdbStore {
    /// The value under `key`: the latest staged Put/Delete of this process, else the committed
    /// value.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_fork();
        if let Some(latest) = self.commit.latest(table, key) {
            return Ok(latest);
        }
        self.read("reading", |h, txn| {
            Ok(h.dbs.table(table).get(txn, key)?.map(<[u8]>::to_vec))
        })
    }

    /// Every (key, value) whose key starts with `prefix`, in key order, staged writes applied.
    pub fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check_fork();
        let staged = overlay::staged_rows(&self.commit, table, prefix);
        let rows = self.read("scanning", |h, txn| {
            let mut rows = BTreeMap::new();
            for row in h.dbs.table(table).prefix_iter(txn, prefix)? {
                let (k, v) = row?;
                rows.insert(k.to_vec(), v.to_vec());
            }
            Ok(rows)
        })?;
        Ok(overlay::lay_over(rows, staged))
    }

    /// The journal of `invocation`: committed and staged entries in position order, every
    /// checksum verified.
    pub fn journal(&self, invocation: &[u8; 16]) -> Result<Vec<Entry>> {
        self.check_fork();
        let staged = self.commit.journal(invocation);
        if staged.deleted {
            return Ok(overlay::concat_journal(Vec::new(), staged)); // what is committed is gone
        }
        let segments = self.read("reading the journal", |h, txn| {
            let mut out = Vec::new();
            let mut end = None;
            let mut next = 0u64;
            for row in h.dbs.journal.prefix_iter(txn, invocation)? {
                let (key, segment) = match row {
                    Err(TxnError::Damaged(damage)) => {
                        return Err(self.locate_journal_damage(h, txn, invocation, damage))
                    }
                    other => other?,
                };
                let first = keys::journal_key_position(key)
                    .ok_or_else(|| self.corrupt(invocation, 0, "malformed journal key".into()))?;
                if first == keys::JOURNAL_END {
                    end = Some(keys::decode_u64(segment).ok_or_else(|| {
                        self.corrupt(invocation, next, "malformed journal end record".into())
                    })?);
                    continue;
                }
                if first != next {
                    let detail = format!("no entries at positions {next}..{first}: a segment is missing");
                    return Err(self.corrupt(invocation, next, detail));
                }
                let entries = decode_segment(segment, first)
                    .map_err(|e| self.corrupt(invocation, e.position, e.detail))?;
                next = first + entries.len() as u64;
                out.push((first, entries));
            }
            // Format 4 ends every journal with a record of its length: a journal whose last
            // segments (or the record itself) were lost does not read as a shorter journal.
            match end {
                Some(end) if end == next => {}
                None if out.is_empty() => {}
                Some(end) => {
                    let detail = format!("the journal records {end} entries but only {next} are stored: a segment is missing");
                    return Err(self.corrupt(invocation, next, detail));
                }
                None => {
                    let detail = "the journal's end record is missing (damaged)".into();
                    return Err(self.corrupt(invocation, next, detail));
                }
            }
            Ok(out)
        })?;
        Ok(overlay::concat_journal(segments, staged))
    }

    /// Number of journal entries of `invocation` (committed and staged).
    pub fn journal_len(&self, invocation: &[u8; 16]) -> Result<usize> {
        self.journal(invocation).map(|entries| entries.len())
    }

    /// The format version recorded in the store.
    pub fn format_version(&self) -> Result<u32> {
        self.read("reading the format version", |h, txn| {
            let raw = h.dbs.meta.get(txn, keys::META_FORMAT_VERSION)?;
            Ok(raw
                .and_then(|r| <[u8; 4]>::try_from(r).ok())
                .map_or(0, u32::from_be_bytes))
        })
    }

    /// A journal row that failed its checksum: name the entry that is damaged when its own
    /// checksum tells (a damaged payload), else the row (a damaged key or framing).
    fn locate_journal_damage(
        &self,
        h: &super::env::Handle,
        txn: &heed::RoTxn<'_, heed::WithoutTls>,
        invocation: &[u8; 16],
        damage: Damage,
    ) -> TxnError {
        if damage.structural {
            return TxnError::Damaged(damage); // its bytes cannot be read safely
        }
        let tagged = [&[super::tables::JOURNAL_TAG][..], &damage.key].concat();
        let stored = h.dbs.main.get(txn, &tagged).ok().flatten();
        let value = stored.and_then(|s| s.get(..s.len().checked_sub(CHECK_LEN)?));
        let first = keys::journal_key_position(&damage.key);
        if let (Some(value), Some(first), true) = (value, first, damage.key.starts_with(invocation))
        {
            if let Err(e) = decode_segment(value, first) {
                return self.corrupt(invocation, e.position, e.detail);
            }
        }
        TxnError::Damaged(damage)
    }

    fn corrupt(&self, invocation: &[u8; 16], position: u64, detail: String) -> TxnError {
        TxnError::Core(Error::CorruptEntry {
            path: self.path().to_path_buf(),
            invocation_id: crate::ids::format(invocation),
            position,
            detail,
        })
    }
}
