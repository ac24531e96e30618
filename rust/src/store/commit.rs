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
//! listed for all of them), and a failed commit is reported to every thread whose writes it
//! held, at that thread's next flush even when the commit was another thread's (the range of a
//! flush starts at its thread's first write since its previous flush). A failed batch is
//! dropped: its writes are not retried behind the caller's back. Nor can a later commit cut a
//! hole in a journal the failed batch held entries of: a batch that would continue such a
//! journal past the lost entries fails whole with the same error (its writers are told at
//! their flush, like the failed batch's); only a new execution, appending where the durable
//! journal ends, writes that journal again.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::batch::{Batch, Map};
use super::fork_gate::Busy;
use super::overlay::StagedJournal;
use super::{Fence, FlushReport, Table, WriteOp};
use crate::entry::Entry;
use crate::error::{Error, Result};

/// The staging buffer, held: writes staged through it are contiguous and in order.
pub struct Staging<'a> {
    st: MutexGuard<'a, State>,
    /// Declared after `st`, so the lock is released before the section closes.
    _busy: Busy,
    waiting: &'a Waiting,
    /// The staging thread, once it is marked as having unflushed writes.
    marked: bool,
}

impl Staging<'_> {
    /// Count one staged write, noting the first one of this thread since its last flush.
    fn bump(&mut self) {
        self.st.staged += 1;
        if !self.st.pending_timed {
            self.st.pending_timed = true;
            self.waiting.since_us.store(now_us(), Ordering::Relaxed);
        }
        if !self.marked {
            self.marked = true;
            let seq = self.st.staged;
            self.st.unflushed.entry(thread_key()).or_insert(seq);
        }
    }

    pub fn push(&mut self, op: WriteOp) {
        self.st.pending.push(op);
        self.bump();
    }

    /// Stage `entries` (drained) as the continuation of `invocation`'s journal.
    pub fn journal(
        &mut self,
        invocation: [u8; 16],
        first_position: u64,
        entries: &mut Vec<Entry>,
        fence: Option<Fence>,
    ) {
        self.st
            .pending
            .append_journal(invocation, first_position, entries, fence);
        self.bump();
    }

    /// Stage a Put; the key is copied only when no staged write of it takes the value.
    pub fn put(&mut self, table: Table, key: &[u8], value: Vec<u8>, fence: Option<Fence>) {
        self.st.pending.put(table, key, value, fence);
        self.bump();
    }
}

#[derive(Default)]
struct State {
    /// Staged, not yet taken by a leader.
    pending: Batch,
    /// Whether `waiting.since_us` holds the time the oldest write of `pending` was staged.
    pending_timed: bool,
    /// Taken by the current leader, not yet committed: still visible to reads.
    inflight: Arc<Batch>,
    /// Sequence number of the last staged write.
    staged: u64,
    /// Sequence number of the last write whose commit finished (successfully or not).
    committed: u64,
    leader: bool,
    /// Outcomes of recent commits that failed or rejected writes (the others have nothing to
    /// tell), kept while a flush may still need them.
    outcomes: VecDeque<Outcome>,
    /// The start of the range of each waiting flush (value → number of waiters).
    waiters: BTreeMap<u64, usize>,
    /// Per thread, the sequence number of its first write staged since its last flush: that
    /// flush hears about every commit that held its writes, including other threads' commits.
    unflushed: Map<u64, u64>,
    /// Per invocation, the newest fencing token a commit rejected and the token current then.
    /// Tokens only grow, so a rejected token stays stale: kept for the writer, whose writes
    /// another thread's flush may have committed before its own flush found nothing left.
    stale: Map<[u8; 16], (u64, u64)>,
    /// Per journal id, the first position a failed commit lost and that commit's error.
    lost: Map<[u8; 16], (u64, Error)>,
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
    /// Read by the background flusher without a lock and without holding the store.
    pub waiting: Arc<Waiting>,
}

/// How long staged writes have waited, readable without the state lock (`ticker.rs`).
#[derive(Default)]
pub(crate) struct Waiting {
    /// When the oldest write not yet taken by a flush was staged (`now_us`), 0 when none is.
    since_us: AtomicU64,
    /// Whether a background flusher runs for the store.
    pub running: AtomicBool,
}

impl Waiting {
    /// How long the oldest staged write has waited for a flush to take it.
    pub fn age(&self) -> Option<Duration> {
        match self.since_us.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_micros(now_us().saturating_sub(since))),
        }
    }
}

/// A number for the calling thread, unique in the process (cheaper than `ThreadId`, which
/// clones the thread's handle).
fn thread_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static KEY: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    KEY.with(|k| *k)
}

/// Microseconds since the first call in this process, never 0.
fn now_us() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(START.elapsed().as_micros()).unwrap_or(u64::MAX) + 1
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stage(&self, ops: impl IntoIterator<Item = WriteOp>) {
        let mut staging = self.staging();
        for op in ops {
            staging.push(op);
        }
    }

    /// Hold the buffer to stage several writes together, in order (one lock for all).
    pub fn staging(&self) -> Staging<'_> {
        let busy = Busy::enter();
        Staging {
            _busy: busy,
            st: self.lock(),
            waiting: &self.waiting,
            marked: false,
        }
    }

    /// Forget writes inherited from the parent process after a fork: the parent commits them.
    pub fn reset_after_fork(&self) {
        *self.lock() = State::default();
        self.waiting.since_us.store(0, Ordering::Relaxed);
        self.waiting.running.store(false, Ordering::Relaxed);
    }

    /// Staged and in-flight writes, oldest first, filtered and mapped by `f`.
    pub fn overlay<T>(&self, mut f: impl FnMut(&WriteOp) -> Option<T>) -> Vec<T> {
        let _busy = Busy::enter();
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
        let _busy = Busy::enter();
        let st = self.lock();
        st.pending
            .latest(table, key)
            .or_else(|| st.inflight.latest(table, key))
    }

    /// Staged and in-flight journal segments of one journal id, oldest first: those after its
    /// latest staged delete, if it has one.
    pub fn journal(&self, invocation: &[u8; 16]) -> StagedJournal {
        let _busy = Busy::enter();
        let st = self.lock();
        let mut segments = Vec::new();
        let deleted = st.inflight.journal(invocation, &mut segments);
        let deleted = st.pending.journal(invocation, &mut segments) || deleted;
        StagedJournal { deleted, segments }
    }

    /// The current token, if a commit of this process rejected a write fenced with `fence`
    /// or with a newer token of the same invocation (whichever thread's flush committed it).
    pub fn stale(&self, fence: Fence) -> Option<u64> {
        let _busy = Busy::enter();
        let st = self.lock();
        let &(token, current) = st.stale.get(&fence.invocation)?;
        (fence.token <= token).then_some(current)
    }

    /// Make everything staged so far durable, committing with `commit` when leading.
    /// A panic inside `commit` is turned into the error `panicked()` so followers never wait on
    /// a leader that is gone.
    pub fn flush(
        &self,
        commit: impl Fn(&[WriteOp]) -> Result<FlushReport>,
        panicked: impl Fn() -> Error,
    ) -> Result<FlushReport> {
        let _busy = Busy::enter();
        let mut st = self.lock();
        let target = st.staged;
        let from = match st.unflushed.remove(&thread_key()) {
            Some(first) => st.committed.min(first - 1),
            None => st.committed,
        };
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
            st.pending_timed = false;
            self.waiting.since_us.store(0, Ordering::Relaxed);
            let batch = Arc::clone(&st.inflight);
            let gap = cuts_a_lost_journal(&st.lost, &batch.ops);
            drop(st);
            let result = match gap {
                Some(e) => Err(e),
                None => catch_unwind(AssertUnwindSafe(|| commit(&batch.ops)))
                    .unwrap_or_else(|_| Err(panicked())),
            };
            st = self.lock();
            note_lost_journals(&mut st.lost, &batch.ops, &result);
            for (fence, current) in result.iter().flat_map(|r| &r.rejected) {
                let seen = st.stale.entry(fence.invocation).or_default();
                *seen = (*seen).max((fence.token, *current));
            }
            if result.as_ref().map_or(true, |r| !r.rejected.is_empty()) {
                st.outcomes.push_back(Outcome {
                    after,
                    upto,
                    result: result.map(|r| r.rejected),
                });
            }
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
        let keep_after = st
            .unflushed
            .values()
            .map(|first| first - 1)
            .chain(st.waiters.keys().copied())
            .fold(st.committed, u64::min);
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

/// The error of the failed commit whose lost entries `ops` would leave a hole behind: a
/// journal segment starting past the first position that commit lost.
fn cuts_a_lost_journal(lost: &Map<[u8; 16], (u64, Error)>, ops: &[WriteOp]) -> Option<Error> {
    if lost.is_empty() {
        return None;
    }
    ops.iter().find_map(|op| match op {
        WriteOp::Journal {
            invocation,
            first_position,
            ..
        } => lost
            .get(invocation)
            .filter(|(from, _)| first_position > from)
            .map(|(_, e)| e.clone()),
        _ => None,
    })
}

/// After a commit: a failed one lost the journal entries it held (from their first position
/// on); a successful one that wrote a journal from where its durable part ends mended it.
fn note_lost_journals(
    lost: &mut Map<[u8; 16], (u64, Error)>,
    ops: &[WriteOp],
    result: &Result<FlushReport>,
) {
    if result.is_ok() && lost.is_empty() {
        return;
    }
    for op in ops {
        match (op, result) {
            (
                WriteOp::Journal {
                    invocation,
                    first_position,
                    ..
                },
                Err(e),
            ) => {
                let mark = lost
                    .entry(*invocation)
                    .or_insert((*first_position, e.clone()));
                mark.0 = mark.0.min(*first_position);
            }
            // A journal written from where it ends, or deleted whole, has no hole left.
            (
                WriteOp::Journal { invocation, .. }
                | WriteOp::DeleteJournal {
                    journal: invocation,
                    ..
                },
                Ok(_),
            ) => {
                lost.remove(invocation);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::batch::tests::put;

    #[test]
    fn a_failed_commit_reaches_every_thread_whose_writes_it_held() {
        let gc = GroupCommit::default();
        let failing = |_: &[WriteOp]| -> Result<FlushReport> {
            Err(Error::InvalidArgument("the disk is gone".into()))
        };
        let never = || Error::InvalidArgument("panicked".into());
        let ok = |_: &[WriteOp]| Ok(FlushReport::default());
        let step = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                gc.stage([put(b"theirs", b"1", None)]);
                step.wait(); // the main thread's commit, holding these writes, fails
                step.wait();
                // Nothing is left to commit, yet this thread hears its writes were lost.
                let late = gc.flush(ok, never);
                // Once told, its next flush is about its new writes only.
                gc.stage([put(b"theirs", b"3", None)]);
                (late, gc.flush(ok, never))
            });
            step.wait();
            gc.stage([put(b"mine", b"2", None)]);
            assert!(gc.flush(failing, never).is_err());
            step.wait();
            let (late, next) = other.join().unwrap();
            assert!(late.is_err(), "its writes were lost");
            assert!(next.is_ok());
        });
        // A thread that staged nothing has nothing to hear.
        assert!(gc.flush(failing, never).is_ok());
    }

    #[test]
    fn no_commit_continues_a_journal_past_entries_a_failed_commit_lost() {
        use crate::entry::{Entry, Op};
        let gc = GroupCommit::default();
        let failing = |_: &[WriteOp]| -> Result<FlushReport> {
            Err(Error::InvalidArgument("the disk is full".into()))
        };
        let never = || Error::InvalidArgument("panicked".into());
        let committed = Mutex::new(Vec::new());
        let ok = |ops: &[WriteOp]| {
            committed.lock().unwrap().push(ops.len());
            Ok(FlushReport::default())
        };
        let append = |position: u64| {
            let mut entries = vec![Entry::new(Op::Random(position))];
            gc.staging().journal([7; 16], position, &mut entries, None);
        };
        append(0);
        assert!(gc.flush(ok, never).is_ok());
        append(1); // lost
        assert!(gc.flush(failing, never).is_err());
        // The same execution goes on at position 2: refused whole, with the first error.
        append(2);
        gc.stage([put(b"data", b"after the loss", None)]);
        let err = gc.flush(ok, never).unwrap_err();
        assert!(err.to_string().contains("the disk is full"), "{err}");
        // Other journals are not held back.
        let mut other = vec![Entry::new(Op::Random(0))];
        gc.staging().journal([8; 16], 0, &mut other, None);
        assert!(gc.flush(ok, never).is_ok());
        // A new execution appends where the durable journal ends: accepted, and mended.
        append(1);
        assert!(gc.flush(ok, never).is_ok());
        append(2);
        assert!(gc.flush(ok, never).is_ok());
        assert_eq!(*committed.lock().unwrap(), vec![1, 1, 1, 1]);
    }
}
