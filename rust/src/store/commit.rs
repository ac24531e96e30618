//! Group commit: the process-wide ordered buffer of staged writes and the leader/follower
//! protocol that makes them durable.
//!
//! Every `stage` appends to one buffer and bumps a sequence number. `flush` notes the sequence
//! number at the time of the call (its *target*) and returns once everything up to it is
//! committed. The first flusher to find no commit in progress becomes the leader: it takes the
//! whole buffer (its own writes and everything other threads staged meanwhile), commits it in
//! one write transaction, and wakes the followers; a follower whose target is still ahead
//! leads the next commit. So concurrent flushes share one transaction and one fsync.
//!
//! Each flush returns the combined outcome of the commits that covered its range of sequence
//! numbers: a report is shared between the callers of one commit (rejected fenced writes are
//! listed for all of them), and a failed commit is reported to every caller whose writes it
//! held. A failed batch is dropped: its writes are not retried behind the caller's back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::{Fence, FlushReport, Table, WriteOp};
use crate::entry::Entry;
use crate::error::{Error, Result};

/// Writes in order, with an index so reads find the latest write of a key (or the journal
/// segments of an invocation) without scanning everything staged.
#[derive(Default)]
pub(crate) struct Batch {
    pub ops: Vec<WriteOp>,
    /// (table, key) → position in `ops` of its latest Put/Delete.
    latest: HashMap<(Table, Vec<u8>), usize>,
    /// journal id → positions in `ops` of its segments, oldest first.
    journals: HashMap<[u8; 16], Vec<usize>>,
}

impl Batch {
    fn push(&mut self, op: WriteOp) {
        let op = match self.extend_segment(op) {
            None => return,
            Some(op) => op,
        };
        let at = self.ops.len();
        match &op {
            WriteOp::Put { table, key, .. } | WriteOp::Delete { table, key, .. } => {
                self.latest.insert((*table, key.clone()), at);
            }
            WriteOp::Journal { invocation, .. } => {
                self.journals.entry(*invocation).or_default().push(at)
            }
            WriteOp::Enqueue { .. } | WriteOp::Complete { .. } => {}
        }
        self.ops.push(op);
    }

    /// Append a journal segment that continues the invocation's last staged segment (same
    /// fence) to it instead of adding a record per stage: one batch commits atomically, so
    /// merging changes nothing but the record count. Returns the op when it was not merged.
    fn extend_segment(&mut self, op: WriteOp) -> Option<WriteOp> {
        let WriteOp::Journal {
            invocation,
            first_position,
            entries,
            fence,
        } = op
        else {
            return Some(op);
        };
        if let Some(&at) = self.journals.get(&invocation).and_then(|v| v.last()) {
            if let WriteOp::Journal {
                first_position: prev_first,
                entries: prev,
                fence: prev_fence,
                ..
            } = &mut self.ops[at]
            {
                if *prev_fence == fence && *prev_first + prev.len() as u64 == first_position {
                    prev.extend(entries);
                    return None;
                }
            }
        }
        Some(WriteOp::Journal {
            invocation,
            first_position,
            entries,
            fence,
        })
    }

    /// `Some(Some(value))` staged Put, `Some(None)` staged Delete, `None` not staged.
    fn latest(&self, table: Table, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let at = *self.latest.get(&(table, key.to_vec()))?;
        match &self.ops[at] {
            WriteOp::Put { value, .. } => Some(Some(value.clone())),
            _ => Some(None),
        }
    }

    fn journal(&self, invocation: &[u8; 16], out: &mut Vec<(u64, Vec<Entry>)>) {
        for &at in self.journals.get(invocation).into_iter().flatten() {
            if let WriteOp::Journal {
                first_position,
                entries,
                ..
            } = &self.ops[at]
            {
                out.push((*first_position, entries.clone()));
            }
        }
    }
}

#[derive(Default)]
struct State {
    /// Staged, not yet taken by a leader.
    pending: Batch,
    /// Taken by the current leader, not yet committed: still visible to reads.
    inflight: Arc<Batch>,
    /// Sequence number of the last staged write.
    staged: u64,
    /// Sequence number of the last write whose commit finished (successfully or not).
    committed: u64,
    leader: bool,
    /// Outcomes of recent commits, kept while a waiting flush may still need them.
    outcomes: VecDeque<Outcome>,
    /// `committed` at the start of each waiting flush (value → number of waiters).
    waiters: BTreeMap<u64, usize>,
}

struct Outcome {
    /// Sequence numbers `(after, upto]` this commit covered.
    after: u64,
    upto: u64,
    result: std::result::Result<Vec<(Fence, u64)>, Error>,
}

/// The staged-write buffer and its commit protocol.
#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stage(&self, ops: impl IntoIterator<Item = WriteOp>) {
        let mut st = self.lock();
        for op in ops {
            st.pending.push(op);
            st.staged += 1;
        }
    }

    /// Forget writes inherited from the parent process after a fork: the parent commits them.
    pub fn reset_after_fork(&self) {
        *self.lock() = State::default();
    }

    /// Staged and in-flight writes, oldest first, filtered and mapped by `f`.
    pub fn overlay<T>(&self, mut f: impl FnMut(&WriteOp) -> Option<T>) -> Vec<T> {
        let st = self.lock();
        st.inflight
            .ops
            .iter()
            .chain(st.pending.ops.iter())
            .filter_map(&mut f)
            .collect()
    }

    /// The latest staged or in-flight write of one key (see `Batch::latest`).
    pub fn latest(&self, table: Table, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let st = self.lock();
        st.pending
            .latest(table, key)
            .or_else(|| st.inflight.latest(table, key))
    }

    /// Staged and in-flight journal segments of one journal id, oldest first.
    pub fn journal(&self, invocation: &[u8; 16]) -> Vec<(u64, Vec<Entry>)> {
        let st = self.lock();
        let mut out = Vec::new();
        st.inflight.journal(invocation, &mut out);
        st.pending.journal(invocation, &mut out);
        out
    }

    /// Make everything staged so far durable, committing with `commit` when leading.
    /// A panic inside `commit` is turned into the error `panicked()` so followers never wait on
    /// a leader that is gone.
    pub fn flush(
        &self,
        commit: impl Fn(&[WriteOp]) -> Result<FlushReport>,
        panicked: impl Fn() -> Error,
    ) -> Result<FlushReport> {
        let mut st = self.lock();
        let target = st.staged;
        let from = st.committed;
        if target == from {
            return Ok(FlushReport::default());
        }
        *st.waiters.entry(from).or_default() += 1;
        while st.committed < target {
            if st.leader {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.leader = true;
            let (after, upto) = (st.committed, st.staged);
            st.inflight = Arc::new(std::mem::take(&mut st.pending));
            let batch = Arc::clone(&st.inflight);
            drop(st);
            let result = catch_unwind(AssertUnwindSafe(|| commit(&batch.ops)))
                .unwrap_or_else(|_| Err(panicked()));
            st = self.lock();
            st.outcomes.push_back(Outcome {
                after,
                upto,
                result: result.map(|r| r.rejected),
            });
            st.committed = upto;
            st.inflight = Arc::default();
            st.leader = false;
            self.done.notify_all();
        }
        let mut report = FlushReport::default();
        let mut failure = None;
        for o in st
            .outcomes
            .iter()
            .filter(|o| o.upto > from && o.after < target)
        {
            match &o.result {
                Ok(rejected) => report.rejected.extend(rejected.iter().copied()),
                Err(e) => failure = failure.or_else(|| Some(e.clone())),
            }
        }
        if let Some(n) = st.waiters.get_mut(&from) {
            *n -= 1;
            if *n == 0 {
                st.waiters.remove(&from);
            }
        }
        let keep_after = st.waiters.keys().next().copied().unwrap_or(st.committed);
        while st.outcomes.front().is_some_and(|o| o.upto <= keep_after) {
            st.outcomes.pop_front();
        }
        drop(st);
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}
