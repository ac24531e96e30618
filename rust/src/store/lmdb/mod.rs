//! The embedded store: one LMDB environment directory holding the tables of the journal,
//! invocation records, workflow data, and the work queue with leases.
//!
//! Files: `mod.rs` (the `LmdbStore`, fork safety, transaction helpers with map growth),
//! `env.rs` (the one `unsafe` open, format version, error mapping), `map.rs` (map sizes that
//! never cut another process's file, reserved space, the lock file's identity), `tables.rs`
//! (the tables: tagged ranges of LMDB's main database), `migrate.rs` (older formats, in
//! place), `apply.rs` (a batch inside one transaction, fencing), `read.rs` (reads with the
//! staged overlay), `queue.rs` (claims and leases), `registry.rs` (one store per path per
//! process), `keys.rs` (byte layouts), `mapguard.rs` (a value's length checked against its
//! page and the map before it is read), `verify.rs` and `pages.rs` (`pynenc verify`: every
//! row, and every page read without LMDB). The on-disk layout is in `docs/journal-format.md`.
//! Staging and group commit (`commit.rs`, `batch.rs`, `ticker.rs`) are shared by every store.

mod apply;
mod contract;
#[cfg(test)]
mod damage_tests;
mod env;
mod keys;
mod map;
mod mapguard;
mod migrate;
mod pages;
mod queue;
mod read;
mod registry;
mod tables;
#[cfg(test)]
mod tests;
mod verify;

pub use env::FORMAT_VERSION;
pub use tables::MAX_KEY_LEN;
pub use verify::{verify_file, verify_table, Finding};
// The shared store types, named here too so this store's modules reach them as `super::`.
pub(crate) use crate::store::{Claim, Fence, FlushReport, Lease, Migration, Table, WriteOp};

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{
    Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::time::Duration;

use heed::{MdbError, RoTxn, RwTxn, WithoutTls};

use self::env::{Handle, MapEvent};
use crate::error::{Error, Result};
use crate::store::commit::{GroupCommit, Staging};
use crate::store::fork_gate::{self, current_pid, Busy};
use crate::store::ticker;

/// Options of a store; mirrored by `pynenc.store.lmdb.StoreOptions` in Python.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// fsync on every commit (default true). Off: a process crash still loses nothing, and
    /// commits write through a writable map (`MDB_WRITEMAP`).
    pub sync: bool,
    /// Initial map size in bytes (with `sync` off at most `map::FIRST_WRITABLE_MAP`, since
    /// that map is reserved on disk); the map grows automatically when full.
    pub map_size: usize,
    /// Maximum concurrent read transactions across all processes.
    pub max_readers: u32,
    /// Longest a staged write waits for its writer's flush before a background thread of
    /// the store commits it (`ticker.rs`); zero: no background thread, writes wait for a flush.
    pub flush_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync: true,
            map_size: 1 << 30,
            max_readers: 512,
            flush_interval: ticker::FLUSH_INTERVAL,
        }
    }
}

/// Largest map the store grows to before reporting the map as full.
const MAX_MAP_SIZE: usize = 1 << 40;

/// A failure inside a transaction body: LMDB's (possibly retryable) or the store's own.
pub(crate) enum TxnError {
    Heed(heed::Error),
    Core(Error),
    /// A row failed its checksum (`tables.rs`); the store names its path when reporting it.
    Damaged(tables::Damage),
}

impl From<heed::Error> for TxnError {
    fn from(e: heed::Error) -> Self {
        TxnError::Heed(e)
    }
}

impl From<Error> for TxnError {
    fn from(e: Error) -> Self {
        TxnError::Core(e)
    }
}

pub(crate) type TxnResult<T> = std::result::Result<T, TxnError>;

/// An embedded LMDB store shared by every thread of the process (see the module docs).
///
/// The first opener's options win when the same path is opened again in one process.
pub struct LmdbStore {
    path: PathBuf,
    options: StoreOptions,
    /// `None` only while a reopen after fork failed. Transactions hold the read side; growing
    /// the map takes the write side, since LMDB resizes only with no transaction active.
    handle: RwLock<Option<Handle>>,
    pub(crate) commit: GroupCommit,
    commits: AtomicU64,
    /// The process whose environment `handle` holds: read without a lock on every operation
    /// to notice a fork.
    opened_pid: AtomicU32,
    /// This store, weakly: handed to the background flusher (`ticker.rs`).
    me: OnceLock<Weak<LmdbStore>>,
    /// The migration the first open did, until someone takes it to report it.
    migration: Mutex<Option<Migration>>,
    /// The first damaged page this process found (`tables.rs`): LMDB would write through it,
    /// so every later write is refused.
    broken: Mutex<Option<tables::Damage>>,
}

impl LmdbStore {
    /// Open the store in directory `path` (created 0700 if missing), or share the one this
    /// process already has open there.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Arc<LmdbStore>> {
        fork_gate::install();
        let _busy = Busy::enter();
        let canonical = prepare_dir(path)?;
        let store = registry::shared(canonical, |canonical| {
            let handle = env::open(&canonical, &options)?;
            Ok(LmdbStore {
                path: canonical,
                options,
                migration: Mutex::new(handle.migrated),
                handle: RwLock::new(Some(handle)),
                commit: GroupCommit::default(),
                commits: AtomicU64::new(0),
                opened_pid: AtomicU32::new(current_pid()),
                me: OnceLock::new(),
                broken: Mutex::new(None),
            })
        })?;
        store.me.get_or_init(|| Arc::downgrade(&store));
        Ok(store)
    }

    /// The canonical path of the store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The migration from an older format that opening this store did, once: later calls (and
    /// other openers of the same store in this process) get `None`.
    pub fn take_migration(&self) -> Option<Migration> {
        self.migration
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Number of write transactions committed by flushes of this store in this process.
    pub fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Stage one write (visible to this process's reads at once, durable after `flush`).
    pub fn stage(&self, op: WriteOp) {
        self.stage_many([op]);
    }

    /// Stage several writes, in order, under one lock.
    pub fn stage_many(&self, ops: impl IntoIterator<Item = WriteOp>) {
        self.check_fork();
        self.start_ticker();
        self.commit.stage(ops);
    }

    /// Hold the staging buffer to stage several writes together without building them first
    /// (journal entries drained from the caller's buffer, a Put of a borrowed key).
    pub fn staging(&self) -> Staging<'_> {
        self.check_fork();
        self.start_ticker();
        self.commit.staging()
    }

    /// Make sure staged writes are committed within the store's `flush_interval` even if
    /// their writer does not flush for a while.
    fn start_ticker(&self) {
        let running = &self.commit.waiting.running;
        if running.load(Ordering::Relaxed) || self.options.flush_interval.is_zero() {
            return;
        }
        if let Some(me) = self.me.get() {
            ticker::ensure(me, &self.commit.waiting, self.options.flush_interval);
        }
    }

    /// Commit everything staged so far by any thread in one transaction (shared with
    /// concurrent flushes); durable on return unless the store was opened with `sync=false`.
    pub fn flush(&self) -> Result<FlushReport> {
        self.check_fork();
        self.commit.flush(
            |ops| {
                let report = self
                    .write("committing", |h, txn| apply::apply(h, txn, ops))
                    .map_err(|e| match e {
                        // Without a writable map the commit's `pwrite` found the disk full;
                        // with one, the failed reservation said what it lacked.
                        Error::StoreFull { .. } if self.options.sync => {
                            map::full(&self.path, "committing", needs(ops))
                        }
                        other => other,
                    })?;
                self.commits.fetch_add(1, Ordering::Relaxed);
                Ok(report)
            },
            || Error::Lmdb {
                path: self.path.clone(),
                during: "committing",
                detail: "the commit panicked; nothing of it was stored".into(),
            },
        )
    }

    /// The current lease token, if a flush of this process rejected a write fenced with
    /// `fence` (or with a newer token of the same invocation): its writer lost the lease.
    pub fn stale_fence(&self, fence: Fence) -> Option<u64> {
        self.commit.stale(fence)
    }

    /// After a fork the child starts with an empty staging buffer: the writes staged by the
    /// parent belong to the parent, which commits them itself.
    pub(crate) fn check_fork(&self) {
        if self.opened_pid.load(Ordering::Relaxed) == current_pid() {
            return;
        }
        let _busy = Busy::enter();
        let stale = {
            let guard = self.handle.read().unwrap_or_else(PoisonError::into_inner);
            guard.as_ref().is_some_and(|h| h.pid != current_pid())
        };
        if stale {
            // Reopening here resets the buffer; an open error surfaces at the next operation.
            drop(self.handle());
        }
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Option<Handle>> {
        self.handle.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The environment of this process, reopened first if this is a forked child.
    fn handle(&self) -> Result<RwLockReadGuard<'_, Option<Handle>>> {
        let pid = current_pid();
        loop {
            let guard = self.handle.read().unwrap_or_else(PoisonError::into_inner);
            if guard.as_ref().is_some_and(|h| h.pid == pid) {
                return Ok(guard);
            }
            drop(guard);
            let mut guard = self.write_lock();
            if !guard.as_ref().is_some_and(|h| h.pid == pid) {
                if let Some(inherited) = guard.take() {
                    self.commit.reset_after_fork();
                    // The parent's handle is closed in the child: heed keeps a per-process
                    // registry of open paths and refuses to open the path again while the
                    // inherited handle is alive. Closing it only releases the child's copies:
                    // LMDB unmaps the child's mappings, closes the child's descriptors, and
                    // clears reader slots owned by the child's pid (none); it takes no lock
                    // and touches no state the parent owns.
                    drop(inherited);
                }
                *guard = Some(env::open(&self.path, &self.options)?);
                self.opened_pid.store(pid, Ordering::Relaxed);
            }
        }
    }

    /// Run `f` in a read transaction, adopting a map grown by another process and clearing
    /// stale reader slots if the reader table is full.
    pub(crate) fn read<T>(
        &self,
        during: &'static str,
        f: impl Fn(&Handle, &RoTxn<'_, WithoutTls>) -> TxnResult<T>,
    ) -> Result<T> {
        let _busy = Busy::enter();
        let mut cleared = false;
        loop {
            let guard = self.handle()?;
            let h = self.current(&guard)?;
            let outcome = h
                .env
                .read_txn()
                .map_err(TxnError::from)
                .and_then(|txn| f(h, &txn));
            match outcome {
                Ok(v) => return Ok(v),
                Err(TxnError::Core(e)) => return Err(e),
                Err(TxnError::Damaged(d)) => return Err(self.damaged(d)),
                Err(TxnError::Heed(e)) => {
                    if matches!(e, heed::Error::Mdb(MdbError::ReadersFull)) && !cleared {
                        cleared = true;
                        h.env
                            .clear_stale_readers()
                            .map_err(|e| self.err(during, e))?;
                        continue;
                    }
                    if let Some(MapEvent::Resized) = env::map_event(&e) {
                        drop(guard);
                        self.resize(during, None)?;
                        continue;
                    }
                    return Err(self.err(during, e));
                }
            }
        }
    }

    /// Run `f` in a write transaction and commit it, growing the map and retrying when it
    /// is full. Nothing is written once `lock.mdb` is not the file the store opened.
    pub(crate) fn write<T>(
        &self,
        during: &'static str,
        mut f: impl FnMut(&Handle, &mut RwTxn<'_>) -> TxnResult<T>,
    ) -> Result<T> {
        let _busy = Busy::enter();
        if let Some(refused) = self.refuse_writes() {
            return Err(refused);
        }
        loop {
            let guard = self.handle()?;
            let h = self.current(&guard)?;
            let outcome = h
                .env
                .write_txn()
                .map_err(TxnError::from)
                .and_then(|mut txn| {
                    // Checked holding LMDB's writer lock, once per transaction (one `stat`).
                    env::check_lock(&self.path, h)?;
                    // Without a writable map, LMDB extends the file with `pwrite` during the
                    // transaction; no process may set its map meanwhile (`map.rs`). Taken after
                    // the writer lock: threads of this process share the descriptor's lock.
                    let _extending = match self.options.sync {
                        true => Some(map::lock(&self.path, &h.dir_file, false)?),
                        false => None,
                    };
                    let v = f(h, &mut txn)?;
                    txn.commit()?;
                    Ok(v)
                });
            match outcome {
                Ok(v) => return Ok(v),
                Err(TxnError::Core(e)) => return Err(e),
                Err(TxnError::Damaged(d)) => return Err(self.damaged(d)),
                Err(TxnError::Heed(e)) => {
                    let event = env::map_event(&e);
                    let size = h.env.info().map_size;
                    drop(guard);
                    match event {
                        Some(MapEvent::Resized) => self.resize(during, None)?,
                        Some(MapEvent::Full) if size < MAX_MAP_SIZE => {
                            self.resize(during, Some(map::grown(size)))?
                        }
                        _ => return Err(self.err(during, e)),
                    }
                }
            }
        }
    }

    /// Grow the map to at least `size` bytes (`None`: adopt the data another process
    /// committed past this map), and never to less than the file's length (`map.rs`).
    fn resize(&self, during: &'static str, size: Option<usize>) -> Result<()> {
        let _busy = Busy::enter();
        let guard = self.write_lock();
        let Some(h) = guard.as_ref() else {
            return Ok(());
        };
        let info = h.env.info();
        if size.is_some_and(|size| info.map_size >= size) {
            return Ok(()); // another thread grew it meanwhile
        }
        let _lock = map::lock(&self.path, &h.dir_file, true)?;
        let page = h.env.unnamed_database_stat().page_size as usize;
        let committed = (info.last_page_number + 1).saturating_mul(page);
        let file_len = usize::try_from(map::file_len(&self.path)?).unwrap_or(usize::MAX);
        let target = map::round_to_page(
            size.unwrap_or(info.map_size)
                .max(info.map_size)
                .max(committed)
                .max(file_len),
        );
        if !self.options.sync {
            // Reserved before LMDB maps it; on failure the map stays as it was.
            map::reserve(&self.path, target, during)?;
        }
        // SAFETY: LMDB allows changing the map size while no transaction of this process is
        // active; every transaction runs under the read side of `handle`, and we hold the
        // write side. The size is at least the file's length, read under the directory
        // lock, so LMDB's `ftruncate` does not cut another process's pages.
        unsafe { h.env.resize(target) }.map_err(|e| self.err(during, e))
    }

    fn current<'g>(&self, guard: &'g RwLockReadGuard<'_, Option<Handle>>) -> Result<&'g Handle> {
        guard.as_ref().ok_or_else(|| Error::Lmdb {
            path: self.path.clone(),
            during: "reopening after fork",
            detail: "the environment is not open".into(),
        })
    }

    /// Report damage found by a read or write; remember damage of a page's structure.
    fn damaged(&self, damage: tables::Damage) -> Error {
        if damage.structural {
            let mut broken = self.broken.lock().unwrap_or_else(PoisonError::into_inner);
            broken.get_or_insert_with(|| damage.clone());
        }
        damage.into_error(&self.path)
    }

    /// Writes are refused once a damaged page was found: a write transaction would have LMDB
    /// change pages through the damaged one (seen to crash in its page split).
    fn refuse_writes(&self) -> Option<Error> {
        let broken = self.broken.lock().unwrap_or_else(PoisonError::into_inner);
        broken.as_ref().map(|d| {
            let mut refused = d.clone();
            refused.detail = format!(
                "writes to this store are refused since this process found a damaged page \
                 here ({}); stop using the store, run `pynenc verify`, restore it from a backup",
                d.detail
            );
            refused.into_error(&self.path)
        })
    }

    pub(crate) fn err(&self, during: &'static str, e: heed::Error) -> Error {
        env::map_err(&self.path, during, e)
    }
}

impl Drop for LmdbStore {
    fn drop(&mut self) {
        // Writes staged but never flushed are committed on close rather than lost (a failure
        // here has no caller left to report to). A forked child's inherited copy has nothing
        // of its own to commit.
        let _busy = Busy::enter();
        let pid = current_pid();
        let handle = self
            .handle
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if handle.as_ref().is_some_and(|h| h.pid == pid) {
            let _ = self.flush();
        }
        let mut stores = registry::lock();
        let handle = self
            .handle
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // Close the environment before a reopen of the same path can proceed.
        drop(handle);
        if stores
            .get(&self.path)
            .is_some_and(|w| w.strong_count() == 0)
        {
            stores.remove(&self.path);
        }
    }
}

/// A lower bound of the bytes a commit of `ops` adds to the file: its keys and values, page
/// rounded, plus the pages of the tree path and the free list that every commit rewrites.
fn needs(ops: &[WriteOp]) -> u64 {
    const PAGE: u64 = 4096;
    let bytes: u64 = ops
        .iter()
        .map(|op| match op {
            WriteOp::Put { key, value, .. } => (key.len() + value.len()) as u64,
            WriteOp::Journal { entries, .. } => 32 * entries.len() as u64,
            _ => 32,
        })
        .sum();
    bytes.div_ceil(PAGE) * PAGE + 4 * PAGE
}

/// Create the store directory (0700) if missing and return its canonical path.
fn prepare_dir(path: &Path) -> Result<PathBuf> {
    match fs::metadata(path) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(Error::StoreAccess {
                path: path.to_path_buf(),
                detail: "the path exists and is not a directory".into(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| env::map_io(path, "creating the store directory", e))?;
        }
        Err(e) => return Err(env::map_io(path, "opening the store directory", e)),
    }
    path.canonicalize()
        .map_err(|e| env::map_io(path, "opening the store directory", e))
}
