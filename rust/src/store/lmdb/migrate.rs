//! Migration of older stores, run inside the write transaction that opens them; the
//! transaction commits all of it or nothing.
//!
//! - Format 1: each table moves from its named database into the main database under its
//!   tag, and the named database is removed.
//! - Formats 1 to 3: every row's value gets its checksum appended, and every journal its end
//!   record (format 4).

use std::ops::Bound;

use heed::types::Bytes;
use heed::{Database, DatabaseOpener, RwTxn, WithoutTls};

use super::keys;
use super::tables::{row_check, tag_key, CHECK_LEN, TABLES};
use crate::entry::decode_segment;

/// Rows copied per read of a format-1 database: the migration holds at most this many in
/// memory, whatever the store's size.
const CHUNK: usize = 4096;

/// Move every row of version 1's named databases into the main database `main`.
pub(crate) fn from_named_databases<'e>(
    opener: &DatabaseOpener<'e, WithoutTls>,
    wtxn: &mut RwTxn<'e>,
    main: Database<'e, Bytes, Bytes>,
) -> heed::Result<()> {
    for (name, tag) in TABLES {
        let Some(old) = opener.open_database::<Bytes, Bytes>(wtxn, Some(name))? else {
            continue;
        };
        let mut after: Option<Vec<u8>> = None;
        let mut key = Vec::new();
        loop {
            // A cursor cannot stay open across the writes (they borrow the transaction
            // mutably), so read a chunk, write it, and go on after its last key.
            let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let chunk: Vec<(Vec<u8>, Vec<u8>)> = old
                .range(wtxn, &(start, Bound::Unbounded))?
                .take(CHUNK)
                .map(|row| row.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<heed::Result<_>>()?;
            let Some((last, _)) = chunk.last() else {
                break;
            };
            after = Some(last.clone());
            for (k, v) in &chunk {
                tag_key(tag, k, &mut key);
                main.put(wtxn, &key, v)?;
            }
        }
        remove(old, wtxn)?;
    }
    Ok(())
}

/// Append to every row of every table the checksum over its key and value, and give every
/// journal its end record (format 4).
pub(crate) fn add_row_checksums(
    wtxn: &mut RwTxn,
    main: Database<'_, Bytes, Bytes>,
) -> heed::Result<()> {
    for (_, tag) in TABLES {
        let end = [tag + 1];
        let mut start = vec![tag];
        let mut inclusive = true;
        loop {
            let lower = if inclusive {
                Bound::Included(start.as_slice())
            } else {
                Bound::Excluded(start.as_slice())
            };
            let range = (lower, Bound::Excluded(&end[..]));
            let chunk: Vec<(Vec<u8>, Vec<u8>)> = main
                .range(wtxn, &range)?
                .take(CHUNK)
                .map(|row| row.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<heed::Result<_>>()?;
            let Some((last, _)) = chunk.last() else {
                break;
            };
            let last = last.clone();
            for (k, mut v) in chunk {
                let check = row_check(&k, &v);
                v.extend_from_slice(&check.to_le_bytes());
                main.put(wtxn, &k, &v)?;
            }
            start = last;
            inclusive = false;
        }
    }
    add_journal_ends(wtxn, main)
}

/// Write each journal's end record: the position after its last decodable segment. A journal
/// with a segment that does not decode gets none, so reading it reports the damage.
fn add_journal_ends(wtxn: &mut RwTxn, main: Database<'_, Bytes, Bytes>) -> heed::Result<()> {
    let tag = TABLES[0].1;
    let (start, end) = ([tag], [tag + 1]);
    let mut after: Option<Vec<u8>> = None;
    // The journal being walked: (id, end so far, every segment decoded).
    let mut current: Option<([u8; 16], u64, bool)> = None;
    let finish = |current: Option<([u8; 16], u64, bool)>, ends: &mut Vec<([u8; 16], u64)>| {
        if let Some((id, next, true)) = current {
            ends.push((id, next));
        }
    };
    loop {
        let lower = after
            .as_deref()
            .map_or(Bound::Included(&start[..]), Bound::Excluded);
        let chunk: Vec<(Vec<u8>, Vec<u8>)> = main
            .range(wtxn, &(lower, Bound::Excluded(&end[..])))?
            .take(CHUNK)
            .map(|row| row.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<heed::Result<_>>()?;
        let last = chunk.last().map(|(k, _)| k.clone());
        let mut ends = Vec::new();
        for (key, stored) in &chunk {
            let (Some(first), Ok(id)) = (
                keys::journal_key_position(&key[1..]),
                <[u8; 16]>::try_from(key.get(1..17).unwrap_or_default()),
            ) else {
                continue;
            };
            if first == keys::JOURNAL_END {
                continue;
            }
            if current.is_some_and(|(c, _, _)| c != id) {
                finish(current.take(), &mut ends);
            }
            let value = &stored[..stored.len().saturating_sub(CHECK_LEN)];
            let (_, next, ok) = current.get_or_insert((id, 0, true));
            match decode_segment(value, first) {
                Ok(entries) if *ok && first == *next => *next = first + entries.len() as u64,
                _ => *ok = false,
            }
        }
        if last.is_none() {
            finish(current.take(), &mut ends);
        }
        for (id, next) in ends {
            let key = [&[tag][..], &keys::journal_key(&id, keys::JOURNAL_END)].concat();
            let mut value = next.to_be_bytes().to_vec();
            value.extend_from_slice(&row_check(&key, &value).to_le_bytes());
            main.put(wtxn, &key, &value)?;
        }
        match last {
            Some(last) => after = Some(last),
            None => return Ok(()),
        }
    }
}

fn remove(db: Database<'_, Bytes, Bytes>, wtxn: &mut RwTxn) -> heed::Result<()> {
    // SAFETY: heed requires that no other handle of the database exists and that no live
    // transaction has modified it.
    // - This handle was opened just above by this transaction's opener, and the store never
    //   opens these named databases anywhere else in this build.
    // - This transaction only read the database; no other write transaction can be live
    //   (LMDB's writer lock is held by this one).
    // - Processes of a version-1 build must not have the store open while it is migrated
    //   (`docs/operations.md`); their handles would see the database gone and fail.
    unsafe { db.remove(wtxn) }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use heed::types::Bytes;
    use heed::{CommitOrAbort, EnvOpenOptions};

    use super::keys::{self, COUNTER_LEASE_TOKEN, COUNTER_QUEUE_SEQ, META_FORMAT_VERSION};
    use super::CHUNK;
    use crate::entry::{encode_segment, Entry, Op};
    use crate::store::lmdb::{LmdbStore, StoreOptions, FORMAT_VERSION};
    use crate::store::{Lease, Table};

    const INV: [u8; 16] = [1; 16];

    fn record_id(n: u64) -> [u8; 16] {
        let mut id = [0xEE; 16];
        id[8..].copy_from_slice(&n.to_be_bytes());
        id
    }
    const QUEUED: [u8; 16] = [2; 16];
    const WORKFLOW: [u8; 16] = [3; 16];

    fn raw_env(dir: &Path) -> heed::Env {
        // SAFETY: the test's own directory, opened by nothing else while this handle lives.
        unsafe { EnvOpenOptions::new().max_dbs(9).open(dir) }.unwrap()
    }

    /// A store in format version 1: every table in a named database of its own.
    fn write_version_1(dir: &Path, lease: &Lease, entries: &[Entry]) {
        let env = raw_env(dir);
        let rows: [(&str, Vec<u8>, Vec<u8>); 9] = [
            (
                "meta",
                META_FORMAT_VERSION.to_vec(),
                1u32.to_be_bytes().to_vec(),
            ),
            (
                "journal",
                keys::journal_key(&INV, 0).to_vec(),
                encode_segment(entries),
            ),
            ("invocations", INV.to_vec(), b"record".to_vec()),
            ("data", [&WORKFLOW[..], b"total"].concat(), b"42".to_vec()),
            ("queue", keys::queue_key(1, &QUEUED).to_vec(), Vec::new()),
            ("queued", QUEUED.to_vec(), 1u64.to_be_bytes().to_vec()),
            ("leases", INV.to_vec(), keys::encode_lease(lease)),
            (
                "counters",
                COUNTER_LEASE_TOKEN.to_vec(),
                7u64.to_be_bytes().to_vec(),
            ),
            (
                "counters",
                COUNTER_QUEUE_SEQ.to_vec(),
                1u64.to_be_bytes().to_vec(),
            ),
        ];
        let txn = env.write_txn().unwrap();
        env.create_databases_and_commit(txn, |opener, txn| {
            for (name, key, value) in rows {
                let db = opener.create_database::<Bytes, Bytes>(txn, Some(name))?;
                db.put(txn, &key, &value)?;
            }
            // More records than one chunk of the migration holds, twice over.
            let invocations = opener.create_database::<Bytes, Bytes>(txn, Some("invocations"))?;
            for n in 0..2 * CHUNK as u64 + 1 {
                invocations.put(txn, &record_id(n), &n.to_be_bytes())?;
            }
            Ok::<_, heed::Error>(CommitOrAbort::<(), ()>::Commit(()))
        })
        .unwrap();
        env.prepare_for_closing().wait();
    }

    #[test]
    fn a_version_1_store_is_migrated_in_place_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let lease = Lease {
            owner: b"worker-1".to_vec(),
            expires_ms: 1_000,
            token: 7,
        };
        let entries = vec![Entry::new(Op::Random(9)), Entry::new(Op::Random(10))];
        write_version_1(dir.path(), &lease, &entries);

        let store = LmdbStore::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.format_version().unwrap(), FORMAT_VERSION);
        assert_eq!(store.take_migration().map(|m| m.from), Some(1));
        assert_eq!(store.take_migration(), None, "reported once");
        assert_eq!(store.journal(&INV).unwrap(), entries);
        let record = store.get(Table::Invocations, &INV).unwrap();
        assert_eq!(record.as_deref(), Some(&b"record"[..]));
        let records = store.scan(Table::Invocations, &[0xEE]).unwrap();
        assert_eq!(records.len(), 2 * CHUNK + 1);
        for (n, (key, value)) in records.iter().enumerate() {
            assert_eq!(
                (key.as_slice(), value.as_slice()),
                (&record_id(n as u64)[..], &(n as u64).to_be_bytes()[..])
            );
        }
        let data = store.scan(Table::Data, &WORKFLOW).unwrap();
        assert_eq!(
            data,
            vec![([&WORKFLOW[..], b"total"].concat(), b"42".to_vec())]
        );
        assert_eq!(store.queued().unwrap(), vec![QUEUED]);
        assert_eq!(store.lease(&INV).unwrap(), Some(lease));
        // The counters carried over: the next claim takes the next token after 7.
        let claim = store.claim(b"worker-2", 1_000, 0).unwrap().unwrap();
        assert_eq!((claim.invocation, claim.token), (QUEUED, 8));
        drop(store);

        // The named databases of version 1 are gone; only `meta` is left.
        let env = raw_env(dir.path());
        let mut names: Vec<Vec<u8>> = Vec::new();
        let txn = env.read_txn().unwrap();
        env.open_databases_and_commit(txn, |opener, txn| {
            let main = opener.open_database::<Bytes, Bytes>(txn, None)?.unwrap();
            for row in main.iter(txn)? {
                names.extend(Some(row?.0.to_vec()).filter(|key| key[0].is_ascii_alphabetic()));
            }
            Ok::<_, heed::Error>(CommitOrAbort::<(), ()>::Commit(()))
        })
        .unwrap();
        assert_eq!(names, vec![b"meta".to_vec()]);
    }
}
