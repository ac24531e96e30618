//! Damaged rows: every read checks the checksum over key and value and names what is damaged.

use std::sync::Arc;

use super::tables::{row_check, CHECK_LEN};
use super::verify::{verify_file, verify_table};
use super::*;
use crate::entry::{Entry, Op};
use crate::error::Error;

fn open(dir: &tempfile::TempDir) -> Arc<LmdbStore> {
    let options = StoreOptions {
        sync: false,
        map_size: 1 << 20,
        ..StoreOptions::default()
    };
    LmdbStore::open(dir.path(), options).unwrap()
}

const WF: [u8; 16] = [3; 16];
const INV: [u8; 16] = [1; 16];
const OTHER: [u8; 16] = [2; 16];

fn data_key(name: &str) -> Vec<u8> {
    [&WF[..], name.as_bytes()].concat()
}

/// A stored row as the disk holds it (tagged key, value with its checksum).
fn raw(store: &LmdbStore, tagged: &[u8]) -> Vec<u8> {
    store
        .read("test", |h, txn| {
            Ok(h.dbs.main.get(txn, tagged)?.map(<[u8]>::to_vec))
        })
        .unwrap()
        .expect("row present")
}

/// Overwrite rows as stored bytes: what damage on disk leaves behind.
fn set_raw(store: &LmdbStore, rows: &[(&[u8], Option<&[u8]>)]) {
    store
        .write("test", |h, txn| {
            for (key, value) in rows {
                match value {
                    Some(v) => h.dbs.main.put(txn, key, v)?,
                    None => {
                        h.dbs.main.delete(txn, key)?;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

fn expect_corrupt<T: std::fmt::Debug>(
    result: std::result::Result<T, Error>,
    table: &str,
    key_part: &str,
) {
    match result {
        Err(Error::StoreCorrupt {
            table: t,
            key,
            path,
            detail,
        }) => {
            assert_eq!(t, table);
            assert!(key.contains(key_part), "{key} names {key_part}");
            assert!(path.is_absolute());
            assert!(!detail.is_empty());
        }
        other => panic!("expected StoreCorrupt in {table}, got {other:?}"),
    }
}

#[test]
fn a_row_ends_with_a_crc32c_over_key_length_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.stage(WriteOp::Put {
        table: Table::Data,
        key: data_key("total"),
        value: b"42".to_vec(),
        fence: None,
    });
    store.flush().unwrap();
    let tagged = [&[0x03][..], &data_key("total")].concat();
    let stored = raw(&store, &tagged);
    assert_eq!(stored.len(), 2 + CHECK_LEN);
    let mut material = (tagged.len() as u16).to_le_bytes().to_vec();
    material.extend_from_slice(&tagged);
    material.extend_from_slice(b"42");
    assert_eq!(stored[2..], crc32c::crc32c(&material).to_le_bytes());
    assert_eq!(row_check(&tagged, b"42"), crc32c::crc32c(&material));
}

#[test]
fn every_flipped_bit_of_a_value_is_reported_naming_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.stage(WriteOp::Put {
        table: Table::Data,
        key: data_key("name"),
        value: b"alice".to_vec(),
        fence: None,
    });
    store.flush().unwrap();
    let tagged = [&[0x03][..], &data_key("name")].concat();
    let good = raw(&store, &tagged);
    for byte in 0..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[byte] ^= 1 << bit;
            set_raw(&store, &[(&tagged, Some(&bad))]);
            expect_corrupt(
                store.get(Table::Data, &data_key("name")),
                "data",
                "\"name\"",
            );
            expect_corrupt(
                store.scan(Table::Data, &WF),
                "data",
                &crate::ids::format(&WF),
            );
        }
    }
    for short in [&b""[..], b"abc"] {
        set_raw(&store, &[(&tagged, Some(short))]);
        expect_corrupt(store.get(Table::Data, &data_key("name")), "data", "name");
    }
    set_raw(&store, &[(&tagged, Some(&good))]);
    assert_eq!(
        store.get(Table::Data, &data_key("name")).unwrap(),
        Some(b"alice".to_vec())
    );
}

#[test]
fn a_row_moved_to_another_key_is_reported_not_read_as_that_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.stage(WriteOp::Put {
        table: Table::Invocations,
        key: INV.to_vec(),
        value: b"record".to_vec(),
        fence: None,
    });
    store.flush().unwrap();
    let from = [&[0x02][..], &INV].concat();
    let to = [&[0x02][..], &OTHER].concat();
    let stored = raw(&store, &from);
    set_raw(&store, &[(&from, None), (&to, Some(&stored))]);
    let other = crate::ids::format(&OTHER);
    expect_corrupt(store.get(Table::Invocations, &OTHER), "invocations", &other);
    expect_corrupt(store.scan(Table::Invocations, b""), "invocations", &other);
}

#[test]
fn a_journal_segment_under_another_invocation_is_reported() {
    // Every entry of the segment keeps a valid CRC of its own: only the row's checksum, which
    // covers the key, tells that the segment is not this invocation's.
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.stage(WriteOp::Journal {
        invocation: INV,
        first_position: 0,
        entries: vec![Entry::new(Op::Random(7))],
        fence: None,
    });
    store.flush().unwrap();
    let from = [&[0x01][..], &keys::journal_key(&INV, 0)].concat();
    let to = [&[0x01][..], &keys::journal_key(&OTHER, 0)].concat();
    let stored = raw(&store, &from);
    set_raw(&store, &[(&to, Some(&stored))]);
    expect_corrupt(store.journal(&OTHER), "journal", "position 0");
    // The damaged row sits right after the rows of INV's journal, where a row of INV's with
    // a damaged key would: reading INV's journal reports it too.
    expect_corrupt(store.journal(&INV), "journal", &crate::ids::format(&INV));
    set_raw(&store, &[(&to, None)]);
    assert_eq!(store.journal(&INV).unwrap().len(), 1);
}

#[test]
fn a_damaged_lease_or_queue_row_fails_the_claim_instead_of_being_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.stage(WriteOp::Enqueue {
        invocation: INV,
        fence: None,
    });
    store.flush().unwrap();
    let claim = store.claim(b"w", 1_000, 0).unwrap().unwrap();
    store.release(&INV, claim.token).unwrap();
    let lease = [&[0x06][..], &INV].concat();
    let mut bad = raw(&store, &lease);
    bad[0] ^= 0x40;
    set_raw(&store, &[(&lease, Some(&bad))]);
    expect_corrupt(
        store.claim(b"w", 1_000, 0),
        "leases",
        &crate::ids::format(&INV),
    );
    expect_corrupt(store.lease(&INV), "leases", "invocation");
    bad[0] ^= 0x40;
    set_raw(&store, &[(&lease, Some(&bad))]);
    let counter = [&[0x07][..], keys::COUNTER_QUEUE_SEQ].concat();
    let mut bad = raw(&store, &counter);
    bad[7] ^= 1;
    set_raw(&store, &[(&counter, Some(&bad))]);
    store.stage(WriteOp::Enqueue {
        invocation: OTHER,
        fence: None,
    });
    expect_corrupt(store.flush(), "counters", "queue_seq");
}

/// A store with a deep tree, values on overflow pages, journals and a freed part (so the
/// free list has records), closed.
fn populated(dir: &tempfile::TempDir) {
    let store = open(dir);
    for n in 0..400u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        store.stage(WriteOp::Put {
            table: Table::Invocations,
            key: id.to_vec(),
            value: vec![n as u8; if n % 50 == 0 { 9000 } else { 40 }],
            fence: None,
        });
        store.stage(WriteOp::Journal {
            invocation: id,
            first_position: 0,
            entries: (0..5).map(|i| Entry::new(Op::Random(i))).collect(),
            fence: None,
        });
        if n % 7 == 0 {
            store.stage(WriteOp::Enqueue {
                invocation: id,
                fence: None,
            });
        }
        if n % 40 == 0 {
            store.flush().unwrap();
        }
    }
    store.flush().unwrap();
    for n in (0..400u32).step_by(3) {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        store.stage(WriteOp::Delete {
            table: Table::Invocations,
            key: id.to_vec(),
            fence: None,
        });
    }
    store.flush().unwrap();
}

#[test]
fn an_intact_store_verifies_clean_through_both_walks() {
    let dir = tempfile::tempdir().unwrap();
    populated(&dir);
    let (findings, rows) = verify_file(dir.path());
    assert_eq!(findings, vec![]);
    assert!(rows > 700, "{rows} rows walked");
    for (table, _) in super::tables::TABLES {
        // The store closes once its background flusher lets go of it.
        let mut result = verify_table(dir.path(), table);
        for _ in 0..100 {
            if result.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            result = verify_table(dir.path(), table);
        }
        assert_eq!(result.unwrap(), vec![], "{table}");
    }
}

#[test]
fn the_page_walk_reports_a_damaged_page_without_following_it() {
    let dir = tempfile::tempdir().unwrap();
    populated(&dir);
    let data = dir.path().join("data.mdb");
    let pristine = std::fs::read(&data).unwrap();
    let psize = 4096;
    let pages = pristine.len() / psize;
    let (_, owners) = super::pages::walk_owners(&data, &mut |_, _, _| {});
    let mut found = 0;
    let mut damaged = 0;
    let mut missed = Vec::new();
    // Zero each used page in turn, and flip bytes of its header and first node offsets.
    for page in 2..pages {
        if owners
            .get(&(page as u64))
            .map_or(true, |o| *o == "free list")
        {
            continue; // a free page: LMDB reads nothing of it
        }
        for (at, len) in [(0usize, psize), (10, 1), (12, 2), (16, 2)] {
            let mut bytes = pristine.clone();
            let start = page * psize + at;
            if bytes[start..start + len].iter().all(|b| *b == 0) {
                continue; // an unused page: nothing to damage
            }
            for b in &mut bytes[start..start + len] {
                *b = if len == psize { 0 } else { *b ^ 0x5a };
            }
            std::fs::write(&data, &bytes).unwrap();
            damaged += 1;
            let (findings, _) = verify_file(dir.path());
            found += usize::from(!findings.is_empty());
            if findings.is_empty() {
                missed.push((page, at, owners[&(page as u64)]));
            }
        }
    }
    std::fs::write(&data, &pristine).unwrap();
    assert!(damaged > 20, "{damaged} damages");
    // A zeroed or re-flagged page that LMDB no longer uses (freed) is harmless and may pass.
    assert_eq!(found, damaged, "missed {missed:?}");
}

#[test]
fn a_journal_that_lost_a_segment_or_its_end_record_is_reported_not_shortened() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for first in 0..3u64 {
        store.stage(WriteOp::Journal {
            invocation: INV,
            first_position: first,
            entries: vec![Entry::new(Op::Random(first))],
            fence: None,
        });
        store.flush().unwrap();
    }
    assert_eq!(store.journal(&INV).unwrap().len(), 3);
    let segment = |first: u64| [&[0x01][..], &keys::journal_key(&INV, first)].concat();
    let end = segment(keys::JOURNAL_END);
    let expect = |result: std::result::Result<Vec<Entry>, Error>, what: &str| match result {
        Err(Error::CorruptEntry { detail, .. }) => assert!(detail.contains(what), "{detail}"),
        other => panic!("expected CorruptEntry ({what}), got {other:?}"),
    };
    for (lost, what) in [
        (segment(2), "only 2 are stored"),
        (segment(1), "positions 1..2"),
    ] {
        let kept = raw(&store, &lost);
        set_raw(&store, &[(&lost, None)]);
        expect(store.journal(&INV), what);
        assert!(!verify_file(dir.path()).0.is_empty());
        set_raw(&store, &[(&lost, Some(&kept))]);
    }
    let kept = raw(&store, &end);
    set_raw(&store, &[(&end, None)]);
    expect(store.journal(&INV), "end record is missing");
    set_raw(&store, &[(&end, Some(&kept))]);
    assert_eq!(store.journal(&INV).unwrap().len(), 3);
}
