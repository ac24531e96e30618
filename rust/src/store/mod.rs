//! The embedded store: one LMDB environment directory holding the tables of the journal,
//! invocation records, workflow data, and the work queue with leases.
//!
//! Writes are *staged* in a process-wide ordered buffer (cheap, in memory) and made durable by
//! `flush`, which commits everything staged so far by any thread in one write transaction
//! (group commit: concurrent flushes share one transaction and one fsync). Reads see the
//! caller's own staged writes first, then committed data.
//!
//! Files: `lmdb.rs` (the `Store`, fork safety, transaction helpers with map growth), `env.rs`
//! (the one `unsafe` open, format version, error mapping), `map.rs` (map sizes that never cut
//! another process's file, reserved space, the lock file's identity), `tables.rs` (the tables: tagged
//! ranges of LMDB's main database), `migrate.rs` (older formats, in place), `batch.rs` (the
//! staged writes, indexed), `commit.rs` (group commit), `ticker.rs` (the background flusher),
//! `fork_gate.rs` (a fork waits for store calls; the cached pid), `apply.rs` (a batch inside
//! one transaction, fencing), `read.rs` (reads with the staged overlay), `queue.rs` (claims
//! and leases), `registry.rs` (one store per path per process), `keys.rs` (byte layouts),
//! `mapguard.rs` (a value's length checked against its page and the map before it is read),
//! `verify.rs` and `pages.rs` (`pynenc verify`: every row, and every page read without LMDB).
//! The on-disk layout is in `docs/journal-format.md`.
//!
//! API contract (implemented in the submodules):
//!
//! ```ignore
//! Store::open(path, StoreOptions) -> Result<Arc<Store>>  // one shared Store per canonical path per process
//! store.path() -> &Path
//! store.stage(WriteOp) / store.stage_many(impl IntoIterator<Item = WriteOp>)
//! store.staging() -> Staging                             // hold the buffer: journal drain + put, in order
//! store.flush() -> Result<FlushReport>                   // durable (fsync unless sync=false) on return
//! store.journal(&inv) -> Result<Vec<Entry>>             // checksums verified; CorruptEntry names inv+position
//! store.get(Table, key) -> Result<Option<Vec<u8>>>      // staged overlay first
//! store.scan(Table, prefix) -> Result<Vec<(Vec<u8>, Vec<u8>)>>
//! store.claim(owner, lease_ms, now_ms) -> Result<Option<Claim>>
//! store.renew(&inv, token, lease_ms, now_ms) -> Result<()>
//! store.release(&inv, token) -> Result<()>
//! store.lease(&inv) -> Result<Option<Lease>>
//! ```

mod apply;
mod batch;
mod commit;
#[cfg(test)]
mod damage_tests;
mod env;
mod fork_gate;
mod keys;
mod lmdb;
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
mod ticker;
mod verify;

pub use commit::Staging;
pub use env::{Migration, FORMAT_VERSION};
pub use lmdb::{Claim, FlushReport, Lease, Store, StoreOptions};
pub use tables::MAX_KEY_LEN;
pub use verify::{verify_file, verify_table, Finding};

/// The tables a caller can read and write directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Invocation records: key = invocation id (16 bytes), value = codec bytes owned by Python.
    Invocations,
    /// Workflow data: key = workflow id (16 bytes) ‖ UTF-8 key, value = codec bytes.
    Data,
}

/// A fencing token check attached to a write: the write is applied only while `token` is the
/// current lease token of `invocation` (or the invocation has no lease).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub invocation: [u8; 16],
    pub token: u64,
}

/// One staged write.
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// Append entries to an invocation's journal starting at `first_position` (one segment
    /// record per at most `SEGMENT_MAX_ENTRIES` entries, key = id ‖ BE first position).
    Journal {
        invocation: [u8; 16],
        first_position: u64,
        entries: Vec<crate::entry::Entry>,
        fence: Option<Fence>,
    },
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
        fence: Option<Fence>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
        fence: Option<Fence>,
    },
    /// Add an invocation to the work queue (FIFO).
    Enqueue { invocation: [u8; 16] },
    /// Remove an invocation from the queue and drop its lease (it finished).
    Complete {
        invocation: [u8; 16],
        fence: Option<Fence>,
    },
}

/// Most entries one journal record holds; longer runs are split into several records.
pub const SEGMENT_MAX_ENTRIES: usize = 4096;
