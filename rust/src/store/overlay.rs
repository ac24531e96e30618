//! Reads through the staged overlay, shared by every store: the writes this process staged
//! (or is committing) are laid over what the store has committed.
//!
//! The overlay is snapshotted *before* the committed data is read, so a commit finishing in
//! between is seen twice (harmless: the overlay wins, and carries the same values) rather than
//! not at all.

use std::collections::BTreeMap;

use super::commit::GroupCommit;
use super::{Table, WriteOp};
use crate::entry::Entry;

/// A row of the overlay: a staged value, or `None` for a staged delete.
pub(crate) type StagedRow = (Vec<u8>, Option<Vec<u8>>);

/// The staged writes of `table` under `prefix`, in staging order.
pub(crate) fn staged_rows(commit: &GroupCommit, table: Table, prefix: &[u8]) -> Vec<StagedRow> {
    commit.overlay(|op| match op {
        WriteOp::Put {
            table: t,
            key,
            value,
            ..
        } if *t == table && key.starts_with(prefix) => Some((key.clone(), Some(value.clone()))),
        WriteOp::Delete { table: t, key, .. } if *t == table && key.starts_with(prefix) => {
            Some((key.clone(), None))
        }
        _ => None,
    })
}

/// Committed `rows` with `staged` laid over them, in key order.
pub(crate) fn lay_over(
    mut rows: BTreeMap<Vec<u8>, Vec<u8>>,
    staged: Vec<StagedRow>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    for (key, value) in staged {
        match value {
            Some(v) => rows.insert(key, v),
            None => rows.remove(&key),
        };
    }
    rows.into_iter().collect()
}

/// The staged and in-flight writes of one journal (`GroupCommit::journal`).
pub(crate) struct StagedJournal {
    /// A delete of the journal is staged: what is committed of it is gone.
    pub deleted: bool,
    /// Segments (first position, entries) staged after the latest delete, oldest first.
    pub segments: Vec<(u64, Vec<Entry>)>,
}

/// Committed journal `segments` (first position, entries; in position order and contiguous)
/// followed by the `staged` ones, as one journal; only the staged ones when a delete of the
/// journal is staged. A commit that finished between the overlay snapshot and the read shows
/// a segment twice; an overlap is resolved by position (the later copy wins, with the same
/// entries). A delete committed in between finds the committed segments gone or ignored
/// alike.
pub(crate) fn concat_journal(
    mut segments: Vec<(u64, Vec<Entry>)>,
    staged: StagedJournal,
) -> Vec<Entry> {
    if staged.deleted {
        segments.clear();
    }
    let staged = staged.segments;
    let total: usize = segments.iter().chain(&staged).map(|(_, e)| e.len()).sum();
    let mut out: Vec<Entry> = Vec::with_capacity(total);
    let mut overlap = BTreeMap::new();
    for (first, entries) in segments.into_iter().chain(staged) {
        if overlap.is_empty() && first == out.len() as u64 {
            out.extend(entries);
        } else {
            if overlap.is_empty() {
                overlap.extend((0u64..).zip(out.drain(..)));
            }
            overlap.extend((first..).zip(entries));
        }
    }
    if !overlap.is_empty() {
        out.extend(overlap.into_values());
    }
    out
}
