//! Stores: where journals, invocation records, workflow data and the work queue with its
//! leases live, behind one contract (`Store`) the engine talks to.
//!
//! Two stores implement it: `lmdb` (the embedded default, one directory shared by the
//! processes of one machine) and `postgres` (one database schema shared by workers on many
//! hosts). What only one kind needs (LMDB's map growth, lock file and fork reopening;
//! PostgreSQL's connections and database time) lives inside that store's module.
//!
//! Shared by every store: writes are *staged* in a process-wide ordered buffer (cheap, in
//! memory) and made durable by `flush`, which commits everything staged so far by any thread
//! in one transaction (group commit: concurrent flushes share one transaction, `commit.rs`,
//! `batch.rs`); staged writes no flush takes are committed by a background thread
//! (`ticker.rs`); a fork waits for store calls in flight (`fork_gate.rs`). Reads see this
//! process's staged writes first, then committed data.

mod batch;
pub(crate) mod commit;
pub(crate) mod fork_gate;
pub mod lmdb;
mod overlay;
pub mod postgres;
pub(crate) mod ticker;

use std::time::Duration;

pub use commit::Staging;
pub use lmdb::{LmdbStore, StoreOptions, FORMAT_VERSION, MAX_KEY_LEN};

use crate::entry::Entry;
use crate::error::Result;

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
    /// record per at most `SEGMENT_MAX_ENTRIES` entries).
    Journal {
        invocation: [u8; 16],
        first_position: u64,
        entries: Vec<Entry>,
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
    /// Add an invocation to the work queue (FIFO). `fence` is that of the invocation whose
    /// run dispatched it, if any: a dispatch refused with the rest of its run's writes must
    /// not enqueue the child either.
    Enqueue {
        invocation: [u8; 16],
        fence: Option<Fence>,
    },
    /// Remove an invocation from the queue and drop its lease (it finished). `notice`: tell
    /// waiters in other processes (a store with change notices); false when the only one
    /// waiting on it is the caller completing it (a parent that ran its own child).
    Complete {
        invocation: [u8; 16],
        fence: Option<Fence>,
        notice: bool,
    },
    /// Delete a whole journal: every segment of journal id `journal` (an attempt's journal,
    /// `ids::journal_id`) and its end record. Reads after it see an empty journal, also before
    /// the flush that commits it; a segment staged after it starts the journal afresh.
    DeleteJournal {
        journal: [u8; 16],
        fence: Option<Fence>,
    },
}

impl WriteOp {
    /// The fence this write carries, if any.
    pub fn fence(&self) -> Option<&Fence> {
        match self {
            WriteOp::Journal { fence, .. }
            | WriteOp::Put { fence, .. }
            | WriteOp::Delete { fence, .. }
            | WriteOp::Enqueue { fence, .. }
            | WriteOp::Complete { fence, .. }
            | WriteOp::DeleteJournal { fence, .. } => fence.as_ref(),
        }
    }
}

/// Most entries one journal record holds; longer runs are split into several records.
pub const SEGMENT_MAX_ENTRIES: usize = 4096;

/// The journal records a `WriteOp::Journal` of `entries` from `first_position` is stored as:
/// (first position of the record, its encoded segment), at most `SEGMENT_MAX_ENTRIES` each.
pub(crate) fn segments(
    first_position: u64,
    entries: &[Entry],
) -> impl Iterator<Item = (u64, Vec<u8>)> + '_ {
    entries
        .chunks(SEGMENT_MAX_ENTRIES)
        .enumerate()
        .map(move |(i, chunk)| {
            let position = first_position + (i * SEGMENT_MAX_ENTRIES) as u64;
            (position, crate::entry::encode_segment(chunk))
        })
}

/// What a flush did: writes rejected because their fencing token was stale.
#[derive(Clone, Debug, Default)]
pub struct FlushReport {
    /// (fence carried, current token) of each rejected write, at most one per invocation.
    pub rejected: Vec<(Fence, u64)>,
}

/// A claimed invocation and the lease taken on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub invocation: [u8; 16],
    pub token: u64,
    pub expires_ms: u64,
    /// The invocation was last held by a process that never gave it back: its lease ran out
    /// or was released as dead. Its execution is then a resumption.
    pub taken_over: bool,
}

/// The current lease of an invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: Vec<u8>,
    pub expires_ms: u64,
    pub token: u64,
}

/// A migration of the store's layout done while opening it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Migration {
    /// The version the store had.
    pub from: u32,
    /// The version it has now.
    pub to: u32,
    /// How long the migration took, commit included.
    pub took: Duration,
}

/// The store contract: everything the engine asks of a store. The engine never asks which
/// store it has.
///
/// Times are milliseconds since the Unix epoch. `now_ms` arguments are the caller's reading
/// of the store's clock (`Store::now_ms`); a store with a clock of its own (PostgreSQL's
/// database time) uses that clock instead, so leases never depend on a worker's clock.
pub trait Store: Send + Sync {
    /// The kind of store (`"lmdb"`, `"postgresql"`).
    fn kind(&self) -> &'static str;
    /// Where the store lives, as its URL (`lmdb://` and the canonical path, or a PostgreSQL
    /// URL without its password).
    fn location(&self) -> String;
    /// Hold the staging buffer to stage several writes together (visible to this process's
    /// reads at once, durable after `flush`).
    fn staging(&self) -> Staging<'_>;
    /// Stage one write.
    fn stage(&self, op: WriteOp) {
        self.staging().push(op);
    }
    /// Commit everything staged so far by any thread in one transaction (shared with
    /// concurrent flushes), fenced; durable on return.
    fn flush(&self) -> Result<FlushReport>;
    /// The current lease token, if a flush of this process rejected a write fenced with
    /// `fence` (or with a newer token of the same invocation).
    fn stale_fence(&self, fence: Fence) -> Option<u64>;
    /// The value under `key`: the latest staged write of this process, else the committed one.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Every (key, value) whose key starts with `prefix`, in key order, staged writes applied.
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// The journal of `invocation` (committed and staged entries in position order).
    fn journal(&self, invocation: &[u8; 16]) -> Result<Vec<Entry>>;
    /// Claim the first queued invocation without a live lease (see `LmdbStore::claim`).
    fn claim(&self, owner: &[u8], lease_ms: u64, now_ms: u64) -> Result<Option<Claim>> {
        Ok(self
            .claim_many(owner, lease_ms, now_ms, 1)?
            .into_iter()
            .next())
    }
    /// Claim up to `most` queued invocations without a live lease, in queue order, in one
    /// commit (one statement on PostgreSQL): a worker with several free slots fills them
    /// with one claim. Fewer (none) when fewer are claimable.
    fn claim_many(
        &self,
        owner: &[u8],
        lease_ms: u64,
        now_ms: u64,
        most: usize,
    ) -> Result<Vec<Claim>>;
    /// Claim one given invocation if it is queued and has no live lease.
    fn claim_invocation(
        &self,
        invocation: &[u8; 16],
        owner: &[u8],
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Option<Claim>>;
    /// Extend a lease held with `token` to `now_ms + lease_ms`.
    fn renew(&self, invocation: &[u8; 16], token: u64, lease_ms: u64, now_ms: u64) -> Result<()>;
    /// Give up a lease held with `token`: claimable again at once.
    fn release(&self, invocation: &[u8; 16], token: u64) -> Result<()>;
    /// Give up a lease held with `token`, unclaimable until `until_ms`.
    fn defer(&self, invocation: &[u8; 16], token: u64, until_ms: u64) -> Result<()>;
    /// Release the lease of a holder known to be dead: the next claim is a takeover.
    fn release_dead(&self, invocation: &[u8; 16], token: u64) -> Result<()>;
    /// The current lease of `invocation`, if any (expired ones included).
    fn lease(&self, invocation: &[u8; 16]) -> Result<Option<Lease>>;
    /// Every lease held by an owner, by invocation id.
    fn leases(&self) -> Result<Vec<([u8; 16], Lease)>>;
    /// Invocations in the queue, in claim order.
    fn queued(&self) -> Result<Vec<[u8; 16]>>;
    /// The store's clock, in ms since the epoch (the one leases are judged by).
    fn now_ms(&self) -> Result<u64>;
    /// Write transactions committed by flushes of this store in this process.
    fn commit_count(&self) -> u64;
    /// A ticket for `wait_notice`, taken before looking at the store; None when the store
    /// sends no change notices (or cannot hear them now): the caller polls.
    fn notice_ticket(&self) -> Option<u64> {
        None
    }
    /// Wait until work was enqueued (`invocation` None) or `invocation` finished after
    /// `ticket` was taken, or `timeout` passes; true when a notice says so. A hint: the caller
    /// looks at the store again either way.
    fn wait_notice(&self, _ticket: u64, _invocation: Option<&[u8; 16]>, timeout: Duration) -> bool {
        std::thread::sleep(timeout);
        false
    }
    /// Tell waiters on `invocation` (`wait_notice` with it) that something they wait for
    /// changed: an event it published, a signal sent to it. Sent now, so call it once the
    /// change is committed; a hint like every notice. Nothing on a store without notices.
    fn announce(&self, _invocation: &[u8; 16]) {}
    /// The version of the store's layout.
    fn format_version(&self) -> Result<u32>;
    /// The migration opening this store did, once.
    fn take_migration(&self) -> Option<Migration>;
    /// Wait for, then hold, the store's recovery lock: recoveries in every process (on every
    /// host) sharing the store pick and adopt stranded invocations one at a time. Released
    /// when the guard is dropped (or its process dies).
    fn recovery_lock(&self) -> Result<RecoveryGuard>;
    /// Whether the liveness of a lease's owner process may be judged on this machine (only
    /// when every process using the store runs on it); otherwise only expiry frees a lease.
    fn owners_are_local(&self) -> bool;
}

/// A held recovery lock (`Store::recovery_lock`); dropping it releases the lock.
pub type RecoveryGuard = Box<dyn Send>;

/// The wall clock in ms since the Unix epoch.
pub(crate) fn system_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
