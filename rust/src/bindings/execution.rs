//! `pynenc._core.Execution`: one running attempt of an invocation, with its Recorder.
//! Twin: `pynenc/workflow/context.py`, which gives it the `wf` API.

use std::borrow::Cow;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyString, PyTuple};

use super::errors::{class, to_pyerr, IntoPy};
use super::store::PyStore;
use super::{bytes16, scalar, site};
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
    store: Arc<dyn Store>,
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
    /// The engine error (a divergence, a failed store operation) or interruption that ended
    /// this attempt, kept so user code that swallows it cannot hide it: every later operation
    /// raises it again and records nothing, and the runner re-raises it when the task returns
    /// (`check_fault`).
    fault: Option<Py<PyAny>>,
    /// The side effect whose function is running now: operations are refused meanwhile.
    inside: Option<String>,
    /// The first refusal of an operation called inside that function (`exit_side_effect`).
    nested: Option<Py<PyAny>>,
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
            fault: None,
            inside: None,
            nested: None,
        })
    }

    /// A float in [0, 1) with 53 random bits.
    fn random(&mut self, py: Python<'_>) -> PyResult<f64> {
        self.draw(py, "random").map(u64_to_unit_f64)
    }

    /// A raw 64-bit draw of the random stream.
    fn random_u64(&mut self, py: Python<'_>) -> PyResult<u64> {
        self.draw(py, "rng")
    }

    /// A version-4 UUID string.
    fn uuid(&mut self, py: Python<'_>) -> PyResult<String> {
        self.usable("uuid")?;
        let before = self.recorder.pending_len();
        let r = self.recorder.uuid();
        let bytes = self.watch(r)?;
        if self.recorder.pending_len() > before {
            self.locate(py);
        }
        Ok(ids::format(&bytes))
    }

    /// A timezone-aware UTC datetime: the real clock when recording, the journal on replay.
    fn utc_now<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let us = self.utc_now_us(py)?;
        datetime_from_us(py, us)
    }

    /// As `utc_now`, in microseconds since the epoch.
    fn utc_now_us(&mut self, py: Python<'_>) -> PyResult<i64> {
        self.usable("utc_now")?;
        let before = self.recorder.pending_len();
        let r = self.recorder.time();
        let us = self.watch(r)?;
        if self.recorder.pending_len() > before {
            self.locate(py);
        }
        Ok(us)
    }

    /// The recorded outcome of side effect `name` as (bytes, failed): its value, or when
    /// `failed` the exception it raised; None when it must run now.
    fn side_effect_lookup<'py>(
        &mut self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, bool)>> {
        self.usable("side_effect")?;
        let name = text("a side effect's name", name)?;
        let r = self.recorder.side_effect(name);
        let found = self.watch(r)?;
        Ok(found.map(|(v, failed)| (PyBytes::new(py, &v), failed)))
    }

    /// Record a side effect's outcome: its encoded value, or (`failed`) its encoded error.
    fn side_effect_record(&mut self, py: Python<'_>, name: &str, value: Vec<u8>, failed: bool) {
        self.recorder.record_side_effect(name, value, failed);
        self.locate(py);
    }

    /// Dispatch of a child: (child invocation id, replayed).
    fn child<'py>(
        &mut self,
        py: Python<'py>,
        task_id: &str,
        args_digest: &[u8],
    ) -> PyResult<(Bound<'py, PyBytes>, bool)> {
        self.usable("execute_task")?;
        let r = self
            .recorder
            .child(task_id, bytes16("an arguments digest", args_digest)?);
        let (id, replayed) = self.watch(r)?;
        if !replayed {
            self.locate(py);
        }
        Ok((PyBytes::new(py, &id), replayed))
    }

    /// A data read: (replayed, value). When not replayed the caller reads the live value and
    /// calls `data_read_record`.
    fn data_read<'py>(
        &mut self,
        py: Python<'py>,
        key: &str,
    ) -> PyResult<(bool, Option<Bound<'py, PyBytes>>)> {
        self.usable("get_data")?;
        let r = self.recorder.data_read(key);
        Ok(match self.watch(r)? {
            Some(v) => (true, v.map(|b| PyBytes::new(py, &b))),
            None => (false, None),
        })
    }

    #[pyo3(signature = (key, value))]
    fn data_read_record(&mut self, py: Python<'_>, key: &str, value: Option<Vec<u8>>) {
        self.recorder.record_data_read(key, value);
        self.locate(py);
    }

    /// A data write; True when replayed (already durable: do not write again).
    fn data_write(&mut self, py: Python<'_>, key: &str, value_digest: &[u8]) -> PyResult<bool> {
        self.usable("set_data")?;
        let r = self
            .recorder
            .data_write(key, bytes16("a value digest", value_digest)?);
        let replayed = self.watch(r)?;
        if !replayed && !self.replay_only {
            self.locate(py);
        }
        Ok(replayed)
    }

    /// Write workflow data: recorded by digest; visible to this process at once, durable at
    /// the next flush. A replayed write is not written again (a newer value may exist).
    fn set_data(
        &mut self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.usable("set_data")?;
        let key = text(DATA_KEY, key)?;
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
        self.locate(py);
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
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.usable("get_data")?;
        let key = text(DATA_KEY, key)?;
        let r = self.recorder.data_read(key);
        let decode = |data: &Option<Vec<u8>>| match data {
            Some(bytes) => scalar::decode(py, bytes, || format!("workflow data '{key}'")),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        };
        match self.watch(r)? {
            Some(recorded) => decode(&recorded),
            None => {
                let data_key = self.data_key(key)?;
                let live = self.store.get(Table::Data, &data_key);
                self.key_buf = data_key;
                let live = self.engine(live)?;
                let value = decode(&live)?;
                self.recorder.record_data_read(key, live);
                self.locate(py);
                Ok(value)
            }
        }
    }

    /// `wf.patched(change_id)`: True when this run takes the new branch of the change (its
    /// marker is recorded, or replayed), False over a run recorded before it.
    fn patched(&mut self, change_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.usable("patched")?;
        let id = change_id_text(change_id)?;
        Ok(self.recorder.patched(id))
    }

    /// `wf.deprecate_patch(change_id)`: skip the change's marker if it is recorded here.
    fn deprecate_patch(&mut self, change_id: &Bound<'_, PyAny>) -> PyResult<()> {
        self.usable("deprecate_patch")?;
        let id = change_id_text(change_id)?;
        self.recorder.deprecate_patch(id);
        Ok(())
    }

    /// Hand the new entries to the store's ordered pending buffer (no I/O).
    fn stage(&mut self) {
        self.stage_entries();
    }

    /// Stage, then make everything pending in this process durable (group commit).
    fn flush(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.fault.is_some() {
            return Err(self.refusal(py, "flush"));
        }
        self.stage_entries();
        if self.replay_only {
            return Ok(());
        }
        let store = Arc::clone(&self.store);
        // The commit waits on fsync and on other threads' commits: release the GIL.
        let flushed = py.detach(|| store.flush());
        self.engine(flushed)?;
        self.recorder.mark_durable();
        // Another thread's flush may have committed (and rejected) this execution's writes,
        // so ask the store rather than this flush's report.
        if let Some(own) = self.fence {
            if let Some(current) = store.stale_fence(own) {
                return self.engine(Err(Error::StaleLease {
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

    /// Raise the fault that ended this attempt, if any (even if user code caught and
    /// swallowed it): a divergence, a failed store operation, an interruption.
    fn check_fault(&self, py: Python<'_>) -> PyResult<()> {
        match &self.fault {
            None => Ok(()),
            Some(exc) => Err(PyErr::from_value(exc.bind(py).clone())),
        }
    }

    /// Describe the divergence just raised at `position` anew (the runner words a child's
    /// arguments decoded, which takes Python), so `check_fault` and every later operation
    /// raise it in these words too; returns the error to raise.
    fn reword_divergence(
        &mut self,
        py: Python<'_>,
        position: u64,
        reworded: Bound<'_, PyAny>,
    ) -> PyResult<PyErr> {
        if let Some(kept) = &self.fault {
            let kept = kept.bind(py);
            if kept.is_instance(&class(py, "NonDeterminismError")?)?
                && kept.getattr("position")?.extract::<u64>()? == position
            {
                self.fault = Some(reworded.clone().unbind());
            }
        }
        Ok(PyErr::from_value(reworded))
    }

    /// The fault that ended this attempt, or None.
    #[getter]
    fn fault(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.fault.as_ref().map(|e| e.clone_ref(py))
    }

    /// End this attempt with `exc` (an engine error, or an interruption raised where the
    /// engine was mid-way): every later operation raises it again and records nothing. The
    /// first fault is kept.
    fn fail(&mut self, exc: Bound<'_, PyAny>) -> PyResult<()> {
        self.set_fault(exc)
    }

    /// Raise the fault, or the refusal of `op` inside a side effect's function, if either
    /// applies (for operations written in Python).
    fn guard(&mut self, op: &str) -> PyResult<()> {
        self.usable(op)
    }

    /// The function of side effect `name` runs now: refuse every operation until
    /// `exit_side_effect`.
    fn enter_side_effect(&mut self, name: String) {
        self.inside = Some(name);
        self.nested = None;
    }

    /// The function has returned: the refusal it met, if it called an operation.
    fn exit_side_effect(&mut self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inside = None;
        self.nested.take().map(|e| e.clone_ref(py))
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

    /// Convert a recorder result; a divergence ends the attempt (see `engine`).
    #[inline(always)]
    fn watch<T>(&mut self, r: crate::error::Result<T>) -> PyResult<T> {
        self.engine(r)
    }

    /// Convert a core result. Any error but a bad argument (which records nothing and leaves
    /// the execution as it was) is a fault of the engine: it ends the attempt.
    #[inline(always)]
    fn engine<T>(&mut self, r: crate::error::Result<T>) -> PyResult<T> {
        match r {
            Ok(v) => Ok(v),
            Err(e @ Error::InvalidArgument(_)) => Err(to_pyerr(e)),
            Err(e @ Error::NonDeterminism { .. }) => {
                Err(self.fault_from(to_pyerr(site::locate_request(e))))
            }
            Err(e) => Err(self.fault_from(to_pyerr(e))),
        }
    }

    /// A raw draw of the random stream for `op` (`random` or `rng`, as refusals name it).
    #[inline(always)]
    fn draw(&mut self, py: Python<'_>, op: &str) -> PyResult<u64> {
        self.usable(op)?;
        let before = self.recorder.pending_len();
        let r = self.recorder.random_u64();
        let v = self.watch(r)?;
        if self.recorder.pending_len() > before {
            self.locate(py);
        }
        Ok(v)
    }

    /// Give the entry just recorded the call site of the user's code making it.
    #[inline]
    fn locate(&mut self, py: Python<'_>) {
        if let Some(here) = site::here(py) {
            self.recorder.locate_last(here);
        }
    }

    #[cold]
    fn fault_from(&mut self, err: PyErr) -> PyErr {
        Python::attach(|py| {
            let value = err.value(py).clone();
            match self.set_fault(value.into_any()) {
                Ok(()) => err,
                Err(e) => e,
            }
        })
    }

    fn set_fault(&mut self, exc: Bound<'_, PyAny>) -> PyResult<()> {
        if self.fault.is_some() {
            return Ok(());
        }
        // A divergence's own message and documentation say all of this already.
        let diverged = exc.is_instance(&class(exc.py(), "NonDeterminismError")?)?;
        if !diverged {
            exc.call_method1(
                "add_note",
                (format!(
                    "invocation {} stopped here: every later workflow operation of this attempt \
                 raises this again and records nothing, the engine raises it when the task \
                 returns, and the invocation is left to resume (app.recover(), or a worker)",
                    ids::format(self.recorder.invocation_id())
                ),),
            )?;
        }
        self.fault = Some(exc.unbind());
        Ok(())
    }

    /// Refuse `op` when the attempt has ended or a side effect's function is running.
    #[inline(always)]
    fn usable(&mut self, op: &str) -> PyResult<()> {
        if self.fault.is_none() && self.inside.is_none() {
            return Ok(());
        }
        Err(Python::attach(|py| self.refusal(py, op)))
    }

    #[cold]
    fn refusal(&mut self, py: Python<'_>, op: &str) -> PyErr {
        if let Some(exc) = &self.fault {
            return PyErr::from_value(exc.bind(py).clone());
        }
        let name = self.inside.clone().unwrap_or_default();
        let err = to_pyerr(Error::InvalidArgument(format!(
            "wf.{op}() was called inside the function of side effect {name:?}: side effects \
             cannot nest (only a side effect's outcome is recorded, so nothing its function \
             does could be replayed); call wf.{op}() in the task before or after \
             wf.side_effect({name:?}, ...) and pass its value to the function, or make the \
             work a task of its own and call it with wf.execute_task"
        )));
        if self.nested.is_none() {
            self.nested = Some(err.value(py).clone().into_any().unbind());
        }
        err
    }

    /// Hand the new entries to the store's staging buffer (no I/O).
    fn stage_entries(&mut self) {
        if self.replay_only || self.fault.is_some() || self.recorder.pending_len() == 0 {
            return;
        }
        let mut staging = self.store.staging();
        let (journal_id, fence) = (self.journal_id, self.fence);
        self.recorder.drain_new(|first, entries| {
            staging.journal(journal_id, first, entries, fence);
        });
    }
}

/// How `InvalidArgumentError`s name a workflow data key.
const DATA_KEY: &str = "a workflow data key";

/// `value` as text for the journal and the store: a `str` of valid UTF-8 (no lone
/// surrogates), else `InvalidArgumentError` naming `what` and the value.
fn text<'a>(what: &str, value: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    let refuse = |why: &str| {
        let shown = value
            .repr()
            .map_or_else(|_| "?".to_owned(), |r| r.to_string_lossy().into_owned());
        let cut: String = shown.chars().take(200).collect();
        let more = if cut.len() < shown.len() { "..." } else { "" };
        to_pyerr(Error::InvalidArgument(format!(
            "{what} is a str of valid UTF-8, got {cut}{more}{why}"
        )))
    };
    let string = value.cast::<PyString>().map_err(|_| refuse(""))?;
    string
        .to_str()
        .map_err(|_| refuse(" (it holds a lone surrogate, which UTF-8 cannot encode)"))
}

/// A change id of `patched`/`deprecate_patch`: a non-empty str of valid UTF-8.
fn change_id_text<'a>(value: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    let id = text("a change id", value)?;
    if id.is_empty() || id.len() > MAX_CHANGE_ID {
        return Err(to_pyerr(Error::InvalidArgument(format!(
            "a change id is 1 to {MAX_CHANGE_ID} bytes, got {} bytes ({id:?}); name the change, \
             e.g. wf.patched(\"add-fraud-check\")",
            id.len()
        ))));
    }
    Ok(id)
}

/// Longest change id accepted, in bytes.
const MAX_CHANGE_ID: usize = 255;

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
