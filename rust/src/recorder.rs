//! The Recorder: one per execution (attempt) of an invocation.
//!
//! It is handed the entries already recorded for the invocation and serves them in order, by
//! position, comparing the kind and key of each operation with what the code asks for now. When
//! the recorded entries run out it switches to recording: new entries are buffered until the
//! caller takes them (`take_new`) to persist. It is storage-agnostic: it never touches a store.

use std::collections::HashSet;
use std::sync::Arc;

use crate::clock::Clock;
use crate::entry::{Entry, Op};
use crate::error::{Error, Report, Result};
use crate::ids;
use crate::stream::Stream;

/// Names of the per-invocation streams; part of the format.
pub const RANDOM_STREAM: &str = "random";
pub const UUID_STREAM: &str = "uuid";

pub struct Recorder {
    workflow_id: String,
    invocation_id: [u8; 16],
    attempt: u32,
    recorded: Vec<Entry>,
    /// Position of the next operation (index into `recorded`, then past its end).
    position: u64,
    /// Entries recorded since the last `take_new`, starting at `new_first`.
    new: Vec<Entry>,
    new_first: u64,
    /// Whether `new` holds a value that cannot be regenerated (time, data read, side effect).
    volatile_pending: bool,
    /// The streams, keyed on first use: deriving a key costs BLAKE3 compressions, and many
    /// invocations never draw.
    random: Option<Stream>,
    uuid: Option<Stream>,
    clock: Clock,
    /// Replay-only: running past the recorded entries is a divergence, not a resume.
    strict: bool,
    /// Names and keys recorded lately, shared by the entries that repeat them.
    names: HashSet<Arc<str>, foldhash::fast::RandomState>,
    /// The name interned last: loops repeat one name.
    last_name: Option<Arc<str>>,
    /// The answer `patched` gave for each change id so far: one answer per execution.
    patches: Vec<(Arc<str>, bool)>,
}

/// Most names kept for sharing; past it the set starts afresh (entries keep their own copies).
const NAMES_KEPT: usize = 1024;

impl Recorder {
    pub fn new(
        workflow_id: String,
        invocation_id: [u8; 16],
        attempt: u32,
        recorded: Vec<Entry>,
    ) -> Self {
        let first_new = recorded.len() as u64;
        Recorder {
            workflow_id,
            random: None,
            uuid: None,
            invocation_id,
            attempt,
            recorded,
            position: 0,
            new: Vec::new(),
            new_first: first_new,
            volatile_pending: false,
            clock: Clock::new(),
            strict: false,
            names: HashSet::default(),
            last_name: None,
            patches: Vec::new(),
        }
    }

    /// A strict recorder replays a finished execution: asking for anything past the recorded
    /// entries raises `NonDeterminism` instead of recording.
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }

    /// Check that the code consumed every recorded entry before returning: code that now
    /// does less than it recorded has diverged, whether it replays or resumes.
    pub fn finish(&self) -> Result<()> {
        match self.recorded_here() {
            Some(_) => Err(self.diverged_report(Report {
                kind: "return",
                description: "the task to return".into(),
                ..Report::default()
            })),
            None => Ok(()),
        }
    }

    /// Past the recorded entries in strict mode: the code asks for more than was recorded.
    /// `requested` describes the operation; it is only formatted when it is reported.
    #[inline]
    fn past_end(&self, requested: impl FnOnce() -> Op) -> Result<()> {
        if self.strict {
            return Err(Error::NonDeterminism {
                workflow_id: self.workflow_id.clone(),
                invocation_id: ids::format(&self.invocation_id),
                position: self.position,
                recorded: Box::new(Report {
                    kind: "return",
                    description: "the task returning (end of journal)".into(),
                    site: self.last_site(),
                    ..Report::default()
                }),
                requested: Box::new(requested().report(false)),
            });
        }
        Ok(())
    }

    /// The call site of the last entry before the current position that has one: where the
    /// entries that matched end (reported for an entry recorded without a call site).
    fn last_site(&self) -> Option<crate::entry::CallSite> {
        let end = (self.position as usize).min(self.recorded.len());
        self.recorded[..end]
            .iter()
            .rev()
            .find_map(|e| e.call_site.as_deref().cloned())
    }

    /// Give the entry recorded last (by the operation just made) its call site.
    pub fn locate_last(&mut self, site: crate::entry::CallSite) {
        if let Some(e) = self.new.last_mut() {
            e.call_site = Some(Box::new(site));
        }
    }

    pub fn invocation_id(&self) -> &[u8; 16] {
        &self.invocation_id
    }
    pub fn workflow_id(&self) -> &str {
        &self.workflow_id
    }
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// Position of the next operation.
    pub fn position(&self) -> u64 {
        self.position
    }
    /// True while recorded entries remain to be served.
    pub fn replaying(&self) -> bool {
        (self.position as usize) < self.recorded.len()
    }
    /// Number of entries recorded before this execution started.
    pub fn recorded_len(&self) -> usize {
        self.recorded.len()
    }
    /// True when entries not yet made durable hold a value that could not be regenerated after
    /// a crash (a clock reading, a data read, a side effect).
    pub fn volatile_pending(&self) -> bool {
        self.volatile_pending
    }
    /// Number of buffered new entries.
    pub fn pending_len(&self) -> usize {
        self.new.len()
    }

    /// The recorded entry at the current position, if still replaying.
    #[inline]
    fn recorded_here(&self) -> Option<&Entry> {
        self.recorded.get(self.position as usize)
    }

    /// The code asks for `requested` where the journal recorded the entry at this position.
    #[cold]
    fn diverged(&self, requested: Op) -> Error {
        self.diverged_report(requested.report(false))
    }

    #[cold]
    fn diverged_report(&self, requested: Report) -> Error {
        let entry = self
            .recorded_here()
            .expect("a recorded entry at a divergence");
        let mut recorded = entry.op.report(true);
        recorded.site = entry.call_site.as_deref().cloned();
        Error::NonDeterminism {
            workflow_id: self.workflow_id.clone(),
            invocation_id: ids::format(&self.invocation_id),
            position: self.position,
            recorded: Box::new(recorded),
            requested: Box::new(requested),
        }
    }

    /// `name` as a shared string, allocated once for all the entries that repeat it.
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(last) = self.last_name.as_ref().filter(|last| ***last == *name) {
            return Arc::clone(last);
        }
        let shared = self.intern_slow(name);
        self.last_name = Some(Arc::clone(&shared));
        shared
    }

    fn intern_slow(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return Arc::clone(shared);
        }
        if self.names.len() >= NAMES_KEPT {
            self.names.clear();
        }
        let shared: Arc<str> = Arc::from(name);
        self.names.insert(Arc::clone(&shared));
        shared
    }

    #[inline]
    fn record(&mut self, op: Op) {
        self.volatile_pending |= op.is_volatile();
        self.new.push(Entry::new(op));
        self.position += 1;
    }

    /// A raw 64-bit draw of the random stream.
    #[inline]
    pub fn random_u64(&mut self) -> Result<u64> {
        let (inv, attempt) = (self.invocation_id, self.attempt);
        let drawn = self
            .random
            .get_or_insert_with(|| Stream::new(&inv, attempt, RANDOM_STREAM))
            .next_u64();
        if let Some(e) = self.recorded_here() {
            return match e.op {
                Op::Random(v) => {
                    self.position += 1;
                    Ok(v)
                }
                _ => Err(self.diverged(Op::Random(0))),
            };
        }
        self.past_end(|| Op::Random(0))?;
        self.record(Op::Random(drawn));
        Ok(drawn)
    }

    /// A version-4 UUID from the uuid stream.
    pub fn uuid(&mut self) -> Result<[u8; 16]> {
        let (inv, attempt) = (self.invocation_id, self.attempt);
        let drawn = self
            .uuid
            .get_or_insert_with(|| Stream::new(&inv, attempt, UUID_STREAM))
            .next_uuid();
        if let Some(e) = self.recorded_here() {
            return match e.op {
                Op::Uuid(v) => {
                    self.position += 1;
                    Ok(v)
                }
                _ => Err(self.diverged(Op::Uuid([0; 16]))),
            };
        }
        self.past_end(|| Op::Uuid([0; 16]))?;
        self.record(Op::Uuid(drawn));
        Ok(drawn)
    }

    /// A clock reading in µs since the epoch: the real clock (strictly increasing), or the
    /// recorded reading on replay.
    pub fn time(&mut self) -> Result<i64> {
        if let Some(e) = self.recorded_here() {
            return match e.op {
                Op::Time(t) => {
                    self.clock.observe(t);
                    self.position += 1;
                    Ok(t)
                }
                _ => Err(self.diverged(Op::Time(0))),
            };
        }
        self.past_end(|| Op::Time(0))?;
        let t = self.clock.tick();
        self.record(Op::Time(t));
        Ok(t)
    }

    /// Look up a side effect: its recorded outcome on replay (the bytes, and whether they hold
    /// the exception it raised), `None` when it must run now (the caller then runs it and calls
    /// `record_side_effect`).
    pub fn side_effect(&mut self, name: &str) -> Result<Option<(Vec<u8>, bool)>> {
        match self.recorded_here() {
            None => self
                .past_end(|| Op::side_effect(name, Vec::new(), false))
                .map(|_| None),
            Some(Entry {
                op: Op::SideEffect(e),
                ..
            }) if *e.name == *name => {
                let outcome = (e.value.clone(), e.failed);
                self.position += 1;
                Ok(Some(outcome))
            }
            Some(_) => Err(self.diverged(Op::side_effect(name, Vec::new(), false))),
        }
    }

    /// Record a side effect's outcome: its value, or (`failed`) the exception it raised.
    pub fn record_side_effect(&mut self, name: &str, value: Vec<u8>, failed: bool) {
        let name = self.intern(name);
        self.record(Op::side_effect(name, value, failed));
    }

    /// The dispatch of a child invocation of `task_id` with arguments digesting to
    /// `args_digest`. Returns the child's invocation id (derived from this invocation's id,
    /// attempt and position, so it is the same on replay) and whether it was replayed.
    pub fn child(&mut self, task_id: &str, args_digest: [u8; 16]) -> Result<([u8; 16], bool)> {
        if let Some(e) = self.recorded_here() {
            return match &e.op {
                Op::Child(c) if *c.task_id == *task_id && c.args_digest == args_digest => {
                    let id = c.child_id;
                    self.position += 1;
                    Ok((id, true))
                }
                _ => Err(self.diverged(Op::child([0; 16], args_digest, task_id))),
            };
        }
        self.past_end(|| Op::child([0; 16], args_digest, task_id))?;
        let child_id = ids::child_id(&self.invocation_id, self.attempt, self.position);
        let task_id = self.intern(task_id);
        self.record(Op::child(child_id, args_digest, task_id));
        Ok((child_id, false))
    }

    /// Look up a data read: `Some(recorded value)` on replay, `None` when the caller must read
    /// the live value now and call `record_data_read`.
    pub fn data_read(&mut self, key: &str) -> Result<Option<Option<Vec<u8>>>> {
        match self.recorded_here() {
            None => self.past_end(|| Op::data_read(key, None)).map(|_| None),
            Some(Entry {
                op: Op::DataRead(r),
                ..
            }) if *r.key == *key => {
                let v = r.value.clone();
                self.position += 1;
                Ok(Some(v))
            }
            Some(_) => Err(self.diverged(Op::data_read(key, None))),
        }
    }

    pub fn record_data_read(&mut self, key: &str, value: Option<Vec<u8>>) {
        let key = self.intern(key);
        self.record(Op::data_read(key, value));
    }

    /// A data write. Returns true when it was replayed (already durable: do not write again).
    pub fn data_write(&mut self, key: &str, value_digest: [u8; 16]) -> Result<bool> {
        if let Some(e) = self.recorded_here() {
            return match &e.op {
                Op::DataWrite(w) if *w.key == *key && w.value_digest == value_digest => {
                    self.position += 1;
                    Ok(true)
                }
                _ => Err(self.diverged(Op::data_write(key, value_digest))),
            };
        }
        self.past_end(|| Op::data_write(key, value_digest))?;
        let key = self.intern(key);
        self.record(Op::data_write(key, value_digest));
        Ok(false)
    }

    /// `patched(change_id)`: whether this execution takes the new branch of a code change.
    /// The first call for a change id decides, and later calls repeat its answer without
    /// consuming a position. It is true when the entry here is this change's marker (replayed)
    /// or when the recorded entries have run out (live: the marker is recorded), except in a
    /// strict replay, whose finished run never passed here with the change; it is false, and
    /// consumes nothing, when the entry here is any other operation (a run recorded before the
    /// change) or another change's marker.
    pub fn patched(&mut self, change_id: &str) -> bool {
        if let Some((_, taken)) = self.patches.iter().find(|(id, _)| **id == *change_id) {
            return *taken;
        }
        let taken = match self.recorded_here() {
            Some(Entry {
                op: Op::Patch(id), ..
            }) if **id == *change_id => {
                self.position += 1;
                true
            }
            Some(_) => false,
            None if self.strict => false,
            None => {
                let id = self.intern(change_id);
                self.record(Op::Patch(id));
                true
            }
        };
        self.patches.push((Arc::from(change_id), taken));
        taken
    }

    /// `deprecate_patch(change_id)`: the old branch of the change is gone. Skips this change's
    /// marker when it is the entry here (a run recorded with `patched`); records nothing and
    /// never diverges otherwise.
    pub fn deprecate_patch(&mut self, change_id: &str) {
        if let Some(Entry {
            op: Op::Patch(id), ..
        }) = self.recorded_here()
        {
            if **id == *change_id {
                self.position += 1;
            }
        }
    }

    /// Hand over the buffered new entries and the position of the first of them.
    pub fn take_new(&mut self) -> (u64, Vec<Entry>) {
        let first = self.new_first;
        let entries = std::mem::take(&mut self.new);
        self.new_first = first + entries.len() as u64;
        (first, entries)
    }

    /// Hand the buffered new entries to `f` with the position of the first of them; `f` drains
    /// the buffer (which keeps its capacity for the next entries).
    pub fn drain_new(&mut self, f: impl FnOnce(u64, &mut Vec<Entry>)) {
        let n = self.new.len() as u64;
        f(self.new_first, &mut self.new);
        assert!(self.new.is_empty(), "drain_new: the entries were not taken");
        self.new.clear();
        self.new_first += n;
    }

    /// Everything taken so far is durable now (the caller flushed it): no volatile value is
    /// pending any more. Taking entries alone does not make them durable.
    pub fn mark_durable(&mut self) {
        if self.new.is_empty() {
            self.volatile_pending = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INV: [u8; 16] = [9; 16];

    fn fresh() -> Recorder {
        Recorder::new("wf".into(), INV, 0, Vec::new())
    }

    #[derive(Debug, Clone)]
    enum Step {
        Random,
        Uuid,
        Time,
        SideEffect(String, Vec<u8>),
        Child(String, [u8; 16]),
        Read(String, Option<Vec<u8>>),
        Write(String, [u8; 16]),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Random),
            Just(Step::Uuid),
            Just(Step::Time),
            ("[a-c]", proptest::collection::vec(any::<u8>(), 0..8))
                .prop_map(|(n, v)| Step::SideEffect(n, v)),
            ("[a-c]", any::<[u8; 16]>()).prop_map(|(t, d)| Step::Child(t, d)),
            (
                "[a-c]",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8))
            )
                .prop_map(|(k, v)| Step::Read(k, v)),
            ("[a-c]", any::<[u8; 16]>()).prop_map(|(k, d)| Step::Write(k, d)),
        ]
    }

    /// Run a program; `live` values are what the outside world would return when recording.
    fn run(r: &mut Recorder, steps: &[Step]) -> Result<Vec<String>> {
        let mut seen = Vec::new();
        for s in steps {
            let v = match s {
                Step::Random => format!("{}", r.random_u64()?),
                Step::Uuid => format!("{:?}", r.uuid()?),
                Step::Time => format!("{}", r.time()?),
                Step::SideEffect(n, live) => match r.side_effect(n)? {
                    Some((v, failed)) => format!("{v:?} {failed}"),
                    None => {
                        let failed = live.first() == Some(&0);
                        r.record_side_effect(n, live.clone(), failed);
                        format!("{live:?} {failed}")
                    }
                },
                Step::Child(t, d) => format!("{:?}", r.child(t, *d)?.0),
                Step::Read(k, live) => match r.data_read(k)? {
                    Some(v) => format!("{v:?}"),
                    None => {
                        r.record_data_read(k, live.clone());
                        format!("{live:?}")
                    }
                },
                Step::Write(k, d) => {
                    r.data_write(k, *d)?;
                    String::new()
                }
            };
            seen.push(v);
        }
        Ok(seen)
    }

    proptest! {
        /// Recording then replaying a program yields identical values; interrupting at any
        /// position and resuming yields identical values too.
        #[test]
        fn replay_and_resume_are_identical(steps in proptest::collection::vec(arb_step(), 0..40), cut in any::<usize>()) {
            let mut rec = fresh();
            let first = run(&mut rec, &steps).unwrap();
            let (_, journal) = rec.take_new();
            prop_assert_eq!(journal.len(), steps.len());

            let mut replay = Recorder::new("wf".into(), INV, 0, journal.clone());
            prop_assert_eq!(run(&mut replay, &steps).unwrap(), first.clone());
            prop_assert_eq!(replay.take_new().1.len(), 0);

            let cut = if steps.is_empty() { 0 } else { cut % (steps.len() + 1) };
            let mut resumed = Recorder::new("wf".into(), INV, 0, journal[..cut].to_vec());
            let again = run(&mut resumed, &steps).unwrap();
            for (i, (a, b)) in first.iter().zip(again.iter()).enumerate() {
                // Clock readings after the cut are new real readings; every other value is equal.
                if !matches!(steps[i], Step::Time) || i < cut {
                    prop_assert_eq!(a, b);
                }
            }
            let (first_new, new) = resumed.take_new();
            prop_assert_eq!(first_new as usize, cut);
            prop_assert_eq!(new.len(), steps.len() - cut);
        }
    }

    #[test]
    fn kind_mismatch_names_position_and_both_operations() {
        let mut rec = fresh();
        rec.random_u64().unwrap();
        rec.random_u64().unwrap();
        let (_, journal) = rec.take_new();
        let mut replay = Recorder::new("wf-1".into(), INV, 0, journal);
        replay.random_u64().unwrap();
        let err = replay.uuid().unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, Error::NonDeterminism { position: 1, .. }),
            "{msg}"
        );
        assert!(
            msg.contains("wf-1") && msg.contains("random()") && msg.contains("uuid()"),
            "{msg}"
        );
    }

    #[test]
    fn child_with_other_arguments_diverges() {
        let mut rec = fresh();
        let (id, replayed) = rec.child("m.pay", [1; 16]).unwrap();
        assert!(!replayed);
        let (_, journal) = rec.take_new();
        let mut same = Recorder::new("wf".into(), INV, 0, journal.clone());
        assert_eq!(same.child("m.pay", [1; 16]).unwrap(), (id, true));
        let mut other = Recorder::new("wf".into(), INV, 0, journal);
        assert!(matches!(
            other.child("m.pay", [2; 16]),
            Err(Error::NonDeterminism { position: 0, .. })
        ));
    }

    #[test]
    fn child_ids_depend_on_attempt_and_position() {
        let mut a = fresh();
        let (c0, _) = a.child("t", [0; 16]).unwrap();
        let (c1, _) = a.child("t", [0; 16]).unwrap();
        let mut b = Recorder::new("wf".into(), INV, 1, Vec::new());
        let (d0, _) = b.child("t", [0; 16]).unwrap();
        assert_ne!(c0, c1);
        assert_ne!(c0, d0);
    }

    #[test]
    fn strict_replay_refuses_to_run_past_or_stop_short_of_the_journal() {
        let mut rec = fresh();
        rec.random_u64().unwrap();
        rec.uuid().unwrap();
        let (_, journal) = rec.take_new();
        let mut longer = Recorder::new("wf".into(), INV, 0, journal.clone()).strict();
        longer.random_u64().unwrap();
        longer.uuid().unwrap();
        assert!(matches!(
            longer.time(),
            Err(Error::NonDeterminism { position: 2, .. })
        ));
        let mut shorter = Recorder::new("wf".into(), INV, 0, journal).strict();
        shorter.random_u64().unwrap();
        let err = shorter.finish().unwrap_err().to_string();
        assert!(
            err.contains("uuid()") && err.contains("position 1"),
            "{err}"
        );
    }

    #[test]
    fn a_resumed_execution_that_stops_short_of_its_journal_has_diverged() {
        let mut rec = fresh();
        rec.random_u64().unwrap();
        rec.record_side_effect("charge", vec![1], false);
        let (_, journal) = rec.take_new();
        let mut resumed = Recorder::new("wf".into(), INV, 0, journal.clone());
        resumed.random_u64().unwrap();
        let err = resumed.finish().unwrap_err().to_string();
        assert!(
            err.contains("side_effect(\"charge\")") && err.contains("position 1"),
            "{err}"
        );
        let mut whole = Recorder::new("wf".into(), INV, 0, journal);
        whole.random_u64().unwrap();
        assert_eq!(whole.side_effect("charge").unwrap(), Some((vec![1], false)));
        whole.finish().unwrap();
    }

    #[test]
    fn a_failed_side_effect_replays_as_failed() {
        let mut rec = fresh();
        assert_eq!(rec.side_effect("fx").unwrap(), None);
        rec.record_side_effect("fx", b"error".to_vec(), true);
        let (_, journal) = rec.take_new();
        let mut again = Recorder::new("wf".into(), INV, 0, journal).strict();
        assert_eq!(
            again.side_effect("fx").unwrap(),
            Some((b"error".to_vec(), true))
        );
    }

    #[test]
    fn patched_is_true_live_and_on_its_marker_false_over_older_entries() {
        let mut new = fresh();
        assert!(new.patched("v2"));
        assert!(new.patched("v2"), "one answer per execution");
        new.random_u64().unwrap();
        let (_, journal) = new.take_new();
        assert_eq!(journal.len(), 2, "one marker, then the draw");
        let mut again = Recorder::new("wf".into(), INV, 0, journal.clone()).strict();
        assert!(again.patched("v2"));
        again.random_u64().unwrap();
        again.finish().unwrap();

        // Recorded before the change: the draw is at the marker's position.
        let mut old = fresh();
        old.random_u64().unwrap();
        let (_, old_journal) = old.take_new();
        let mut replay = Recorder::new("wf".into(), INV, 0, old_journal.clone()).strict();
        assert!(!replay.patched("v2"));
        assert_eq!(replay.position(), 0);
        replay.random_u64().unwrap();
        replay.finish().unwrap();
        let mut at_end = Recorder::new("wf".into(), INV, 0, old_journal.clone()).strict();
        at_end.random_u64().unwrap();
        assert!(
            !at_end.patched("v2"),
            "past the end of a finished run: the old code"
        );
        at_end.finish().unwrap();
        // Another change's marker is not this one's.
        let mut other = Recorder::new("wf".into(), INV, 0, journal.clone());
        assert!(!other.patched("v3"));
        assert_eq!(other.position(), 0);

        // Resumed, and the old run stopped before this point: live, the marker is recorded.
        let mut resumed = Recorder::new("wf".into(), INV, 0, old_journal);
        resumed.random_u64().unwrap();
        assert!(resumed.patched("v2"));
        let (first, new_entries) = resumed.take_new();
        assert_eq!(
            (first, new_entries[0].op.clone()),
            (1, Op::Patch("v2".into()))
        );

        // deprecate_patch skips the marker if present, and never records.
        let mut deprecated = Recorder::new("wf".into(), INV, 0, journal).strict();
        deprecated.deprecate_patch("v2");
        deprecated.random_u64().unwrap();
        deprecated.finish().unwrap();
        let mut live = fresh();
        live.deprecate_patch("v2");
        assert_eq!(live.take_new().1.len(), 0);
    }

    #[test]
    fn time_after_replay_keeps_increasing() {
        let mut rec = fresh();
        let t0 = rec.time().unwrap();
        let (_, journal) = rec.take_new();
        let mut replay = Recorder::new("wf".into(), INV, 0, journal);
        assert_eq!(replay.time().unwrap(), t0);
        assert!(replay.time().unwrap() > t0);
    }

    #[test]
    fn entries_repeating_a_key_share_one_copy_of_it() {
        let mut rec = fresh();
        rec.data_write("key", [0; 16]).unwrap();
        rec.record_data_read("key", None);
        let (_, entries) = rec.take_new();
        let (Op::DataWrite(w), Op::DataRead(r)) = (&entries[0].op, &entries[1].op) else {
            panic!("unexpected entries {entries:?}");
        };
        assert!(Arc::ptr_eq(&w.key, &r.key));
    }

    #[test]
    fn volatile_pending_tracks_unregenerable_values() {
        let mut rec = fresh();
        rec.random_u64().unwrap();
        rec.child("t", [0; 16]).unwrap();
        assert!(!rec.volatile_pending());
        rec.time().unwrap();
        assert!(rec.volatile_pending());
        rec.take_new();
        assert!(rec.volatile_pending(), "staged is not durable");
        rec.mark_durable();
        assert!(!rec.volatile_pending());
    }
}
