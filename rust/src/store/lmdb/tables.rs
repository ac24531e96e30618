//! The store's tables. Each is the range of LMDB's main database whose keys start with its
//! one-byte tag (format version 2, `docs/journal-format.md` §2): a commit then changes one
//! B-tree, whose root the meta page holds, instead of a tree per table plus the main tree's
//! page holding their roots (about one page fewer per durable step).
//!
//! Every row's value ends with a CRC-32C over its key and value (format version 4,
//! `docs/journal-format.md` §2.1), written by `put` and checked by every read here: a damaged
//! row, or a row whose key was damaged into another key, is reported as a `Damage` naming the
//! table and the key, never returned as good.

use std::io::Write;
use std::ops::Bound;

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};

use std::sync::Arc;

use super::mapguard::MapBounds;
use super::Table;
use super::{TxnError, TxnResult};

/// A database of the environment, keys and values as raw bytes.
pub(crate) type Db = Database<'static, Bytes, Bytes>;

/// Longest key a caller may give a table: LMDB's 511 less the tag byte.
pub const MAX_KEY_LEN: usize = 510;

/// One table: the rows of the main database under one tag. Keys given to and returned by
/// its methods are the table's own, without the tag.
#[derive(Clone)]
pub(crate) struct Keyspace {
    db: Db,
    tag: u8,
    name: &'static str,
    bounds: Arc<MapBounds>,
}

/// Rows of a table, keys without the tag, values without their checksum (each checked).
pub(crate) type Rows<'txn> = Box<dyn Iterator<Item = TxnResult<(&'txn [u8], &'txn [u8])>> + 'txn>;

/// A row as LMDB returns it: key and stored value.
type Row<'t> = (&'t [u8], &'t [u8]);

/// Bytes of the checksum that ends every row's value.
pub(crate) const CHECK_LEN: usize = 4;

/// The checksum of a row: CRC-32C over the main database's key length (u16 LE), the key
/// (tag included) and the value. The length binds the key's boundary, so a damaged node
/// header that moves bytes between key and value is caught too.
pub(crate) fn row_check(tagged_key: &[u8], value: &[u8]) -> u32 {
    let len = u16::try_from(tagged_key.len()).unwrap_or(u16::MAX);
    let crc = crc32c::crc32c(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, tagged_key);
    crc32c::crc32c_append(crc, value)
}

/// The value of a stored row (main-database key `tagged_key`) without its checksum, or what
/// is wrong with it.
pub(crate) fn check_row<'v>(tagged_key: &[u8], stored: &'v [u8]) -> Result<&'v [u8], String> {
    let Some(split) = stored.len().checked_sub(CHECK_LEN) else {
        return Err(format!(
            "the value has {} bytes, shorter than its {CHECK_LEN}-byte checksum",
            stored.len()
        ));
    };
    let (value, check) = stored.split_at(split);
    let recorded = u32::from_le_bytes(check.try_into().expect("4 bytes"));
    let actual = row_check(tagged_key, value);
    if recorded == actual {
        Ok(value)
    } else {
        Err(format!(
            "checksum mismatch over key and value (recorded {recorded:#010x}, computed \
             {actual:#010x})"
        ))
    }
}

/// A row that failed its check: the store adds its path when it reports it.
#[derive(Clone, Debug)]
pub(crate) struct Damage {
    pub table: &'static str,
    /// The row's key in its table (without the tag).
    pub key: Vec<u8>,
    pub detail: String,
    /// The damage is in a page's structure (an impossible length, keys out of order, a page
    /// of the wrong kind), not only in a record's bytes.
    pub structural: bool,
}

impl Damage {
    pub fn into_error(self, path: &std::path::Path) -> crate::error::Error {
        crate::error::Error::StoreCorrupt {
            path: path.to_path_buf(),
            table: self.table,
            key: describe_key(self.table, &self.key),
            detail: self.detail,
        }
    }
}

/// The name of the table tagged `tag`, if any.
pub(crate) fn table_name(tag: u8) -> Option<&'static str> {
    TABLES
        .iter()
        .find(|(_, t)| *t == tag)
        .map(|(name, _)| *name)
}

/// A key of `table` as an operator reads it: invocation and workflow ids as UUIDs.
pub(crate) fn describe_key(table: &str, key: &[u8]) -> String {
    let id = |bytes: &[u8]| -> Option<String> {
        <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|id| crate::ids::format(&id))
    };
    let described = match (table, key.len()) {
        ("journal", 24) => id(&key[..16]).map(|inv| {
            match u64::from_be_bytes(key[16..].try_into().expect("8 bytes")) {
                u64::MAX => format!("invocation {inv}, journal end record"),
                first => format!("invocation {inv}, journal segment from position {first}"),
            }
        }),
        ("invocations" | "queued" | "leases", 16) => id(key).map(|inv| format!("invocation {inv}")),
        ("journal", 16) => id(key).map(|inv| format!("invocation {inv}, journal")),
        ("data", 16) => id(key).map(|wf| format!("workflow {wf}, data")),
        ("data", n) if n >= 16 => id(&key[..16]).map(|wf| {
            let name = String::from_utf8_lossy(&key[16..]);
            format!("workflow {wf}, data key {name:?}")
        }),
        ("queue", 24) => id(&key[8..]).map(|inv| {
            let seq = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
            format!("invocation {inv}, queue position {seq}")
        }),
        ("counters", _) if key.is_ascii() => {
            Some(format!("counter {:?}", String::from_utf8_lossy(key)))
        }
        _ => None,
    };
    described.unwrap_or_else(|| {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("key 0x{hex} ({} bytes)", key.len())
    })
}

/// Set `out` to the main database's key of `key` in the table tagged `tag`: `tag ‖ key`.
pub(crate) fn tag_key(tag: u8, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(tag);
    out.extend_from_slice(key);
}

impl Keyspace {
    /// Call `f` with `tag ‖ key`, built on the stack when short.
    fn tagged<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
        let mut short = [0u8; 64];
        if key.len() < short.len() {
            short[0] = self.tag;
            short[1..=key.len()].copy_from_slice(key);
            f(&short[..=key.len()])
        } else {
            let mut long = Vec::with_capacity(key.len() + 1);
            tag_key(self.tag, key, &mut long);
            f(&long)
        }
    }

    /// `check_row`, after making sure the key and value LMDB returned lie where they can be
    /// read (`mapguard.rs`).
    fn checked<'v>(&self, key: &[u8], tagged: &[u8], stored: &'v [u8]) -> TxnResult<&'v [u8]> {
        let unreadable = |what: &str, e: String| {
            self.broken_page(key, format!("the {what} cannot be read: {e}"))
        };
        self.bounds
            .check(tagged)
            .map_err(|e| unreadable("key", e))?;
        self.bounds
            .check(stored)
            .map_err(|e| unreadable("value", e))?;
        check_row(tagged, stored).map_err(|detail| self.damage(key, detail))
    }

    /// A key LMDB returned (tagged), as an operator reads it, if its bytes can be read safely.
    fn describe_readable(&self, tagged: &[u8]) -> String {
        match self.bounds.check(tagged) {
            Ok(()) => describe_key(self.name, tagged.get(1..).unwrap_or_default()),
            Err(_) => "a record whose key cannot be read".into(),
        }
    }

    /// `checked` for a key that is the caller's own, not LMDB's.
    fn checked_value<'v>(
        &self,
        key: &[u8],
        tagged: &[u8],
        stored: &'v [u8],
    ) -> TxnResult<&'v [u8]> {
        let unreadable =
            |e: String| self.broken_page(key, format!("the value cannot be read: {e}"));
        self.bounds.check(stored).map_err(unreadable)?;
        check_row(tagged, stored).map_err(|detail| self.damage(key, detail))
    }

    fn damage(&self, key: &[u8], detail: String) -> TxnError {
        TxnError::Damaged(Damage {
            table: self.name,
            key: key.to_vec(),
            detail,
            structural: false,
        })
    }

    fn broken_page(&self, key: &[u8], detail: String) -> TxnError {
        TxnError::Damaged(Damage {
            table: self.name,
            key: key.to_vec(),
            detail,
            structural: true,
        })
    }

    /// An LMDB failure reading `key`: a damaged page (LMDB found a page of the wrong kind or
    /// past the end, or gave up on the transaction after one) is reported as damage of this
    /// table near `key`.
    fn lmdb(&self, key: &[u8], e: heed::Error) -> TxnError {
        use heed::MdbError::{BadTxn, Corrupted, PageNotFound};
        match e {
            // A read transaction goes bad only after LMDB met a damaged page in it.
            heed::Error::Mdb(m @ (Corrupted | PageNotFound | BadTxn)) => self.broken_page(
                key,
                format!("a page on the way to this key is damaged (LMDB: {m})"),
            ),
            other => TxnError::Heed(other),
        }
    }

    /// The value under `key`, its checksum verified.
    pub fn get<'txn>(&self, txn: &'txn RoTxn, key: &[u8]) -> TxnResult<Option<&'txn [u8]>> {
        self.tagged(key, |k| {
            match self.db.get(txn, k).map_err(|e| self.lmdb(key, e))? {
                None => self.check_neighbours(txn, key, k).map(|()| None),
                // `k` is the caller's own key: only the value comes from the map.
                Some(stored) => self.checked_value(key, k, stored).map(Some),
            }
        })
    }

    /// The row `k` that ended a scan of `start` (the tagged prefix): it must not be damaged,
    /// nor, when the scan found nothing, the row before the prefix.
    fn check_beyond(
        &self,
        txn: &RoTxn,
        start: &[u8],
        (k, stored): (&[u8], &[u8]),
        empty: bool,
    ) -> TxnResult<()> {
        let wrap = |damage: TxnError, next_to: &[u8]| match damage {
            TxnError::Damaged(mut d) => {
                d.detail = format!(
                    "the record next to the rows of this key ({}) is damaged: {}; it may be one \
                     of them with a damaged key",
                    self.describe_readable(next_to),
                    d.detail
                );
                TxnError::Damaged(d)
            }
            other => other,
        };
        if !k.first().map_or(true, u8::is_ascii_alphabetic) {
            self.checked(&start[1..], k, stored)
                .map_err(|e| wrap(e, k))?;
        }
        if empty {
            let before = (Bound::Unbounded, Bound::Excluded(start));
            let key = &start[1..];
            let prev = self
                .db
                .rev_range(txn, &before)
                .map_err(|e| self.lmdb(key, e))?
                .next();
            self.check_rows(key, [prev, None])?;
        }
        Ok(())
    }

    /// A key that is not stored may be one whose stored copy was damaged into another key: the
    /// damaged row still sits where the key belongs, so the rows on either side of it are
    /// checked too (a miss costs two cursor steps), and a damaged neighbour is reported for
    /// `key` instead of answering that it is absent.
    fn check_neighbours(&self, txn: &RoTxn, key: &[u8], tagged: &[u8]) -> TxnResult<()> {
        let after = (Bound::Excluded(tagged), Bound::Unbounded);
        let before = (Bound::Unbounded, Bound::Excluded(tagged));
        let next = self
            .db
            .range(txn, &after)
            .map_err(|e| self.lmdb(key, e))?
            .next();
        let prev = self
            .db
            .rev_range(txn, &before)
            .map_err(|e| self.lmdb(key, e))?
            .next();
        self.check_rows(key, [next, prev])
    }

    fn check_rows<'t>(
        &self,
        key: &[u8],
        rows: [Option<heed::Result<Row<'t>>>; 2],
    ) -> TxnResult<()> {
        for row in rows.into_iter().flatten() {
            let (k, stored) = row.map_err(|e| self.lmdb(key, e))?;
            if k.first().map_or(true, u8::is_ascii_alphabetic) {
                continue; // a named database's record, which has no checksum
            }
            if let Err(TxnError::Damaged(mut damage)) = self.checked(key, k, stored) {
                let next_to = self.describe_readable(k);
                damage.detail = format!(
                    "no record under this key, and the record next to it ({next_to}) is \
                     damaged: {}; it may be this key's record with a damaged key",
                    damage.detail
                );
                return Err(TxnError::Damaged(damage));
            }
        }
        Ok(())
    }

    /// LmdbStore `value` under `key`, followed by its checksum (written in place, no copy).
    pub fn put(&self, txn: &mut RwTxn, key: &[u8], value: &[u8]) -> heed::Result<()> {
        self.tagged(key, |k| {
            let check = row_check(k, value).to_le_bytes();
            self.db
                .put_reserved(txn, k, value.len() + CHECK_LEN, |space| {
                    space.write_all(value)?;
                    space.write_all(&check)
                })
        })
    }

    /// Delete a row; whether it existed.
    pub fn delete(&self, txn: &mut RwTxn, key: &[u8]) -> heed::Result<bool> {
        self.tagged(key, |k| self.db.delete(txn, k))
    }

    /// Delete the rows whose keys lie from `first` to `last`, both included; how many there
    /// were.
    pub fn delete_range(&self, txn: &mut RwTxn, first: &[u8], last: &[u8]) -> heed::Result<usize> {
        let (mut from, mut to) = (Vec::new(), Vec::new());
        tag_key(self.tag, first, &mut from);
        tag_key(self.tag, last, &mut to);
        let range = (
            Bound::Included(from.as_slice()),
            Bound::Included(to.as_slice()),
        );
        self.db.delete_range(txn, &range)
    }

    /// Rows whose key starts with `prefix` (every row for an empty prefix), in key order, each
    /// checksum verified.
    ///
    /// The rows are read from the first key at or after the prefix until the first key past
    /// it, and that key must sort after every row before it: a damaged page that LMDB's cursor
    /// walks onto yields keys out of order (a zeroed page reads as one empty key), which is
    /// reported instead of silently ending the rows early.
    pub fn prefix_iter<'txn>(&self, txn: &'txn RoTxn, prefix: &[u8]) -> TxnResult<Rows<'txn>> {
        let mut start = Vec::with_capacity(prefix.len() + 1);
        tag_key(self.tag, prefix, &mut start);
        let range = (Bound::Included(start.as_slice()), Bound::Unbounded);
        let mut rows = self
            .db
            .range(txn, &range)
            .map_err(|e| self.lmdb(&start[1..], e))?;
        let this = self.clone();
        let mut previous: Vec<u8> = start.clone();
        let mut first = true;
        let mut first_row = true;
        let mut done = false;
        Ok(Box::new(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let row = rows.next();
            let (k, stored) = match row {
                None => {
                    done = true;
                    return None;
                }
                Some(Err(e)) => {
                    done = true;
                    return Some(Err(this.lmdb(&previous[1..], e)));
                }
                Some(Ok(row)) => row,
            };
            if let Err(e) = this.bounds.check(k) {
                // Nothing of this key may be read, not even to compare it.
                done = true;
                let detail = format!("the key of the row after this one cannot be read: {e}");
                return Some(Err(this.broken_page(&previous[1..], detail)));
            }
            let in_order = if first {
                k >= previous.as_slice()
            } else {
                k > previous.as_slice()
            };
            first = false;
            if !in_order {
                done = true;
                let detail = format!(
                    "the rows after this key are out of order (next key {} bytes long): a \
                     page of the table is damaged",
                    k.len()
                );
                return Some(Err(this.broken_page(&previous[1..], detail)));
            }
            if !k.starts_with(&start) {
                done = true;
                // The row past the prefix is checked too: a row of this prefix whose key was
                // damaged sits there, and may have sent LMDB's search past the others.
                return match this.check_beyond(txn, &start, (k, stored), first_row) {
                    Ok(()) => None,
                    Err(e) => Some(Err(e)),
                };
            }
            first_row = false;
            previous.clear();
            previous.extend_from_slice(k);
            Some(this.checked(&k[1..], k, stored).map(|v| (&k[1..], v)))
        })))
    }

    /// Every row, in key order.
    pub fn iter<'txn>(&self, txn: &'txn RoTxn) -> TxnResult<Rows<'txn>> {
        self.prefix_iter(txn, &[])
    }
}

/// Tags of the tables (the first byte of their keys in the main database). Named databases'
/// own records in the main database (`meta`) have ASCII names, which never start with these.
pub(crate) const TABLES: [(&str, u8); 7] = [
    ("journal", 0x01),
    ("invocations", 0x02),
    ("data", 0x03),
    ("queue", 0x04),
    ("queued", 0x05),
    ("leases", 0x06),
    ("counters", 0x07),
];

/// The tag of the journal table.
pub(crate) const JOURNAL_TAG: u8 = TABLES[0].1;

/// The tables of one environment, and the named database `meta`.
pub(crate) struct Dbs {
    pub meta: Db,
    /// The main database itself, rows as stored (tagged keys, checksummed values).
    pub main: Db,
    pub journal: Keyspace,
    pub invocations: Keyspace,
    pub data: Keyspace,
    pub queue: Keyspace,
    /// Queue index: invocation id → queue sequence number (u64 BE).
    pub queued: Keyspace,
    pub leases: Keyspace,
    pub counters: Keyspace,
}

impl Dbs {
    /// The tables over the main database `main`.
    pub fn new(meta: Db, main: Db) -> Dbs {
        let bounds = Arc::new(MapBounds::default());
        let [journal, invocations, data, queue, queued, leases, counters] =
            TABLES.map(|(name, tag)| Keyspace {
                db: main,
                tag,
                name,
                bounds: Arc::clone(&bounds),
            });
        Dbs {
            meta,
            main,
            journal,
            invocations,
            data,
            queue,
            queued,
            leases,
            counters,
        }
    }

    pub fn table(&self, table: Table) -> &Keyspace {
        match table {
            Table::Invocations => &self.invocations,
            Table::Data => &self.data,
        }
    }
}
