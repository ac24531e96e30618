//! Unit tests of the store (each on its own temporary directory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::entry::{Entry, Op};
use crate::error::Error;

fn options() -> StoreOptions {
    StoreOptions {
        sync: false,
        map_size: 1 << 20,
        max_readers: 64,
        ..StoreOptions::default()
    }
}

fn open(dir: &tempfile::TempDir) -> Arc<LmdbStore> {
    LmdbStore::open(dir.path(), options()).unwrap()
}

fn inv(n: u8) -> [u8; 16] {
    [n; 16]
}

fn journal(invocation: [u8; 16], first_position: u64, ops: Vec<Op>) -> WriteOp {
    WriteOp::Journal {
        invocation,
        first_position,
        entries: ops.into_iter().map(Entry::new).collect(),
        fence: None,
    }
}

/// The operations of `invocation`'s journal, staged and committed, in position order.
fn journal_ops(store: &LmdbStore, invocation: [u8; 16]) -> Vec<Op> {
    let entries = store.journal(&invocation).unwrap();
    entries.into_iter().map(|e| e.op).collect()
}

fn put(key: &[u8], value: &[u8]) -> WriteOp {
    WriteOp::Put {
        table: Table::Data,
        key: key.to_vec(),
        value: value.to_vec(),
        fence: None,
    }
}

#[test]
fn staged_writes_are_visible_before_flush_and_latest_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.stage(put(b"k", b"1"));
    store.stage(put(b"k", b"2"));
    assert_eq!(store.get(Table::Data, b"k").unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.get(Table::Invocations, b"k").unwrap(), None);
    store.flush().unwrap();
    store.stage(WriteOp::Delete {
        table: Table::Data,
        key: b"k".to_vec(),
        fence: None,
    });
    store.stage(put(b"k2", b"x"));
    assert_eq!(store.get(Table::Data, b"k").unwrap(), None);
    assert_eq!(
        store.scan(Table::Data, b"k").unwrap(),
        vec![(b"k2".to_vec(), b"x".to_vec())]
    );
    store.flush().unwrap();
    assert_eq!(store.get(Table::Data, b"k").unwrap(), None);
    assert_eq!(store.scan(Table::Data, b"").unwrap().len(), 1);
}

#[test]
fn journal_round_trips_committed_and_staged_in_position_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.stage(journal(inv(1), 0, vec![Op::Random(1), Op::Time(2)]));
    store.stage(journal(inv(2), 0, vec![Op::Random(9)]));
    store.flush().unwrap();
    store.stage(journal(inv(1), 2, vec![Op::Uuid([3; 16])]));
    assert_eq!(
        journal_ops(&store, inv(1)),
        vec![Op::Random(1), Op::Time(2), Op::Uuid([3; 16])]
    );
    assert_eq!(store.journal_len(&inv(2)).unwrap(), 1);
    assert_eq!(store.journal_len(&inv(3)).unwrap(), 0);
}

#[test]
fn long_runs_are_split_into_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let n = crate::store::SEGMENT_MAX_ENTRIES * 2 + 5;
    store.stage(journal(inv(1), 0, (0..n as u64).map(Op::Random).collect()));
    store.flush().unwrap();
    let segments = store
        .read("test", |h, txn| {
            Ok(h.dbs.journal.prefix_iter(txn, &inv(1))?.count())
        })
        .unwrap();
    assert_eq!(segments, 3 + 1, "three segments and the end record");
    let entries = store.journal(&inv(1)).unwrap();
    assert_eq!(entries.len(), n);
    assert_eq!(entries[n - 1].op, Op::Random(n as u64 - 1));
}

#[test]
fn corrupt_journal_byte_names_invocation_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.stage(journal(
        inv(7),
        0,
        vec![Op::Random(1), Op::Random(2), Op::Random(3)],
    ));
    store.flush().unwrap();
    store
        .write("test", |h, txn| {
            let key = keys::journal_key(&inv(7), 0);
            let mut value = h.dbs.journal.get(txn, &key)?.unwrap().to_vec();
            let second_entry_payload = 1 + 15 + 4;
            value[second_entry_payload] ^= 0x40;
            h.dbs.journal.put(txn, &key, &value)?;
            Ok(())
        })
        .unwrap();
    match store.journal(&inv(7)) {
        Err(Error::CorruptEntry {
            invocation_id,
            position,
            path,
            ..
        }) => {
            assert_eq!(invocation_id, crate::ids::format(&inv(7)));
            assert_eq!(position, 1);
            assert_eq!(path, store.path());
        }
        other => panic!("expected CorruptEntry, got {other:?}"),
    }
}

fn fence(invocation: [u8; 16], token: u64) -> Option<Fence> {
    Some(Fence { invocation, token })
}

fn put_fenced(key: &[u8], fence: Option<Fence>) -> WriteOp {
    WriteOp::Put {
        table: Table::Data,
        key: key.to_vec(),
        value: b"late".to_vec(),
        fence,
    }
}

/// A store whose queue holds `inv(n)`.
fn queued_store(dir: &tempfile::TempDir, n: u8) -> Arc<LmdbStore> {
    let store = open(dir);
    store.stage(WriteOp::Enqueue {
        invocation: inv(n),
        fence: None,
    });
    store.flush().unwrap();
    store
}

#[test]
fn a_lease_released_for_a_dead_holder_is_taken_over_and_fences_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = queued_store(&dir, 1);
    let dead = store.claim(b"dead", 60_000, 0).unwrap().unwrap();
    store.release_dead(&inv(1), dead.token).unwrap();
    let tombstone = store.lease(&inv(1)).unwrap().unwrap();
    assert_eq!(
        (tombstone.owner.as_slice(), tombstone.expires_ms),
        (&b"dead"[..], 0)
    );
    assert!(
        tombstone.token > dead.token,
        "the dead holder's token is fenced off"
    );
    let next = store.claim(b"next", 60_000, 1).unwrap().unwrap();
    assert!(next.taken_over && next.invocation == inv(1));
    // Deferred: unclaimable until then, and then not a takeover.
    store.defer(&inv(1), next.token, 500).unwrap();
    assert_eq!(store.claim(b"early", 60_000, 499).unwrap(), None);
    let later = store.claim(b"later", 60_000, 500).unwrap().unwrap();
    assert!(!later.taken_over);
}

#[test]
fn stale_fenced_writes_are_rejected_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = queued_store(&dir, 1);
    let first = store.claim(b"a", 100, 1000).unwrap().unwrap();
    let second = store.claim(b"b", 100, 1100).unwrap().unwrap(); // a's lease expired
    assert!(second.token > first.token);
    store.stage(WriteOp::Put {
        table: Table::Data,
        key: b"stale".to_vec(),
        value: b"x".to_vec(),
        fence: fence(inv(1), first.token),
    });
    store.stage(WriteOp::Journal {
        invocation: inv(1),
        first_position: 0,
        entries: vec![Entry::new(Op::Random(1))],
        fence: fence(inv(1), first.token),
    });
    store.stage(WriteOp::Put {
        table: Table::Data,
        key: b"fresh".to_vec(),
        value: b"y".to_vec(),
        fence: fence(inv(1), second.token),
    });
    // No lease at all: fenced writes pass.
    store.stage(WriteOp::Put {
        table: Table::Data,
        key: b"free".to_vec(),
        value: b"z".to_vec(),
        fence: fence(inv(2), 42),
    });
    let report = store.flush().unwrap();
    assert_eq!(
        report.rejected,
        vec![(fence(inv(1), first.token).unwrap(), second.token)]
    );
    assert_eq!(store.get(Table::Data, b"stale").unwrap(), None);
    assert_eq!(store.journal_len(&inv(1)).unwrap(), 0);
    assert_eq!(
        store.get(Table::Data, b"fresh").unwrap(),
        Some(b"y".to_vec())
    );
    assert_eq!(
        store.get(Table::Data, b"free").unwrap(),
        Some(b"z".to_vec())
    );
    // The rejection outlives the flush that saw it: a writer whose writes another thread's
    // flush committed asks the store, not its own (empty) report.
    assert!(store.flush().unwrap().rejected.is_empty());
    let stale = fence(inv(1), first.token).unwrap();
    assert_eq!(store.stale_fence(stale), Some(second.token));
    assert_eq!(
        store.stale_fence(fence(inv(1), second.token).unwrap()),
        None
    );
    assert_eq!(store.stale_fence(fence(inv(2), 42).unwrap()), None);
}

#[test]
fn claims_follow_queue_order_and_leases_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for n in [3, 1, 2, 1] {
        store.stage(WriteOp::Enqueue {
            invocation: inv(n),
            fence: None,
        });
    }
    store.flush().unwrap();
    assert_eq!(store.queued().unwrap(), vec![inv(3), inv(1), inv(2)]);
    let a = store.claim(b"w1", 1000, 0).unwrap().unwrap();
    let b = store.claim(b"w1", 1000, 0).unwrap().unwrap();
    let c = store.claim(b"w2", 1000, 0).unwrap().unwrap();
    assert_eq!(
        [a.invocation, b.invocation, c.invocation],
        [inv(3), inv(1), inv(2)]
    );
    assert_eq!((a.token, b.token, c.token), (1, 2, 3));
    assert_eq!(store.claim(b"w3", 1000, 999).unwrap(), None);

    store.renew(&inv(3), a.token, 1000, 500).unwrap();
    assert_eq!(store.lease(&inv(3)).unwrap().unwrap().expires_ms, 1500);
    assert!(matches!(
        store.renew(&inv(3), 99, 1000, 500),
        Err(Error::StaleLease { current: 1, .. })
    ));
    store.release(&inv(1), b.token).unwrap();
    let released = store.lease(&inv(1)).unwrap().unwrap();
    assert_eq!(
        (released.owner.len(), released.expires_ms, released.token),
        (0, 0, 4)
    );
    assert!(matches!(
        store.release(&inv(1), b.token),
        Err(Error::StaleLease { current: 4, .. })
    ));
    // A write still carrying the released token is fenced off.
    store.stage(put_fenced(b"after-release", fence(inv(1), b.token)));
    assert_eq!(store.flush().unwrap().rejected.len(), 1);
    // Released: claimable again. Then at 1000 inv(2) expired but inv(3) (renewed) did not.
    let again = store.claim(b"w4", 1000, 600).unwrap().unwrap();
    assert_eq!(again.invocation, inv(1));
    assert!(
        !a.taken_over && !again.taken_over,
        "a fresh or released invocation"
    );
    let expired = store.claim(b"w5", 10, 1000).unwrap().unwrap();
    assert_eq!((expired.invocation, expired.token), (inv(2), 6));
    assert!(expired.taken_over, "w2 never gave inv(2) back");
    assert_eq!(store.lease(&inv(2)).unwrap().unwrap().owner, b"w5".to_vec());
    assert_eq!(store.leases().unwrap().len(), 3);

    store.stage(WriteOp::Complete {
        invocation: inv(3),
        fence: fence(inv(3), a.token),
        notice: true,
    });
    store.flush().unwrap();
    assert_eq!(store.queued().unwrap(), vec![inv(1), inv(2)]);
    // Completed: the lease is an ownerless tombstone that still fences old tokens.
    let tomb = store.lease(&inv(3)).unwrap().unwrap();
    assert_eq!((tomb.owner.len(), tomb.token), (0, a.token));
    assert_eq!(store.leases().unwrap().len(), 2);
    store.stage(put_fenced(b"zombie", fence(inv(3), a.token - 1)));
    assert_eq!(store.flush().unwrap().rejected.len(), 1);
    // A stale Complete is refused: inv(2) stays queued and leased.
    store.stage(WriteOp::Complete {
        invocation: inv(2),
        fence: fence(inv(2), c.token),
        notice: true,
    });
    assert_eq!(store.flush().unwrap().rejected.len(), 1);
    assert_eq!(store.queued().unwrap(), vec![inv(1), inv(2)]);
}

#[test]
fn the_map_grows_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let value = vec![0xab; 64 * 1024];
    for batch in 0..20u32 {
        for i in 0..16u32 {
            store.stage(put(
                &[batch.to_be_bytes(), i.to_be_bytes()].concat(),
                &value,
            ));
        }
        store.flush().unwrap();
    }
    assert_eq!(store.scan(Table::Data, b"").unwrap().len(), 320);
    let map = store
        .read("test", |h, _| Ok(h.env.info().map_size))
        .unwrap();
    assert!(map > 20 << 20, "map size {map}");
}

/// Write `version` as the store's format version, as an older or newer build would have.
fn set_format_version(store: &LmdbStore, version: u32) {
    store
        .write("test", |h, txn| {
            h.dbs
                .meta
                .put(txn, keys::META_FORMAT_VERSION, &version.to_be_bytes())?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        assert_eq!(store.format_version().unwrap(), FORMAT_VERSION);
        set_format_version(&store, 7);
    }
    match LmdbStore::open(dir.path(), options()) {
        Err(Error::FormatVersion {
            found: 7,
            supported: FORMAT_VERSION,
            path,
        }) => {
            assert_eq!(path, dir.path().canonicalize().unwrap())
        }
        other => panic!("expected FormatVersion, got {:?}", other.err()),
    }
}

#[test]
fn a_format_2_or_3_store_keeps_its_rows_and_gets_row_checksums() {
    for version in [2u32, 3] {
        let dir = tempfile::tempdir().unwrap();
        {
            // Rows as a format-2/3 build wrote them: tagged keys, values without checksums.
            let store = open(&dir);
            store
                .write("test", |h, txn| {
                    h.dbs.main.put(txn, b"\x03wk", b"v")?;
                    h.dbs.main.put(txn, b"\x02inv", b"")?;
                    Ok(())
                })
                .unwrap();
            set_format_version(&store, version);
        }
        let store = open(&dir);
        assert_eq!(store.format_version().unwrap(), FORMAT_VERSION);
        assert_eq!(store.take_migration().map(|m| m.from), Some(version));
        assert_eq!(store.get(Table::Data, b"wk").unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            store.scan(Table::Invocations, b"").unwrap(),
            vec![(b"inv".to_vec(), Vec::new())]
        );
        drop(store);
        let store = open(&dir);
        assert_eq!(store.take_migration(), None, "migrated once");
        assert_eq!(store.get(Table::Data, b"wk").unwrap(), Some(b"v".to_vec()));
    }
}

#[test]
fn a_format_version_no_build_wrote_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    set_format_version(&open(&dir), 0);
    match LmdbStore::open(dir.path(), options()) {
        Err(Error::CorruptStore { detail, .. }) => assert!(detail.contains("says 0"), "{detail}"),
        other => panic!("expected CorruptStore, got {:?}", other.err()),
    }
}

#[test]
fn one_store_per_path_including_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("store");
    let a = LmdbStore::open(&real, options()).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let b = LmdbStore::open(&link, options()).unwrap();
    let c = LmdbStore::open(&dir.path().join("store/../store"), options()).unwrap();
    assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &c));
    drop((a, b, c));
    // Closed with its last user, then reopenable.
    LmdbStore::open(&link, options()).unwrap();
}

#[test]
fn unusable_paths_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        LmdbStore::open(&file, options()),
        Err(Error::StoreAccess { .. })
    ));
    assert!(matches!(
        LmdbStore::open(&file.join("sub"), options()),
        Err(Error::StoreAccess { .. })
    ));
    let garbage = dir.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(garbage.join("data.mdb"), vec![0x5a; 64 * 1024]).unwrap();
    assert!(matches!(
        LmdbStore::open(&garbage, options()),
        Err(Error::CorruptStore { .. })
    ));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("data.mdb"), b"").unwrap();
    assert!(matches!(
        LmdbStore::open(&empty, options()),
        Err(Error::CorruptStore { .. })
    ));
}

/// The bytes of `data.mdb` LMDB's newest meta page says are in use.
fn used_bytes(store: &LmdbStore) -> u64 {
    store
        .read("test", |h, _| {
            let page = h.env.unnamed_database_stat().page_size as u64;
            Ok((h.env.info().last_page_number as u64 + 1) * page)
        })
        .unwrap()
}

#[test]
fn truncated_data_file_is_corrupt_not_a_crash_and_is_left_as_it_was() {
    for sync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions { sync, ..options() };
        let used = {
            let store = LmdbStore::open(dir.path(), options.clone()).unwrap();
            store.stage(put(b"k", &vec![1; 256 * 1024]));
            store.flush().unwrap();
            used_bytes(&store)
        };
        let data = dir.path().join("data.mdb");
        let file = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
        file.set_len(used / 2).unwrap();
        match LmdbStore::open(dir.path(), options) {
            Err(Error::CorruptStore { detail, .. }) => {
                assert!(detail.contains("truncated"), "{detail}")
            }
            other => panic!("sync={sync}: expected CorruptStore, got {:?}", other.err()),
        }
        // Refused before LMDB could extend the file (it does, with WRITE_MAP).
        assert_eq!(std::fs::metadata(&data).unwrap().len(), used / 2);
    }
}

#[test]
fn the_meta_page_claims_what_lmdb_reports() {
    for sync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = LmdbStore::open(dir.path(), StoreOptions { sync, ..options() }).unwrap();
        for i in 0..40u32 {
            store.stage(put(&i.to_be_bytes(), &vec![7; 3000]));
            store.flush().unwrap();
        }
        let claimed = super::env::claimed_len(&dir.path().join("data.mdb")).unwrap();
        assert_eq!(claimed, Some(used_bytes(&store)), "sync={sync}");
    }
}

#[test]
fn stores_with_and_without_sync_share_one_directory() {
    // A store without sync writes through a writable map (WRITE_MAP), one with sync through
    // `pwrite`: processes may open the same store either way and see each other's commits.
    let dir = tempfile::tempdir().unwrap();
    for round in 0..4u32 {
        let store = LmdbStore::open(
            dir.path(),
            StoreOptions {
                sync: round % 2 == 1,
                ..options()
            },
        )
        .unwrap();
        assert_eq!(
            store.scan(Table::Data, b"").unwrap().len(),
            round as usize * 50
        );
        for i in 0..50u32 {
            store.stage(put(
                &[round.to_be_bytes(), i.to_be_bytes()].concat(),
                &[9; 900],
            ));
        }
        store.flush().unwrap();
    }
}

#[test]
fn concurrent_flushes_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = LmdbStore::open(
        dir.path(),
        StoreOptions {
            sync: true,
            ..options()
        },
    )
    .unwrap();
    let threads = 8;
    let per_thread = 50u32;
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = &store;
            s.spawn(move || {
                for i in 0..per_thread {
                    store.stage(journal(
                        inv(t),
                        u64::from(i),
                        vec![Op::Random(u64::from(i))],
                    ));
                    store.stage(put(&[t, i as u8], b"v"));
                    store.flush().unwrap();
                }
            });
        }
    });
    for t in 0..threads {
        assert_eq!(store.journal_len(&inv(t)).unwrap(), per_thread as usize);
    }
    assert_eq!(
        store.scan(Table::Data, b"").unwrap().len(),
        threads as usize * 50
    );
    let flushes = u64::from(threads) * u64::from(per_thread);
    assert!(
        store.commit_count() < flushes,
        "{} commits",
        store.commit_count()
    );
}

#[test]
fn flush_with_nothing_staged_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.flush().unwrap();
    assert_eq!(store.commit_count(), 0);
}

#[test]
fn closing_commits_what_was_staged() {
    let dir = tempfile::tempdir().unwrap();
    open(&dir).stage(put(b"k", b"v"));
    assert_eq!(
        open(&dir).get(Table::Data, b"k").unwrap(),
        Some(b"v".to_vec())
    );
}

#[test]
fn many_staged_writes_read_their_latest_value_and_journal_runs_merge() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..5000u32 {
        store.stage(put(b"k", &i.to_be_bytes()));
    }
    assert_eq!(
        store.get(Table::Data, b"k").unwrap(),
        Some(4999u32.to_be_bytes().to_vec())
    );
    for first in [0u64, 2, 4] {
        store.stage(journal(
            inv(7),
            first,
            vec![Op::Random(first), Op::Random(first + 1)],
        ));
    }
    assert_eq!(store.journal(&inv(7)).unwrap().len(), 6);
    store.flush().unwrap();
    assert_eq!(
        journal_ops(&store, inv(7)),
        (0..6).map(Op::Random).collect::<Vec<_>>()
    );
    assert_eq!(
        store.get(Table::Data, b"k").unwrap(),
        Some(4999u32.to_be_bytes().to_vec())
    );
}

#[test]
fn staging_a_journal_and_a_rewritten_key_commits_the_last_value_with_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..500u32 {
        let mut entries = vec![Entry::new(Op::Random(u64::from(i)))];
        let mut staging = store.staging();
        staging.journal(inv(4), u64::from(i), &mut entries, None);
        staging.put(Table::Data, b"k", i.to_le_bytes().to_vec(), None);
    }
    assert_eq!(
        store.get(Table::Data, b"k").unwrap(),
        Some(499u32.to_le_bytes().to_vec())
    );
    store.flush().unwrap();
    drop(store);
    let store = open(&dir);
    assert_eq!(
        store.get(Table::Data, b"k").unwrap(),
        Some(499u32.to_le_bytes().to_vec())
    );
    let journal = store.journal(&inv(4)).unwrap();
    assert_eq!(journal.len(), 500);
    assert_eq!(journal[499].op, Op::Random(499));
}

#[test]
fn writes_left_staged_are_committed_in_the_background_unless_turned_off() {
    let commits_after_waiting = |flush_interval: Duration| {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            flush_interval,
            ..options()
        };
        let store = LmdbStore::open(dir.path(), options).unwrap();
        store.stage(put(b"left", b"staged"));
        let start = Instant::now();
        while store.commit_count() == 0 && start.elapsed() < Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let value = store.get(Table::Data, b"left").unwrap();
        assert_eq!(value, Some(b"staged".to_vec()), "read back either way");
        store.commit_count()
    };
    assert_eq!(commits_after_waiting(Duration::from_millis(2)), 1);
    assert_eq!(commits_after_waiting(Duration::ZERO), 0);
}

#[test]
fn a_dropped_store_closes_at_once_though_its_flusher_runs() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..50u8 {
        let store = open(&dir);
        store.stage(put(b"round", &[round]));
        store.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1));
        let weak = Arc::downgrade(&store);
        drop(store);
        // Nothing else holds it: a reopen gets a new store on the files now at the path.
        assert!(
            weak.upgrade().is_none(),
            "round {round}: the store outlived its last user"
        );
    }
    let store = open(&dir);
    assert_eq!(store.get(Table::Data, b"round").unwrap(), Some(vec![49]));
}
