//! `pynenc._core.Store`: a store (LMDB or PostgreSQL), seen from Python through the store
//! contract. Twins: `pynenc/store/lmdb.py`, `pynenc/store/postgres.py`.
//!
//! Arguments are extracted and validated first (ids are 16-byte `bytes`, keys 1..=510 bytes,
//! a fence is `(invocation id, token)`); every call that commits or may block on LMDB's write
//! lock runs with the GIL released. Point reads keep it: LMDB readers never wait on a lock, and
//! releasing the GIL for microseconds only makes the thread queue to take it back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use super::errors::IntoPy;
use super::lease::{PyClaim, PyLease};
use super::raw_entry::{entry_from_raw, op_tuple, raw_payload};
use crate::error::Error;
use crate::store::postgres::{PgOptions, PgStore};
use crate::store::{Fence, LmdbStore, Store, StoreOptions, Table, WriteOp, MAX_KEY_LEN};

#[pyclass(name = "Store", module = "pynenc._core", frozen)]
pub struct PyStore {
    pub inner: Arc<dyn Store>,
    /// The same store when it is the embedded one (for what only LMDB has: its path).
    lmdb: Option<Arc<LmdbStore>>,
}

/// A held recovery lock (`Store.recovery_lock`).
#[pyclass(name = "RecoveryLock", module = "pynenc._core", frozen)]
pub struct PyRecoveryLock {
    guard: std::sync::Mutex<Option<crate::store::RecoveryGuard>>,
}

#[pymethods]
impl PyRecoveryLock {
    /// Release the lock (again: nothing).
    fn release(&self) {
        let guard = self
            .guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(guard);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.release();
        false
    }
}

type Rejected<'py> = (Bound<'py, PyBytes>, u64, u64);

#[pymethods]
impl PyStore {
    #[new]
    #[pyo3(signature = (path, sync = true, map_size = 1 << 30, max_readers = 512, flush_interval_ms = 5))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        sync: bool,
        map_size: usize,
        max_readers: u32,
        flush_interval_ms: u64,
    ) -> PyResult<Self> {
        let options = StoreOptions {
            sync,
            map_size,
            max_readers,
            flush_interval: Duration::from_millis(flush_interval_ms),
        };
        // Opening may create files and run a write transaction: don't hold the GIL.
        let lmdb = py.detach(|| LmdbStore::open(&path, options)).py_err()?;
        Ok(PyStore {
            inner: lmdb.clone(),
            lmdb: Some(lmdb),
        })
    }

    /// Open (creating its schema and tables on first use, migrating them when older) the
    /// PostgreSQL store in `schema` of the database `url` names.
    #[staticmethod]
    #[pyo3(signature = (url, schema = "pynenc", flush_interval_ms = 5, unavailable_seconds = 30.0, create = true))]
    fn postgres(
        py: Python<'_>,
        url: &str,
        schema: &str,
        flush_interval_ms: u64,
        unavailable_seconds: f64,
        create: bool,
    ) -> PyResult<Self> {
        let unavailable = Duration::try_from_secs_f64(unavailable_seconds).map_err(|e| {
            invalid(format!(
                "store_unavailable_seconds must be a non-negative number, not {unavailable_seconds}: {e}"
            ))
        })?;
        let options = PgOptions {
            schema: schema.to_owned(),
            flush_interval: Duration::from_millis(flush_interval_ms),
            create,
            unavailable,
        };
        let inner = py.detach(|| PgStore::open(url, options)).py_err()?;
        Ok(PyStore { inner, lmdb: None })
    }

    /// The kind of store: "lmdb" or "postgresql".
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    /// Where the store lives, as a URL: `lmdb://` and its canonical directory, or its
    /// PostgreSQL URL without the password.
    fn location(&self) -> String {
        self.inner.location()
    }

    /// The canonical path of the store directory (LMDB), or None.
    fn path(&self) -> Option<PathBuf> {
        self.lmdb.as_ref().map(|s| s.path().to_path_buf())
    }

    /// The store's clock in ms since the epoch: the one its leases are judged by (the
    /// database's on PostgreSQL).
    fn now_ms(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.inner.now_ms()).py_err()
    }

    /// Wait for and take the store's recovery lock (shared by every process using the
    /// store); it is held until `release()` or the end of a `with` block.
    fn recovery_lock(&self, py: Python<'_>) -> PyResult<PyRecoveryLock> {
        let guard = py.detach(|| self.inner.recovery_lock()).py_err()?;
        Ok(PyRecoveryLock {
            guard: std::sync::Mutex::new(Some(guard)),
        })
    }

    /// Whether a lease owner's liveness may be judged on this machine (every process using
    /// the store runs here); otherwise only lease expiry frees an invocation.
    fn owners_are_local(&self) -> bool {
        self.inner.owners_are_local()
    }

    fn get<'py>(
        &self,
        py: Python<'py>,
        table: &str,
        key: &[u8],
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let table = parse_table(table)?;
        let value = self.inner.get(table, key).py_err()?;
        Ok(value.map(|v| PyBytes::new(py, &v)))
    }

    #[pyo3(signature = (table, key, value, fence = None))]
    fn put(
        &self,
        table: &str,
        key: &[u8],
        value: &[u8],
        fence: Option<(Vec<u8>, u64)>,
    ) -> PyResult<()> {
        let op = WriteOp::Put {
            table: parse_table(table)?,
            key: check_key(key)?,
            value: value.to_vec(),
            fence: parse_fence(fence)?,
        };
        self.inner.stage(op);
        Ok(())
    }

    #[pyo3(signature = (table, key, fence = None))]
    fn delete(&self, table: &str, key: &[u8], fence: Option<(Vec<u8>, u64)>) -> PyResult<()> {
        let op = WriteOp::Delete {
            table: parse_table(table)?,
            key: check_key(key)?,
            fence: parse_fence(fence)?,
        };
        self.inner.stage(op);
        Ok(())
    }

    fn scan<'py>(
        &self,
        py: Python<'py>,
        table: &str,
        prefix: &[u8],
    ) -> PyResult<Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
        let table = parse_table(table)?;
        let rows = py.detach(|| self.inner.scan(table, prefix)).py_err()?;
        Ok(rows
            .iter()
            .map(|(k, v)| (PyBytes::new(py, k), PyBytes::new(py, v)))
            .collect())
    }

    #[pyo3(signature = (invocation, fence = None))]
    fn enqueue(&self, invocation: &[u8], fence: Option<(Vec<u8>, u64)>) -> PyResult<()> {
        self.inner.stage(WriteOp::Enqueue {
            invocation: parse_id(invocation)?,
            fence: parse_fence(fence)?,
        });
        Ok(())
    }

    /// Stage the completion of a queued invocation: off the queue, its lease dropped. With
    /// `notice` (a store with change notices), waiters elsewhere are told; pass False when the
    /// only one waiting on it is the caller.
    #[pyo3(signature = (invocation, fence = None, notice = true))]
    fn complete(
        &self,
        invocation: &[u8],
        fence: Option<(Vec<u8>, u64)>,
        notice: bool,
    ) -> PyResult<()> {
        let op = WriteOp::Complete {
            invocation: parse_id(invocation)?,
            fence: parse_fence(fence)?,
            notice,
        };
        self.inner.stage(op);
        Ok(())
    }

    /// Stage the delete of a whole journal, by its journal id (`journal_id(invocation,
    /// attempt)`): every entry of it. Reads see it empty at once; gone once flushed.
    #[pyo3(signature = (journal, fence = None))]
    fn delete_journal(&self, journal: &[u8], fence: Option<(Vec<u8>, u64)>) -> PyResult<()> {
        let op = WriteOp::DeleteJournal {
            journal: super::bytes16("a journal id", journal)?,
            fence: parse_fence(fence)?,
        };
        self.inner.stage(op);
        Ok(())
    }

    /// Stage deletes in one piece, in this order: whole journals (by journal id), keys of the
    /// `data` table, keys of the `invocations` table. Staged together, no background commit
    /// takes a part of them: the next commit holds them all. Every id and key is checked
    /// before anything is staged.
    #[pyo3(signature = (journals = Vec::new(), data = Vec::new(), invocations = Vec::new()))]
    fn delete_many(
        &self,
        journals: Vec<Vec<u8>>,
        data: Vec<Vec<u8>>,
        invocations: Vec<Vec<u8>>,
    ) -> PyResult<()> {
        let journals = journals
            .iter()
            .map(|j| super::bytes16("a journal id", j))
            .collect::<PyResult<Vec<_>>>()?;
        let keys = |keys: Vec<Vec<u8>>, table: Table| -> PyResult<Vec<WriteOp>> {
            keys.iter()
                .map(|k| {
                    Ok(WriteOp::Delete {
                        table,
                        key: check_key(k)?,
                        fence: None,
                    })
                })
                .collect()
        };
        let data = keys(data, Table::Data)?;
        let invocations = keys(invocations, Table::Invocations)?;
        let mut staging = self.inner.staging();
        for journal in journals {
            staging.push(WriteOp::DeleteJournal {
                journal,
                fence: None,
            });
        }
        for op in data.into_iter().chain(invocations) {
            staging.push(op);
        }
        Ok(())
    }

    /// Commit everything staged; returns the rejected fenced writes as
    /// `(invocation, token carried, current token)`.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Vec<Rejected<'py>>> {
        // The commit waits for LMDB's write lock and an fsync: let other threads run.
        let report = py.detach(|| self.inner.flush()).py_err()?;
        Ok(report
            .rejected
            .iter()
            .map(|(fence, current)| (PyBytes::new(py, &fence.invocation), fence.token, *current))
            .collect())
    }

    fn journal_len(&self, invocation: &[u8]) -> PyResult<usize> {
        let invocation = parse_id(invocation)?;
        self.inner.journal(&invocation).map(|e| e.len()).py_err()
    }

    /// The journal of an invocation as `(kind, raw payload)` pairs (for debugging and tests).
    fn journal_entries<'py>(
        &self,
        py: Python<'py>,
        invocation: &[u8],
    ) -> PyResult<Vec<(u8, Bound<'py, PyBytes>)>> {
        let invocation = parse_id(invocation)?;
        let entries = self.inner.journal(&invocation).py_err()?;
        Ok(entries
            .iter()
            .map(|e| (e.op.kind(), PyBytes::new(py, &raw_payload(e))))
            .collect())
    }

    /// The journal of one attempt's journal id as `(operation, *values)` tuples:
    /// `("random", float)`, `("uuid", str)`, `("utc_now", µs)`, `("side_effect", name, bytes, failed)`,
    /// `("execute_task", task_id, child id, args digest)`, `("get_data", key, bytes | None)`,
    /// `("set_data", key, value digest)`, `("patch", change id)`.
    fn journal_ops<'py>(
        &self,
        py: Python<'py>,
        invocation: &[u8],
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let invocation = parse_id(invocation)?;
        let entries = self.inner.journal(&invocation).py_err()?;
        entries.iter().map(|e| op_tuple(py, &e.op)).collect()
    }

    /// The call site of each journal entry of `invocation`, in order: `(file, line,
    /// function)`, the function `""` when not recorded; None for an entry without one.
    fn journal_sites(&self, invocation: &[u8]) -> PyResult<Vec<Option<(String, u32, String)>>> {
        let invocation = parse_id(invocation)?;
        let entries = self.inner.journal(&invocation).py_err()?;
        Ok(entries
            .iter()
            .map(|e| {
                e.call_site
                    .as_deref()
                    .map(|s| (s.code.file.to_string(), s.line, s.code.function.to_string()))
            })
            .collect())
    }

    /// Claim the next claimable invocation (a `Claim`), or `None`.
    fn claim<'py>(
        &self,
        py: Python<'py>,
        owner: &[u8],
        lease_ms: u64,
        now_ms: u64,
    ) -> PyResult<Option<PyClaim>> {
        // A claim is its own synced commit.
        let claim = py
            .detach(|| self.inner.claim(owner, lease_ms, now_ms))
            .py_err()?;
        Ok(claim.as_ref().map(PyClaim::new))
    }

    /// Claim up to `most` claimable invocations (`Claim`s, in queue order; fewer or none when
    /// fewer are claimable) in one commit.
    fn claim_many(
        &self,
        py: Python<'_>,
        owner: &[u8],
        lease_ms: u64,
        now_ms: u64,
        most: usize,
    ) -> PyResult<Vec<PyClaim>> {
        // One synced commit for all of them.
        let claims = py
            .detach(|| self.inner.claim_many(owner, lease_ms, now_ms, most))
            .py_err()?;
        Ok(claims.iter().map(PyClaim::new).collect())
    }

    /// Claim this invocation if it is queued and has no live lease.
    fn claim_invocation<'py>(
        &self,
        py: Python<'py>,
        invocation: &[u8],
        owner: &[u8],
        lease_ms: u64,
        now_ms: u64,
    ) -> PyResult<Option<PyClaim>> {
        let inv = parse_id(invocation)?;
        // A claim is its own synced commit.
        let claim = py
            .detach(|| self.inner.claim_invocation(&inv, owner, lease_ms, now_ms))
            .py_err()?;
        Ok(claim.as_ref().map(PyClaim::new))
    }

    fn renew(
        &self,
        py: Python<'_>,
        invocation: &[u8],
        token: u64,
        lease_ms: u64,
        now_ms: u64,
    ) -> PyResult<()> {
        let invocation = parse_id(invocation)?;
        // A renewal is its own synced commit.
        py.detach(|| self.inner.renew(&invocation, token, lease_ms, now_ms))
            .py_err()
    }

    fn release(&self, py: Python<'_>, invocation: &[u8], token: u64) -> PyResult<()> {
        let invocation = parse_id(invocation)?;
        // A release is its own synced commit.
        py.detach(|| self.inner.release(&invocation, token))
            .py_err()
    }

    /// Release a lease, leaving the invocation unclaimable until `until_ms` (not a takeover).
    fn defer(&self, py: Python<'_>, invocation: &[u8], token: u64, until_ms: u64) -> PyResult<()> {
        let invocation = parse_id(invocation)?;
        // A release is its own synced commit.
        py.detach(|| self.inner.defer(&invocation, token, until_ms))
            .py_err()
    }

    /// Release the lease of a holder known to be dead: the next claim is a takeover.
    fn release_dead(&self, py: Python<'_>, invocation: &[u8], token: u64) -> PyResult<()> {
        let invocation = parse_id(invocation)?;
        // A release is its own synced commit.
        py.detach(|| self.inner.release_dead(&invocation, token))
            .py_err()
    }

    /// The lease of an invocation (a `Lease`), or `None`.
    fn lease(&self, invocation: &[u8]) -> PyResult<Option<PyLease>> {
        let invocation = parse_id(invocation)?;
        let lease = self.inner.lease(&invocation).py_err()?;
        Ok(lease.map(|l| PyLease::new(&invocation, &l)))
    }

    /// Every lease held by an owner, by invocation id.
    fn leases(&self) -> PyResult<Vec<PyLease>> {
        let leases = self.inner.leases().py_err()?;
        Ok(leases.iter().map(|(inv, l)| PyLease::new(inv, l)).collect())
    }

    /// Invocations in the queue, in claim order.
    fn queued<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let queued = self.inner.queued().py_err()?;
        Ok(queued.iter().map(|inv| PyBytes::new(py, inv)).collect())
    }

    /// A ticket for `wait_notice`, taken before looking at the store; None when the store
    /// sends no change notices, or cannot hear them now (then poll).
    fn notice_ticket(&self, py: Python<'_>) -> Option<u64> {
        // The first ticket opens the listening connection.
        py.detach(|| self.inner.notice_ticket())
    }

    /// Wait until work is enqueued (no `invocation`) or `invocation` finished after `ticket`
    /// was taken, or `timeout` seconds pass: True when a notice says so. A hint only: look
    /// at the store again either way. Without notices, it sleeps for `timeout`.
    #[pyo3(signature = (ticket, timeout, invocation = None))]
    fn wait_notice(
        &self,
        py: Python<'_>,
        ticket: u64,
        timeout: f64,
        invocation: Option<&[u8]>,
    ) -> PyResult<bool> {
        let invocation = invocation.map(parse_id).transpose()?;
        let timeout = Duration::try_from_secs_f64(timeout).map_err(|e| {
            invalid(format!(
                "timeout must be a non-negative number of seconds, not {timeout}: {e}"
            ))
        })?;
        Ok(py.detach(|| self.inner.wait_notice(ticket, invocation.as_ref(), timeout)))
    }

    /// Tell waiters on `invocation` (`wait_notice(..., invocation)`, in any process) that
    /// something they wait for changed: call it once the change is committed. A hint; nothing
    /// on a store without notices.
    fn announce(&self, py: Python<'_>, invocation: &[u8]) -> PyResult<()> {
        let invocation = parse_id(invocation)?;
        py.detach(|| self.inner.announce(&invocation));
        Ok(())
    }

    /// Number of write transactions flushes of this store committed in this process.
    fn commit_count(&self) -> u64 {
        self.inner.commit_count()
    }

    /// The on-disk format version recorded in the store.
    fn format_version(&self) -> PyResult<u32> {
        self.inner.format_version().py_err()
    }

    /// `(from, to, seconds)` once if opening this store migrated it from an older format, else
    /// None (and None on every later call).
    fn take_migration(&self) -> Option<(u32, u32, f64)> {
        self.inner
            .take_migration()
            .map(|m| (m.from, m.to, m.took.as_secs_f64()))
    }

    /// Private, for tests and tools: stage journal entries given as `(kind, raw payload)` or
    /// `(kind, raw payload, (file, line) | (file, line, function) | None)`, validated by
    /// decoding them.
    fn _append_journal(
        &self,
        invocation: &[u8],
        first_position: u64,
        entries: Vec<Bound<'_, PyTuple>>,
    ) -> PyResult<()> {
        let invocation = parse_id(invocation)?;
        let mut parsed = Vec::with_capacity(entries.len());
        for (i, item) in entries.iter().enumerate() {
            let kind: u8 = item.get_item(0)?.extract()?;
            let payload: Vec<u8> = item.get_item(1)?.extract()?;
            let call_site: Option<(String, u32, Option<String>)> = match item.get_item(2) {
                Ok(site) if site.is_none() => None,
                Ok(site) if site.len()? == 3 => Some(site.extract()?),
                Ok(site) => {
                    let (file, line): (String, u32) = site.extract()?;
                    Some((file, line, None))
                }
                Err(_) => None,
            };
            parsed.push(entry_from_raw(
                kind,
                &payload,
                call_site,
                first_position + i as u64,
            )?);
        }
        self.inner.stage(WriteOp::Journal {
            invocation,
            first_position,
            entries: parsed,
            fence: None,
        });
        Ok(())
    }

    /// Private, for tests: hold a read transaction open for `seconds` (a process killed
    /// meanwhile leaves a stale reader slot behind).
    fn _hold_read_txn(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        let pause = Duration::try_from_secs_f64(seconds)
            .map_err(|e| invalid(format!("cannot wait {seconds} seconds: {e}")))?;
        // Sleeping: let other threads run.
        let store = self
            .lmdb
            .as_ref()
            .ok_or_else(|| invalid("only an LMDB store has read transactions".into()))?;
        py.detach(|| {
            store.read("holding a read transaction", |_, _| {
                std::thread::sleep(pause);
                Ok(())
            })
        })
        .py_err()
    }
}

pub(super) fn invalid(message: String) -> PyErr {
    super::errors::to_pyerr(Error::InvalidArgument(message))
}

fn parse_table(name: &str) -> PyResult<Table> {
    match name {
        "invocations" => Ok(Table::Invocations),
        "data" => Ok(Table::Data),
        other => Err(invalid(format!(
            "unknown table {other:?}: expected \"invocations\" or \"data\""
        ))),
    }
}

/// A claim as Python sees it: `(invocation, token, expires_ms, taken_over)`.
fn parse_id(bytes: &[u8]) -> PyResult<[u8; 16]> {
    super::bytes16("an invocation id", bytes)
}

fn parse_fence(fence: Option<(Vec<u8>, u64)>) -> PyResult<Option<Fence>> {
    fence
        .map(|(inv, token)| {
            Ok(Fence {
                invocation: parse_id(&inv)?,
                token,
            })
        })
        .transpose()
}

fn check_key(key: &[u8]) -> PyResult<Vec<u8>> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(invalid(format!(
            "a key is 1 to {MAX_KEY_LEN} bytes, got {}",
            key.len()
        )));
    }
    Ok(key.to_vec())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStore>()?;
    m.add_class::<PyRecoveryLock>()?;
    m.add("STORE_FORMAT_VERSION", crate::store::FORMAT_VERSION)?;
    m.add("MAX_KEY_LEN", MAX_KEY_LEN)?;
    Ok(())
}
