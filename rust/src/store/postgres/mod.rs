//! The PostgreSQL store: the store contract in one schema of a PostgreSQL database, shared
//! by workers on any number of hosts.
//!
//! Files: `mod.rs` (the `PgStore`: options, staging, the contract), `conn.rs` (connections:
//! a small pool, fork safety, retries while the server is unreachable, error mapping),
//! `schema.rs` (the tables and their versioned migrations, each in a transaction), `apply.rs`
//! (a flush as one transaction, fenced by lease tokens), `queue.rs` (claims with
//! `FOR UPDATE SKIP LOCKED`, leases in database time), `read.rs` (reads with the staged
//! overlay), `notify.rs` (`LISTEN/NOTIFY`: idle workers and waiting callers woken by work
//! enqueued and invocations finished). The schema is described in `docs/operations.md`.
//!
//! Leases are judged by the database's clock (`now_ms()` in the schema), never a worker's:
//! the `now_ms` arguments of the contract are ignored here.

mod apply;
mod conn;
mod notify;
mod queue;
mod read;
mod schema;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use self::conn::Pool;
use self::notify::Notices;
use self::schema::Sql;
use super::commit::{GroupCommit, Staging};
use super::{ticker, Claim, Fence, FlushReport, Lease, Migration, RecoveryGuard, Store, Table};
use crate::entry::Entry;
use crate::error::{Error, Result};

/// Options of a PostgreSQL store; mirrored by `pynenc.store.postgres` in Python.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// The schema holding the store's tables (created on first use): one per app.
    pub schema: String,
    /// Longest a staged write waits for its writer's flush before a background thread
    /// commits it; zero: no background thread.
    pub flush_interval: Duration,
    /// Create the schema and its tables when missing (reading commands pass false: a
    /// mistyped schema is not an empty store).
    pub create: bool,
    /// How long an operation keeps retrying while the server cannot be reached before it
    /// fails with `StoreUnavailable`.
    pub unavailable: Duration,
}

/// A store in one schema of a PostgreSQL database (see the module docs).
pub struct PgStore {
    pool: Pool,
    sql: Sql,
    notices: Notices,
    options: PgOptions,
    pub(crate) commit: GroupCommit,
    commits: AtomicU64,
    me: OnceLock<Weak<PgStore>>,
    migration: Mutex<Option<Migration>>,
}

impl PgStore {
    /// Connect to the database `url` names and open the store in `options.schema`, creating
    /// or migrating its tables.
    pub fn open(url: &str, options: PgOptions) -> Result<Arc<PgStore>> {
        super::fork_gate::install();
        let schema = schema::check_name(&options.schema)?;
        let pool = Pool::new(url, options.unavailable)?;
        let sql = Sql::new(&schema);
        let migration = schema::migrate(&pool, &schema, options.create)?;
        let notices = Notices::new(pool.config().clone(), &schema);
        let store = Arc::new(PgStore {
            pool,
            sql,
            notices,
            options,
            commit: GroupCommit::default(),
            commits: AtomicU64::new(0),
            me: OnceLock::new(),
            migration: Mutex::new(migration),
        });
        store.me.get_or_init(|| Arc::downgrade(&store));
        Ok(store)
    }

    /// A forked child starts with an empty staging buffer and no connections: the writes
    /// staged by the parent and its sessions belong to the parent.
    fn check_fork(&self) {
        if self.pool.forked() {
            self.commit.reset_after_fork();
        }
    }

    fn start_ticker(&self) {
        let running = &self.commit.waiting.running;
        if running.load(Ordering::Relaxed) || self.options.flush_interval.is_zero() {
            return;
        }
        if let Some(me) = self.me.get() {
            ticker::ensure(me, &self.commit.waiting, self.options.flush_interval);
        }
    }
}

impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgresql"
    }

    fn location(&self) -> String {
        format!("{}?schema={}", self.pool.location(), self.options.schema)
    }

    fn staging(&self) -> Staging<'_> {
        self.check_fork();
        self.start_ticker();
        self.commit.staging()
    }

    fn flush(&self) -> Result<FlushReport> {
        self.check_fork();
        self.commit.flush(
            |ops| {
                let report = apply::commit(&self.pool, &self.sql, ops)?;
                self.commits.fetch_add(1, Ordering::Relaxed);
                Ok(report)
            },
            || Error::Postgres {
                location: self.location(),
                during: "committing",
                detail: "the commit panicked; nothing of it was stored".into(),
            },
        )
    }

    fn stale_fence(&self, fence: Fence) -> Option<u64> {
        self.commit.stale(fence)
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_fork();
        read::get(self, table, key)
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check_fork();
        read::scan(self, table, prefix)
    }

    fn journal(&self, invocation: &[u8; 16]) -> Result<Vec<Entry>> {
        self.check_fork();
        read::journal(self, invocation)
    }

    fn claim_many(
        &self,
        owner: &[u8],
        lease_ms: u64,
        _now_ms: u64,
        most: usize,
    ) -> Result<Vec<Claim>> {
        self.check_fork();
        queue::claim_many(&self.pool, &self.sql, owner, lease_ms, most)
    }

    fn claim_invocation(
        &self,
        invocation: &[u8; 16],
        owner: &[u8],
        lease_ms: u64,
        _now_ms: u64,
    ) -> Result<Option<Claim>> {
        self.check_fork();
        queue::claim(&self.pool, &self.sql, invocation, owner, lease_ms)
    }

    fn renew(&self, invocation: &[u8; 16], token: u64, lease_ms: u64, _now_ms: u64) -> Result<()> {
        self.check_fork();
        queue::renew(&self.pool, &self.sql, invocation, token, lease_ms)
    }

    fn release(&self, invocation: &[u8; 16], token: u64) -> Result<()> {
        self.check_fork();
        queue::release(&self.pool, &self.sql, invocation, token, false, 0)
    }

    fn defer(&self, invocation: &[u8; 16], token: u64, until_ms: u64) -> Result<()> {
        self.check_fork();
        queue::release(&self.pool, &self.sql, invocation, token, false, until_ms)
    }

    fn release_dead(&self, invocation: &[u8; 16], token: u64) -> Result<()> {
        self.check_fork();
        queue::release(&self.pool, &self.sql, invocation, token, true, 0)
    }

    fn lease(&self, invocation: &[u8; 16]) -> Result<Option<Lease>> {
        self.check_fork();
        queue::lease(&self.pool, &self.sql, invocation)
    }

    fn leases(&self) -> Result<Vec<([u8; 16], Lease)>> {
        self.check_fork();
        queue::leases(&self.pool, &self.sql)
    }

    fn queued(&self) -> Result<Vec<[u8; 16]>> {
        self.check_fork();
        queue::queued(&self.pool, &self.sql)
    }

    fn now_ms(&self) -> Result<u64> {
        self.check_fork();
        queue::now_ms(&self.pool, &self.sql)
    }

    fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn notice_ticket(&self) -> Option<u64> {
        self.notices.ticket()
    }

    fn wait_notice(&self, ticket: u64, invocation: Option<&[u8; 16]>, timeout: Duration) -> bool {
        self.notices.wait(ticket, invocation, timeout)
    }

    fn announce(&self, invocation: &[u8; 16]) {
        self.check_fork();
        queue::announce(&self.pool, &self.sql, invocation);
    }

    fn format_version(&self) -> Result<u32> {
        self.check_fork();
        schema::version(&self.pool, &self.sql)
    }

    fn take_migration(&self) -> Option<Migration> {
        self.migration
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn recovery_lock(&self) -> Result<RecoveryGuard> {
        self.check_fork();
        let session = self.pool.lock_session(&self.options.schema)?;
        Ok(Box::new(session))
    }

    fn owners_are_local(&self) -> bool {
        // Workers on other hosts share the database: only expiry tells that one died.
        false
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Writes staged but never flushed are committed on close rather than lost (a failure
        // here has no caller left to report to). A forked child has nothing of its own.
        if !self.pool.forked() {
            let _ = self.flush();
        }
    }
}
