//! A flush on PostgreSQL: one statement holding a batch of staged writes, fenced.
//!
//! The writes are folded into one row set per kind (the last write of a key wins; queue
//! membership follows the last enqueue or completion) and sent as the arrays of one statement
//! (`Sql::flush`), run outside any explicit transaction: a single statement is a transaction
//! of its own, so a flush is one round trip however many writes it holds. That statement first
//! share-locks the lease rows of every invocation whose writes carry a fence, so no claim can
//! change a token until it commits, and writes nothing when a fence's token is not the
//! invocation's current lease token (when it has a lease): it returns those invocations and
//! their current tokens instead. The batch is then folded again without the refused writes
//! (reported once per invocation, as on LMDB) and sent again.
//!
//! Every write is idempotent (journal segments and enqueues are inserted only when missing,
//! puts are upserts, whole journals deleted are never written by the same flush), so a commit
//! whose outcome the connection lost can be run again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::conn::{OpResult, Pool, Session};
use super::notify;
use super::schema::Sql;

use crate::error::Result;
use crate::store::{segments, Fence, FlushReport, Table, WriteOp};

/// The batch folded into the rows each statement takes.
#[derive(Default)]
struct Rows {
    /// (invocation, token) of every fence the kept writes carry.
    fences: BTreeSet<([u8; 16], u64)>,
    journal: (Vec<Vec<u8>>, Vec<i64>, Vec<Vec<u8>>),
    /// Final value (None: deleted) per key, per table.
    invocations: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    data: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Whether each invocation ends the batch queued (enqueued) or not (completed).
    queued: BTreeMap<[u8; 16], bool>,
    /// Invocations enqueued, in order of their (last) enqueue.
    enqueue_order: Vec<[u8; 16]>,
    completed: BTreeSet<[u8; 16]>,
    /// Journals deleted whole (before the segments of `journal` are inserted).
    dropped_journals: BTreeSet<[u8; 16]>,
    /// Completed invocations whose waiters elsewhere are told (`WriteOp::Complete::notice`).
    announced: BTreeSet<[u8; 16]>,
}

/// Commit `ops` in one transaction; the fenced writes refused.
pub(super) fn commit(pool: &Pool, sql: &Sql, ops: &[WriteOp]) -> Result<FlushReport> {
    pool.run("committing", |session| run(session, sql, ops))
}

fn run(session: &mut Session, sql: &Sql, ops: &[WriteOp]) -> OpResult<FlushReport> {
    let flush = session.statement(sql.flush)?;
    // The current token of each invocation a pass found a stale fence of.
    let mut tokens: HashMap<[u8; 16], u64> = HashMap::new();
    loop {
        let mut report = FlushReport::default();
        let rows = fold(ops, &tokens, &mut report);
        let (fence_ids, fence_tokens): (Vec<&[u8]>, Vec<i64>) = rows
            .fences
            .iter()
            .map(|(id, token)| (id.as_slice(), *token as i64))
            .unzip();
        let (inv_keys, inv_values, inv_gone) = split(&rows.invocations);
        let (data_keys, data_values, data_gone) = split(&rows.data);
        let leaving: Vec<&[u8]> = rows
            .queued
            .iter()
            .filter(|(_, queued)| !**queued)
            .map(|(id, _)| id.as_slice())
            .collect();
        let done: Vec<&[u8]> = rows.completed.iter().map(|id| id.as_slice()).collect();
        let joining: Vec<&[u8]> = rows
            .enqueue_order
            .iter()
            .filter(|id| rows.queued.get(*id) == Some(&true))
            .map(|id| id.as_slice())
            .collect();
        let (ids, positions, segments) = &rows.journal;
        let dropped: Vec<&[u8]> = rows
            .dropped_journals
            .iter()
            .map(|id| id.as_slice())
            .collect();
        let stale = session.client.query(
            &flush,
            &[
                &fence_ids,
                &fence_tokens,
                ids,
                positions,
                segments,
                &inv_keys,
                &inv_values,
                &inv_gone,
                &data_keys,
                &data_values,
                &data_gone,
                &leaving,
                &done,
                &joining,
                &dropped,
            ],
        )?;
        if stale.is_empty() {
            let announced: Vec<&[u8]> = rows.announced.iter().map(|id| id.as_slice()).collect();
            send_notices(session, sql, !joining.is_empty(), &announced);
            return Ok(report);
        }
        // Nothing was written: fold again without the writes these tokens refuse.
        for row in stale {
            let id: &[u8] = row.get(0);
            if let Ok(id) = <[u8; 16]>::try_from(id) {
                tokens.insert(id, row.get::<_, i64>(1) as u64);
            }
        }
    }
}

/// Tell listeners that work was enqueued and which invocations finished (`notify.rs`), by a
/// statement of its own once the flush committed. Notices are hints (waiters poll as well), so
/// a failure is not the flush's: a broken connection is found by the session's next use.
fn send_notices(session: &mut Session, sql: &Sql, enqueued: bool, done: &[&[u8]]) {
    let mut payloads: Vec<String> = done.iter().map(|id| notify::done_payload(id)).collect();
    if enqueued {
        payloads.push(notify::WORK.to_owned());
    }
    if payloads.is_empty() {
        return;
    }
    if let Ok(st) = session.statement(sql.notify) {
        let _ = session.client.execute(&st, &[&payloads]);
    }
}

/// The keys and values to put, and the keys to delete, of one table's folded writes.
type Split<'a> = (Vec<&'a [u8]>, Vec<&'a [u8]>, Vec<&'a [u8]>);

fn split(table: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Split<'_> {
    let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in table {
        match value {
            Some(v) => {
                keys.push(key.as_slice());
                values.push(v.as_slice());
            }
            None => gone.push(key.as_slice()),
        }
    }
    (keys, values, gone)
}

/// Fold `ops` into statement rows, skipping (and reporting) fenced writes with a stale token.
fn fold(ops: &[WriteOp], tokens: &HashMap<[u8; 16], u64>, report: &mut FlushReport) -> Rows {
    let mut rows = Rows::default();
    for op in ops {
        if let Some(fence) = op.fence() {
            if let Some(&current) = tokens.get(&fence.invocation) {
                if current != fence.token {
                    note_rejected(report, *fence, current);
                    continue;
                }
            }
            rows.fences.insert((fence.invocation, fence.token));
        }
        match op {
            WriteOp::Journal {
                invocation,
                first_position,
                entries,
                ..
            } => {
                for (position, segment) in segments(*first_position, entries) {
                    rows.journal.0.push(invocation.to_vec());
                    rows.journal.1.push(position as i64);
                    rows.journal.2.push(segment);
                }
            }
            WriteOp::Put {
                table, key, value, ..
            } => {
                table_rows(&mut rows, *table).insert(key.clone(), Some(value.clone()));
            }
            WriteOp::Delete { table, key, .. } => {
                table_rows(&mut rows, *table).insert(key.clone(), None);
            }
            WriteOp::Enqueue { invocation, .. } => {
                // Enqueueing a queued invocation is a no-op: it keeps its place.
                if rows.queued.insert(*invocation, true) != Some(true) {
                    rows.enqueue_order.push(*invocation);
                }
            }
            WriteOp::Complete {
                invocation, notice, ..
            } => {
                rows.queued.insert(*invocation, false);
                rows.completed.insert(*invocation);
                if *notice {
                    rows.announced.insert(*invocation);
                }
            }
            WriteOp::DeleteJournal { journal, .. } => drop_journal(&mut rows, *journal),
        }
    }
    rows
}

/// Delete journal `id` whole: its segments staged before the delete are not inserted.
fn drop_journal(rows: &mut Rows, id: [u8; 16]) {
    let (ids, positions, segments) = std::mem::take(&mut rows.journal);
    for ((inv, position), segment) in ids.into_iter().zip(positions).zip(segments) {
        if inv != id {
            rows.journal.0.push(inv);
            rows.journal.1.push(position);
            rows.journal.2.push(segment);
        }
    }
    rows.dropped_journals.insert(id);
}

fn table_rows(rows: &mut Rows, table: Table) -> &mut BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    match table {
        Table::Invocations => &mut rows.invocations,
        Table::Data => &mut rows.data,
    }
}

fn note_rejected(report: &mut FlushReport, fence: Fence, current: u64) {
    if !report
        .rejected
        .iter()
        .any(|(f, _)| f.invocation == fence.invocation)
    {
        report.rejected.push((fence, current));
    }
}
