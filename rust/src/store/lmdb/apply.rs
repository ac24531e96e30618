//! Applying a batch of staged writes inside one write transaction, with fencing.

use heed::RwTxn;

use super::env::Handle;
use super::keys::{self, COUNTER_QUEUE_SEQ};
use super::TxnResult;
use super::{FlushReport, WriteOp};
use crate::store::segments;

/// Apply `ops` in order. A fenced write whose token is not the invocation's current lease
/// token (when it has a lease, live, released or completed) is skipped and listed in the
/// report, once per invocation.
pub(crate) fn apply(h: &Handle, txn: &mut RwTxn, ops: &[WriteOp]) -> TxnResult<FlushReport> {
    let mut report = FlushReport::default();
    let mut next_seq: Option<u64> = None;
    for op in ops {
        if let Some(fence) = op.fence() {
            if let Some(current) = current_token(h, txn, &fence.invocation)? {
                if current != fence.token {
                    if !report
                        .rejected
                        .iter()
                        .any(|(f, _)| f.invocation == fence.invocation)
                    {
                        report.rejected.push((*fence, current));
                    }
                    continue;
                }
            }
        }
        match op {
            WriteOp::Journal {
                invocation,
                first_position,
                entries,
                ..
            } => {
                for (position, segment) in segments(*first_position, entries) {
                    let key = keys::journal_key(invocation, position);
                    h.dbs.journal.put(txn, &key, &segment)?;
                }
                // The journal's end record (its length) sorts right after its segments, on the
                // page of the last one. Journals only grow, so the last write has the end.
                let end_key = keys::journal_key(invocation, keys::JOURNAL_END);
                let end = first_position + entries.len() as u64;
                h.dbs.journal.put(txn, &end_key, &end.to_be_bytes())?;
            }
            WriteOp::DeleteJournal { journal, .. } => {
                // Its segments and its end record, which sorts after them: all its keys.
                let first = keys::journal_key(journal, 0);
                let end = keys::journal_key(journal, keys::JOURNAL_END);
                h.dbs.journal.delete_range(txn, &first, &end)?;
            }
            WriteOp::Put {
                table, key, value, ..
            } => h.dbs.table(*table).put(txn, key, value)?,
            WriteOp::Delete { table, key, .. } => {
                h.dbs.table(*table).delete(txn, key)?;
            }
            WriteOp::Enqueue { invocation, .. } => {
                if h.dbs.queued.get(txn, invocation)?.is_none() {
                    let seq = match next_seq {
                        Some(s) => s,
                        None => read_counter(h, txn, COUNTER_QUEUE_SEQ)? + 1,
                    };
                    h.dbs
                        .queue
                        .put(txn, &keys::queue_key(seq, invocation), &[])?;
                    h.dbs.queued.put(txn, invocation, &seq.to_be_bytes())?;
                    next_seq = Some(seq + 1);
                }
            }
            WriteOp::Complete { invocation, .. } => {
                let seq = h
                    .dbs
                    .queued
                    .get(txn, invocation)?
                    .and_then(keys::decode_u64);
                if let Some(seq) = seq {
                    h.dbs.queue.delete(txn, &keys::queue_key(seq, invocation))?;
                    h.dbs.queued.delete(txn, invocation)?;
                }
                // Keep the last token as a tombstone (no owner, expired): a zombie still
                // holding an older token stays fenced off after completion.
                if let Some(token) = current_token(h, txn, invocation)? {
                    let tombstone = super::Lease {
                        owner: Vec::new(),
                        expires_ms: 0,
                        token,
                    };
                    h.dbs
                        .leases
                        .put(txn, invocation, &keys::encode_lease(&tombstone))?;
                }
            }
        }
    }
    if let Some(next) = next_seq {
        h.dbs
            .counters
            .put(txn, COUNTER_QUEUE_SEQ, &(next - 1).to_be_bytes())?;
    }
    Ok(report)
}

/// The token of the invocation's lease, if it has one.
pub(crate) fn current_token(
    h: &Handle,
    txn: &heed::RoTxn,
    invocation: &[u8; 16],
) -> TxnResult<Option<u64>> {
    Ok(h.dbs
        .leases
        .get(txn, invocation)?
        .and_then(keys::decode_lease)
        .map(|l| l.token))
}

/// A counter's value (0 when never written).
pub(crate) fn read_counter(h: &Handle, txn: &heed::RoTxn, key: &[u8]) -> TxnResult<u64> {
    Ok(h.dbs
        .counters
        .get(txn, key)?
        .and_then(keys::decode_u64)
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use crate::entry::{Entry, Op};
    use crate::store::{LmdbStore, StoreOptions, WriteOp, SEGMENT_MAX_ENTRIES};

    fn segment(invocation: [u8; 16], first_position: u64, n: usize) -> WriteOp {
        WriteOp::Journal {
            invocation,
            first_position,
            entries: (0..n as u64).map(|i| Entry::new(Op::Random(i))).collect(),
            fence: None,
        }
    }

    #[test]
    fn deleting_a_journal_removes_every_segment_and_its_end_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            sync: false,
            map_size: 8 << 20,
            ..StoreOptions::default()
        };
        let store = LmdbStore::open(dir.path(), options.clone()).unwrap();
        // Neighbours on both sides of the journal's keys, and a journal of three segments.
        let (before, doomed, after) = ([4; 16], [5; 16], [6; 16]);
        store.stage(segment(before, 0, 2));
        store.stage(segment(doomed, 0, SEGMENT_MAX_ENTRIES + 1));
        store.flush().unwrap();
        store.stage(segment(doomed, SEGMENT_MAX_ENTRIES as u64 + 1, 3));
        store.stage(segment(after, 0, 1));
        store.flush().unwrap();
        store.stage(WriteOp::DeleteJournal {
            journal: doomed,
            fence: None,
        });
        assert!(
            store.journal(&doomed).unwrap().is_empty(),
            "gone before the flush"
        );
        store.flush().unwrap();
        assert!(store.journal(&doomed).unwrap().is_empty(), "and after it");
        assert_eq!(store.journal(&before).unwrap().len(), 2);
        assert_eq!(store.journal(&after).unwrap().len(), 1);
        // Written again from position 0, it reads as a journal of its own (no stale end).
        store.stage(segment(doomed, 0, 2));
        store.flush().unwrap();
        assert_eq!(store.journal(&doomed).unwrap().len(), 2);
        drop(store);
        let store = LmdbStore::open(dir.path(), options).unwrap();
        assert_eq!(store.journal(&doomed).unwrap().len(), 2);
    }
}
