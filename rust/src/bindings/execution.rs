//! `pynenc._core.Execution`: one running attempt of an invocation, with its Recorder.
//! Twin: `pynenc/workflow/context.py`, which gives it the `wf` API.

use std::borrow::Cow;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};

use super::errors::{to_pyerr, IntoPy};
use super::store::PyStore;
use super::{bytes16, scalar};
use crate::error::Error;
use crate::ids;
use crate::recorder::Recorder;
use crate::store::{Fence, Store, Table, MAX_KEY_LEN};
use crate::stream::u64_to_unit_f64;

#[pyclass(name = "Execution", module = "pynenc._core")]
pub struct PyExecution {
    recorder: Recorder,
    /// Where this attempt's journal lives (see `ids::journal_id`).
    journal_id: [u8; 16],
    store: Arc<Store>,
    workflow_id: String,
    fence: Option<Fence>,
    /// Replay of a finished invocation: nothing is ever staged or flushed.
    replay_only: bool,
    /// Where this workflow's data lives: its id as 16 bytes (the data key prefix).
    data_prefix: [u8; 16],
    /// Largest encoded payload accepted.
    max_payload_bytes: usize,
    /// Scratch buffer for data keys (see `data_key`).
    key_buf: Vec<u8>,
    /// The first divergence seen, kept so user code that swallows the exception cannot hide
    /// it: the runner re-raises it when the task returns (`check_divergence`).
    divergence: Option<(u64, String, String)>,
}

#[pymethods]
impl PyExecution {
    /// Load the journal of `invocation_id` and start an execution over it. With `fresh`, the
    /// caller knows no journal can exist yet (a child whose dispatch was recorded just now:
    /// causal order makes a child's entries durable only with that dispatch), and none is read.
    #[new]
    #[pyo3(signature = (store, invocation_id, workflow_id, attempt, replay_only = false, max_payload_bytes = 16 << 20, fresh = false))]
    fn new(
        store: &PyStore,
        invocation_id: &[u8],
        workflow_id: String,
        attempt: u32,
        replay_only: bool,
        max_payload_bytes: usize,
        fresh: bool,
    ) -> PyResult<Self> {
        let inv = bytes16("an invocation id", invocation_id)?;
        let data_prefix = ids::parse(&workflow_id).py_err()?;
        let store = Arc::clone(&store.inner);
        let journal_id = ids::journal_id(&inv, attempt);
        // A read never waits on a lock (LMDB readers are lock-free), so it keeps the GIL:
        // releasing it for microseconds would only make this thread queue to get it back.
        let journal = if fresh {
            Vec::new()
        } else {
            store.journal(&journal_id).py_err()?
        };
        let mut recorder = Recorder::new(workflow_id.clone(), inv, attempt, journal);
        if replay_only {
            recorder = recorder.strict();
        }
        Ok(PyExecution {
            recorder,
            journal_id,
            store,
            workflow_id,
            fence: None,
            replay_only,
            data_prefix,
            max_payload_bytes,
            key_buf: Vec::new(),
            divergence: None,
        })
    }

    /// A float in [0, 1) with 53 random bits.
    fn random(&mut self) -> PyResult<f64> {
        let r = self.recorder.random_u64();
        self.watch(r).map(u64_to_unit_f64)
    }

    /// A raw 64-bit draw of the random stream.
    fn random_u64(&mut self) -> PyResult<u64> {
        let r = self.recorder.random_u64();
        self.watch(r)
    }

    /// A version-4 UUID string.
    fn uuid(&mut self) -> PyResult<String> {
        let r = self.recorder.uuid();
        let bytes = self.watch(r)?;
        Ok(ids::format(&bytes))
    }

    /// A timezone-aware UTC datetime: the real clock when recording, the journal on replay.
    fn utc_now<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let r = self.recorder.time();
        let us = self.watch(r)?;
        datetime_from_us(py, us)
    }

    /// As `utc_now`, in microseconds since the epoch.
    fn utc_now_us(&mut self) -> PyResult<i64> {
        let r = self.recorder.time();
        self.watch(r)
    }

    /// The recorded outcome of side effect `name` as (bytes, failed): its value, or when
    /// `failed` the exception it raised; None when it must run now.
    fn side_effect_lookup<'py>(
        &mut self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, bool)>> {
        let r = self.recorder.side_effect(name);
        let found = self.watch(r)?;
        Ok(found.map(|(v, failed)| (PyBytes::new(py, &v), failed)))
    }

    /// Record a side effect's outcome: its encoded value, or (`failed`) its encoded error.
    fn side_effect_record(&mut self, name: &str, value: Vec<u8>, failed: bool) {
        self.recorder.record_side_effect(name, value, failed);
    }

    /// Dispatch of a child: (child invocation id, replayed).
    fn child<'py>(
        &mut self,
        py: Python<'py>,
        task_id: &str,
        args_digest: &[u8],
    ) -> PyResult<(Bound<'py, PyBytes>, bool)> {
        let r = self
            .recorder
            .child(task_id, bytes16("an arguments digest", args_digest)?);
        let (id, replayed) = self.watch(r)?;
        Ok((PyBytes::new(py, &id), replayed))
    }

    /// A data read: (replayed, value). When not replayed the caller reads the live value and
    /// calls `data_read_record`.
    fn data_read<'py>(
        &mut self,
        py: Python<'py>,
        key: &str,
    ) -> PyResult<(bool, Option<Bound<'py, PyBytes>>)> {
        let r = self.recorder.data_read(key);
        Ok(match self.watch(r)? {
            Some(v) => (true, v.map(|b| PyBytes::new(py, &b))),
            None => (false, None),
        })
    }

    #[pyo3(signature = (key, value))]
    fn data_read_record(&mut self, key: &str, value: Option<Vec<u8>>) {
        self.recorder.record_data_read(key, value);
    }

    /// A data write; True when replayed (already durable: do not write again).
    fn data_write(&mut self, key: &str, value_digest: &[u8]) -> PyResult<bool> {
        let r = self
            .recorder
            .data_write(key, bytes16("a value digest", value_digest)?);
        self.watch(r)
    }

    /// Write workflow data: recorded by digest; visible to this process at once, durable at
    /// the next flush. A replayed write is not written again (a newer value may exist).
    fn set_data(&mut self, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let data_key = self.data_key(key)?;
        let bytes = scalar::encode(
            value,
            || format!("workflow data '{key}'"),
            self.max_payload_bytes,
        )?;
        // Over the canonical form: a dict written in another key order is the same write.
        let form = crate::canonical::canonical(&bytes).unwrap_or(Cow::Borrowed(&bytes));
        let digest: [u8; 16] = blake3::hash(&form).as_bytes()[..16]
            .try_into()
            .expect("16 bytes");
        drop(form);
        let r = self.recorder.data_write(key, digest);
        if self.watch(r)? || self.replay_only {
            return Ok(());
        }
        // The journal entry and the value are staged together, the entry first: a flush by any
        // thread commits both or neither.
        let mut staging = self.store.staging();
        let (journal_id, fence) = (self.journal_id, self.fence);
        self.recorder.drain_new(|first, entries| {
            staging.journal(journal_id, first, entries, fence);
        });
        staging.put(Table::Data, &data_key, bytes, fence);
        drop(staging);
        self.key_buf = data_key;
        Ok(())
    }

    /// Read workflow data (the live value, recorded; the recorded value on replay), or
    /// `default` when absent.
    #[pyo3(signature = (key, default = None))]
    fn get_data<'py>(
        &mut self,
        py: Python<'py>,
        key: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = self.recorder.data_read(key);
        let decode = |data: &Option<Vec<u8>>| match data {
            Some(bytes) => scalar::decode(py, bytes, || format!("workflow data '{key}'")),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        };
        match self.watch(r)? {
            Some(recorded) => decode(&recorded),
            None => {
                let data_key = self.data_key(key)?;
                let live = self.store.get(Table::Data, &data_key).py_err();
                self.key_buf = data_key;
                let live = live?;
                let value = decode(&live)?;
                self.recorder.record_data_read(key, live);
                Ok(value)
            }
        }
    }

    /// Hand the new entries to the store's ordered pending buffer (no I/O).
    fn stage(&mut self) {
        self.stage_entries();
    }

    /// Stage, then make everything pending in this process durable (group commit).
    fn flush(&mut self, py: Python<'_>) -> PyResult<()> {
        self.stage_entries();
        if self.replay_only {
            return Ok(());
        }
        let store = Arc::clone(&self.store);
        // The commit waits on fsync and on other threads' commits: release the GIL.
        py.detach(|| store.flush()).py_err()?;
        self.recorder.mark_durable();
        // Another thread's flush may have committed (and rejected) this execution's writes,
        // so ask the store rather than this flush's report.
        if let Some(own) = self.fence {
            if let Some(current) = store.stale_fence(own) {
                return Err(to_pyerr(Error::StaleLease {
                    invocation_id: ids::format(&own.invocation),
                    token: own.token,
                    current,
                }));
            }
        }
        Ok(())
    }

    /// Check that the code consumed every recorded entry (it returned having done no less than
    /// it recorded).
    fn finish(&mut self) -> PyResult<()> {
        let r = self.recorder.finish();
        self.watch(r)
    }

    /// Raise the first divergence seen during this execution, if any (even if user code caught
    /// and swallowed it).
    fn check_divergence(&self) -> PyResult<()> {
        match &self.divergence {
            None => Ok(()),
            Some((position, recorded, requested)) => Err(to_pyerr(Error::NonDeterminism {
                workflow_id: self.workflow_id.clone(),
                invocation_id: ids::format(self.recorder.invocation_id()),
                position: *position,
                recorded: recorded.clone(),
                requested: requested.clone(),
            })),
        }
    }

    /// Fence every later write of this execution with a lease token.
    fn set_fence(&mut self, token: u64) {
        self.fence = Some(Fence {
            invocation: *self.recorder.invocation_id(),
            token,
        });
    }

    #[getter]
    fn position(&self) -> u64 {
        self.recorder.position()
    }
    #[getter]
    fn replaying(&self) -> bool {
        self.recorder.replaying()
    }
    #[getter]
    fn recorded_len(&self) -> usize {
        self.recorder.recorded_len()
    }
    #[getter]
    fn volatile_pending(&self) -> bool {
        self.recorder.volatile_pending()
    }
    #[getter]
    fn attempt(&self) -> u32 {
        self.recorder.attempt()
    }
    #[getter]
    fn workflow_id(&self) -> &str {
        &self.workflow_id
    }
    #[getter]
    fn invocation_id<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.recorder.invocation_id())
    }
}

impl PyExecution {
    /// The store key of workflow data `key` (workflow id ‖ key), built in a buffer this
    /// execution reuses: hand it back with `self.key_buf = key` when done.
    fn data_key(&mut self, key: &str) -> PyResult<Vec<u8>> {
        if 16 + key.len() > MAX_KEY_LEN {
            return Err(to_pyerr(Error::InvalidArgument(format!(
                "workflow data key is {} bytes, the longest accepted is {}",
                key.len(),
                MAX_KEY_LEN - 16
            ))));
        }
        let mut k = std::mem::take(&mut self.key_buf);
        k.clear();
        k.extend_from_slice(&self.data_prefix);
        k.extend_from_slice(key.as_bytes());
        Ok(k)
    }

    /// Convert a recorder result, remembering the first divergence.
    #[inline(always)]
    fn watch<T>(&mut self, r: crate::error::Result<T>) -> PyResult<T> {
        if let Err(Error::NonDeterminism {
            position,
            recorded,
            requested,
            ..
        }) = &r
        {
            if self.divergence.is_none() {
                self.divergence = Some((*position, recorded.clone(), requested.clone()));
            }
        }
        r.py_err()
    }

    /// Hand the new entries to the store's staging buffer (no I/O).
    fn stage_entries(&mut self) {
        if self.replay_only || self.recorder.pending_len() == 0 {
            return;
        }
        let mut staging = self.store.staging();
        let (journal_id, fence) = (self.journal_id, self.fence);
        self.recorder.drain_new(|first, entries| {
            staging.journal(journal_id, first, entries, fence);
        });
    }
}

static DATETIME: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

/// Build `datetime(..., tzinfo=timezone.utc)` from µs since the epoch (the datetime C API is not
/// part of the stable ABI, so the class is called with the civil fields computed here).
fn datetime_from_us(py: Python<'_>, us: i64) -> PyResult<Bound<'_, PyAny>> {
    let (cls, utc) = DATETIME.get_or_try_init(py, || -> PyResult<_> {
        let m = py.import("datetime")?;
        let utc = m.getattr("timezone")?.getattr("utc")?;
        Ok((m.getattr("datetime")?.unbind(), utc.unbind()))
    })?;
    let c = crate::clock::Civil::from_us(us);
    let args = PyTuple::new(
        py,
        [
            c.year.into_pyobject(py)?.into_any(),
            c.month.into_pyobject(py)?.into_any(),
            c.day.into_pyobject(py)?.into_any(),
            c.hour.into_pyobject(py)?.into_any(),
            c.minute.into_pyobject(py)?.into_any(),
            c.second.into_pyobject(py)?.into_any(),
            c.microsecond.into_pyobject(py)?.into_any(),
            utc.bind(py).clone(),
        ],
    )?;
    cls.bind(py).call1(args)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyExecution>()?;
    Ok(())
}
