//! The staging buffer's contents: writes in order, with the index that lets reads find the
//! latest write of a key and folds rewrites of a staged key into one write (see `commit.rs`
//! for the buffer's lock and commit protocol).

use std::collections::HashMap;

use super::{Fence, Table, WriteOp};
use crate::entry::Entry;

/// Hash maps of the staging index. The keys come from the program's own writes, not from an
/// adversary, so a fast non-cryptographic hash is the right trade.
pub(super) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Writes in order, with an index so reads find the latest write of a key (or the journal
/// segments of an invocation) without scanning everything staged.
#[derive(Default)]
pub(crate) struct Batch {
    pub ops: Vec<WriteOp>,
    /// Per table: key → position in `ops` of its latest Put/Delete (looked up by `&[u8]`,
    /// without building a key).
    latest: [Map<Vec<u8>, usize>; 2],
    /// journal id → positions in `ops` of its segments and deletes, oldest first.
    journals: Map<[u8; 16], Vec<usize>>,
    /// Position of the last queue write (Enqueue/Complete). A write to a key is folded into an
    /// earlier write of the same key only when no queue write lies between them: a Complete
    /// changes the lease a later fenced write is checked against.
    barrier: Option<usize>,
}

fn table_index(table: Table) -> usize {
    match table {
        Table::Invocations => 0,
        Table::Data => 1,
    }
}

impl Batch {
    pub(super) fn push(&mut self, op: WriteOp) {
        let op = match self.extend_segment(op) {
            None => return,
            Some(op) => op,
        };
        if let Some(op) = self.overwrite(op) {
            self.append(op);
        }
    }

    /// Add `op` at the end and index it (no merging or folding).
    fn append(&mut self, op: WriteOp) {
        let at = self.ops.len();
        match &op {
            WriteOp::Put { table, key, .. } | WriteOp::Delete { table, key, .. } => {
                self.latest[table_index(*table)].insert(key.clone(), at);
            }
            WriteOp::Journal { invocation, .. }
            | WriteOp::DeleteJournal {
                journal: invocation,
                ..
            } => self.journals.entry(*invocation).or_default().push(at),
            WriteOp::Enqueue { .. } | WriteOp::Complete { .. } => self.barrier = Some(at),
        }
        self.ops.push(op);
    }

    /// Append `entries` (drained; the buffer keeps its capacity) to `invocation`'s journal,
    /// continuing its last staged segment when it can.
    pub(super) fn append_journal(
        &mut self,
        invocation: [u8; 16],
        first_position: u64,
        entries: &mut Vec<Entry>,
        fence: Option<Fence>,
    ) {
        if let Some(prev) = self.open_segment(&invocation, first_position, fence) {
            prev.append(entries);
            return;
        }
        self.push(WriteOp::Journal {
            invocation,
            first_position,
            entries: std::mem::take(entries),
            fence,
        });
    }

    /// The entries of `invocation`'s last staged segment when a segment starting at
    /// `first_position` with `fence` continues it.
    fn open_segment(
        &mut self,
        invocation: &[u8; 16],
        first_position: u64,
        fence: Option<Fence>,
    ) -> Option<&mut Vec<Entry>> {
        let &at = self.journals.get(invocation)?.last()?;
        match &mut self.ops[at] {
            WriteOp::Journal {
                first_position: prev_first,
                entries: prev,
                fence: prev_fence,
                ..
            } if *prev_fence == fence && *prev_first + prev.len() as u64 == first_position => {
                Some(prev)
            }
            _ => None,
        }
    }

    /// Stage a Put of a borrowed key, folded like `overwrite` does; the key is copied only when
    /// it is not already staged as a Put that takes the new value.
    pub(super) fn put(&mut self, table: Table, key: &[u8], value: Vec<u8>, fence: Option<Fence>) {
        match self.foldable(table, key, fence).map(|at| &mut self.ops[at]) {
            Some(WriteOp::Put { value: v, .. }) => *v = value,
            // A staged Delete of the key (or nothing to fold into): a Put with its own key.
            folded => {
                let op = WriteOp::Put {
                    table,
                    key: key.to_vec(),
                    value,
                    fence,
                };
                match folded {
                    Some(slot) => *slot = op,
                    None => self.append(op),
                }
            }
        }
    }

    /// The position of the staged Put/Delete of `key` that a new write with `fence` may replace
    /// in place: same fence, and no queue write in between.
    fn foldable(&self, table: Table, key: &[u8], fence: Option<Fence>) -> Option<usize> {
        let at = *self.latest[table_index(table)].get(key)?;
        if self.barrier.is_some_and(|b| b > at) {
            return None;
        }
        match &self.ops[at] {
            WriteOp::Put { fence: f, .. } | WriteOp::Delete { fence: f, .. } if *f == fence => {
                Some(at)
            }
            _ => None,
        }
    }

    /// Fold a Put/Delete into the staged write of the same key it supersedes (same fence, no
    /// queue write in between) instead of keeping both: one batch commits atomically, so only
    /// the last value of a key was ever going to be stored. Keeps a loop that rewrites one key
    /// from growing the buffer. Returns the op when it was not folded.
    fn overwrite(&mut self, op: WriteOp) -> Option<WriteOp> {
        let (table, key, fence) = match &op {
            WriteOp::Put {
                table, key, fence, ..
            }
            | WriteOp::Delete { table, key, fence } => (*table, key, *fence),
            _ => return Some(op),
        };
        let Some(at) = self.foldable(table, key, fence) else {
            return Some(op);
        };
        self.ops[at] = op;
        None
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
        match self.open_segment(&invocation, first_position, fence) {
            Some(prev) => {
                prev.extend(entries);
                None
            }
            None => Some(WriteOp::Journal {
                invocation,
                first_position,
                entries,
                fence,
            }),
        }
    }

    /// `Some(Some(value))` staged Put, `Some(None)` staged Delete, `None` not staged.
    pub(super) fn latest(&self, table: Table, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let at = *self.latest[table_index(table)].get(key)?;
        match &self.ops[at] {
            WriteOp::Put { value, .. } => Some(Some(value.clone())),
            _ => Some(None),
        }
    }

    /// Add the staged segments of journal `invocation` to `out`; a staged delete of the
    /// journal drops the segments before it (in `out` too). Whether it met a delete.
    pub(super) fn journal(&self, invocation: &[u8; 16], out: &mut Vec<(u64, Vec<Entry>)>) -> bool {
        let mut deleted = false;
        for &at in self.journals.get(invocation).into_iter().flatten() {
            match &self.ops[at] {
                WriteOp::Journal {
                    first_position,
                    entries,
                    ..
                } => out.push((*first_position, entries.clone())),
                WriteOp::DeleteJournal { .. } => {
                    out.clear();
                    deleted = true;
                }
                _ => {}
            }
        }
        deleted
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::entry::Op;

    /// A fence of invocation `[1; 16]` with `token`.
    fn fence(token: u64) -> Option<Fence> {
        Some(Fence {
            invocation: [1; 16],
            token,
        })
    }

    pub(in crate::store) fn put(key: &[u8], value: &[u8], token: Option<u64>) -> WriteOp {
        WriteOp::Put {
            table: Table::Data,
            key: key.to_vec(),
            value: value.to_vec(),
            fence: token.and_then(fence),
        }
    }

    #[test]
    fn rewriting_a_key_keeps_one_staged_write_with_the_last_value() {
        let mut b = Batch::default();
        for i in 0..1000u32 {
            b.push(put(b"k", &i.to_le_bytes(), Some(7)));
        }
        b.put(Table::Data, b"k", b"last".to_vec(), fence(7));
        assert_eq!(b.ops.len(), 1);
        assert_eq!(b.latest(Table::Data, b"k"), Some(Some(b"last".to_vec())));
        assert_eq!(b.latest(Table::Invocations, b"k"), None, "tables are apart");
        b.push(WriteOp::Delete {
            table: Table::Data,
            key: b"k".to_vec(),
            fence: fence(7),
        });
        b.put(Table::Data, b"k", b"again".to_vec(), fence(7));
        assert_eq!(
            b.ops.len(),
            1,
            "a Put folds into a staged Delete of the key"
        );
        assert_eq!(b.latest(Table::Data, b"k"), Some(Some(b"again".to_vec())));
    }

    #[test]
    fn a_write_under_another_fence_or_past_a_queue_write_is_kept_apart() {
        let mut b = Batch::default();
        b.push(put(b"k", b"1", Some(7)));
        b.push(put(b"k", b"2", Some(8)));
        assert_eq!(b.ops.len(), 2, "another token is checked on its own");
        b.push(WriteOp::Complete {
            invocation: [1; 16],
            fence: None,
            notice: true,
        });
        b.push(put(b"k", b"3", Some(8)));
        assert_eq!(b.ops.len(), 4, "a queue write in between keeps the order");
        assert_eq!(b.latest(Table::Data, b"k"), Some(Some(b"3".to_vec())));
    }

    #[test]
    fn journal_appends_drain_the_buffer_and_continue_the_segment() {
        let mut b = Batch::default();
        let mut buf = vec![Entry::new(Op::Random(1)), Entry::new(Op::Random(2))];
        b.append_journal([3; 16], 0, &mut buf, None);
        assert!(buf.is_empty());
        buf.push(Entry::new(Op::Random(3)));
        b.append_journal([3; 16], 2, &mut buf, None);
        assert!(buf.is_empty());
        buf.push(Entry::new(Op::Random(9)));
        b.append_journal([3; 16], 7, &mut buf, None);
        assert_eq!(b.ops.len(), 2, "a gap starts a new segment");
        let mut out = Vec::new();
        assert!(!b.journal(&[3; 16], &mut out));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[0].1.len()), (0, 3));
        assert_eq!((out[1].0, out[1].1.len()), (7, 1));
    }

    #[test]
    fn a_staged_journal_delete_hides_the_segments_before_it() {
        let mut b = Batch::default();
        let mut buf = vec![Entry::new(Op::Random(1))];
        b.append_journal([3; 16], 0, &mut buf, None);
        b.push(WriteOp::DeleteJournal {
            journal: [3; 16],
            fence: None,
        });
        let mut out = vec![(0, vec![Entry::new(Op::Random(0))])];
        assert!(b.journal(&[3; 16], &mut out), "the delete is reported");
        assert!(out.is_empty(), "earlier segments, staged or not, are gone");
        // A segment after the delete starts the journal afresh, never merged into one before.
        buf.push(Entry::new(Op::Random(2)));
        b.append_journal([3; 16], 0, &mut buf, None);
        assert_eq!(b.ops.len(), 3);
        assert!(b.journal(&[3; 16], &mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, vec![Entry::new(Op::Random(2))]);
        let mut other = Vec::new();
        assert!(
            !b.journal(&[4; 16], &mut other),
            "other journals are untouched"
        );
    }
}
