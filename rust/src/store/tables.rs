//! The store's tables. Each is the range of LMDB's main database whose keys start with its
//! one-byte tag (format version 2, `docs/journal-format.md` §2): a commit then changes one
//! B-tree, whose root the meta page holds, instead of a tree per table plus the main tree's
//! page holding their roots (about one page fewer per durable step).

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};

use super::Table;

/// A database of the environment, keys and values as raw bytes.
pub(crate) type Db = Database<'static, Bytes, Bytes>;

/// Longest key a caller may give a table: LMDB's 511 less the tag byte.
pub const MAX_KEY_LEN: usize = 510;

/// One table: the rows of the main database under one tag. Keys given to and returned by
/// its methods are the table's own, without the tag.
#[derive(Clone, Copy)]
pub(crate) struct Keyspace {
    db: Db,
    tag: u8,
}

/// Rows of a table, keys without the tag.
pub(crate) type Rows<'txn> =
    Box<dyn Iterator<Item = heed::Result<(&'txn [u8], &'txn [u8])>> + 'txn>;

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

    pub fn get<'txn>(&self, txn: &'txn RoTxn, key: &[u8]) -> heed::Result<Option<&'txn [u8]>> {
        self.tagged(key, |k| self.db.get(txn, k))
    }

    pub fn put(&self, txn: &mut RwTxn, key: &[u8], value: &[u8]) -> heed::Result<()> {
        self.tagged(key, |k| self.db.put(txn, k, value))
    }

    /// Delete a row; whether it existed.
    pub fn delete(&self, txn: &mut RwTxn, key: &[u8]) -> heed::Result<bool> {
        self.tagged(key, |k| self.db.delete(txn, k))
    }

    /// Rows whose key starts with `prefix` (every row for an empty prefix), in key order.
    pub fn prefix_iter<'txn>(&self, txn: &'txn RoTxn, prefix: &[u8]) -> heed::Result<Rows<'txn>> {
        let rows = self.tagged(prefix, |p| self.db.prefix_iter(txn, p))?;
        Ok(Box::new(rows.map(|row| row.map(|(k, v)| (&k[1..], v)))))
    }

    /// Every row, in key order.
    pub fn iter<'txn>(&self, txn: &'txn RoTxn) -> heed::Result<Rows<'txn>> {
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

/// The tables of one environment, and the named database `meta`.
pub(crate) struct Dbs {
    pub meta: Db,
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
        let [journal, invocations, data, queue, queued, leases, counters] =
            TABLES.map(|(_, tag)| Keyspace { db: main, tag });
        Dbs {
            meta,
            journal,
            invocations,
            data,
            queue,
            queued,
            leases,
            counters,
        }
    }

    pub fn table(&self, table: Table) -> Keyspace {
        match table {
            Table::Invocations => self.invocations,
            Table::Data => self.data,
        }
    }
}
