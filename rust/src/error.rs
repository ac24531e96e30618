//! The one error type of the core. Every failure the core can report is a variant here;
//! the binding layer maps each variant onto a Python exception class in one function
//! (`lib.rs::to_pyerr`), so nothing is ever erased into a bare string.

use std::path::PathBuf;

pub use crate::report::Report;

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, Error>;

/// Cloneable, so one failed group commit can be reported to every caller that shared it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Replayed code asked for something other than what the journal recorded. The Python
    /// layer words it from these fields (`NonDeterminismError.from_report`).
    #[error(
        "non-deterministic replay in workflow {workflow_id}, invocation {invocation_id}, \
         position {position} ({position} entries matched): the journal recorded {recorded} but \
         the code now asks for {requested}. Restore the code that recorded this workflow, guard \
         the change with wf.patched, or cancel the workflow with app.cancel."
    )]
    NonDeterminism {
        workflow_id: String,
        invocation_id: String,
        position: u64,
        recorded: Box<Report>,
        requested: Box<Report>,
    },

    /// A stored record failed its checksum or could not be decoded.
    #[error(
        "corrupt journal entry in store {path}: invocation {invocation_id}, position {position}: \
         {detail}. The entry is not replayed; restore the store from a backup."
    )]
    CorruptEntry {
        path: PathBuf,
        invocation_id: String,
        position: u64,
        detail: String,
    },

    /// A stored row failed its checksum over key and value: the row (or its key) was damaged.
    #[error(
        "damaged record in store {path}: table {table}, {key}: {detail}. The record is not used; \
         run `pynenc verify --store {path}` to list every damaged record, and restore the \
         store from a backup."
    )]
    StoreCorrupt {
        path: PathBuf,
        table: &'static str,
        /// The row's key as an operator reads it (invocation or workflow id as a UUID).
        key: String,
        detail: String,
    },

    /// The store files exist but are not a readable store (truncated, garbage, wrong kind).
    #[error("store at {path} is corrupt or not a pynenc store: {detail}")]
    CorruptStore { path: PathBuf, detail: String },

    /// The store was written by a newer format than this build reads.
    #[error(
        "store at {path} has format version {found}, this build reads up to {supported}: \
         upgrade pynenc-replay to open it"
    )]
    FormatVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The store path cannot be created or opened for writing.
    #[error("cannot open store at {path}: {detail}")]
    StoreAccess { path: PathBuf, detail: String },

    /// The filesystem holding the store is read-only.
    #[error("store at {path} is on a read-only filesystem: open it on a writable path")]
    ReadOnly { path: PathBuf },

    /// An I/O error while reading or committing; the commit did not happen.
    #[error(
        "I/O error on store at {path} during {during}: {source}; nothing of this commit was stored"
    )]
    Io {
        path: PathBuf,
        during: &'static str,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },

    /// The filesystem holding the store has no room for what the store must write (ENOSPC,
    /// or a quota); nothing of the commit was stored.
    #[error(
        "store at {path} is full during {during}: it needs at least {needed} more bytes on its \
         filesystem, which has {available} bytes free; nothing of this commit was stored. \
         Free at least {needed} bytes there (or move the store to a larger disk) and retry; \
         an interrupted workflow resumes from its journal with recover()"
    )]
    StoreFull {
        path: PathBuf,
        during: &'static str,
        /// Bytes the store needs beyond what is free (a lower bound when not known exactly).
        needed: u64,
        /// Bytes free on the filesystem for this process when the failure was seen.
        available: u64,
    },

    /// `lock.mdb` was deleted or replaced while this process had the store open: processes
    /// no longer exclude each other, so the store refuses to write.
    #[error(
        "the lock file {path}/lock.mdb was {what} while this process had the store open, so \
         the processes using the store no longer exclude each other; nothing more is written \
         by this process. Stop every process using the store and start them again"
    )]
    StoreLock { path: PathBuf, what: &'static str },

    /// Any other LMDB failure.
    #[error("LMDB error on store at {path} during {during}: {detail}")]
    Lmdb {
        path: PathBuf,
        during: &'static str,
        detail: String,
    },

    /// A write carried a fencing token older than the current lease: the writer lost its lease.
    #[error(
        "lease lost on invocation {invocation_id}: write carried token {token} but the current \
         lease token is {current}; another worker owns this invocation now"
    )]
    StaleLease {
        invocation_id: String,
        token: u64,
        current: u64,
    },

    /// The database server of a PostgreSQL store could not be reached for longer than the
    /// store waits (`store_unavailable_seconds`); the operation did not happen.
    #[error(
        "the PostgreSQL store {location} has been unreachable for {waited_s:.1} s during \
         {during}: {detail}. Check that the server is running and reachable from this host; \
         interrupted workflows resume from their journals once it is back"
    )]
    StoreUnavailable {
        location: String,
        during: &'static str,
        detail: String,
        waited_s: f64,
    },

    /// The database refused an operation of a PostgreSQL store (permissions, a constraint,
    /// a server error); nothing of it was stored.
    #[error("PostgreSQL error on store {location} during {during}: {detail}")]
    Postgres {
        location: String,
        during: &'static str,
        detail: String,
    },

    /// A caller passed a value the core cannot accept.
    #[error("{0}")]
    InvalidArgument(String),
}
