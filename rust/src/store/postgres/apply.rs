//! A flush on PostgreSQL: one transaction holding a batch of staged writes, fenced.
//!
//! The lease rows of every invocation whose writes carry a fence are read and share-locked
//! first, so no claim can change a token until the transaction ends; a fenced write whose
//! token is not the invocation's current lease token (when it has a lease) is skipped and
//! reported once per invocation, as on LMDB. The writes are then folded into one statement
//! per kind (the last write of a key wins; queue membership follows the last enqueue or
//! completion), so a flush costs a fixed number of round trips however many writes it holds.
//!
//! Every statement is idempotent (journal segments and enqueues are inserted only when
//! missing, puts are upserts), so a commit whose outcome the connection lost can be run again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::conn::{OpResult, Pool, Session};
use super::schema::Sql;
use crate::entry::encode_segment;
use crate::error::Result;
use crate::store::{Fence, FlushReport, Table, WriteOp, SEGMENT_MAX_ENTRIES};

/// The batch folded into the rows each statement takes.
#[derive(Default)]
struct Rows {
    journal: (Vec<Vec<u8>>, Vec<i64>, Vec<Vec<u8>>),
    /// Final value (None: deleted) per key, per table.
    invocations: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    data: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Whether each invocation ends the batch queued (enqueued) or not (completed).
    queued: BTreeMap<[u8; 16], bool>,
    /// Invocations enqueued, in order of their (last) enqueue.
    enqueue_order: Vec<[u8; 16]>,
    completed: BTreeSet<[u8; 16]>,
}

/// Commit `ops` in one transaction; the fenced writes refused.
pub(super) fn commit(pool: &Pool, sql: &Sql, ops: &[WriteOp]) -> Result<FlushReport> {
    let fenced: BTreeSet<[u8; 16]> = ops
        .iter()
        .filter_map(|op| op.fence())
        .map(|f| f.invocation)
        .collect();
    let fenced: Vec<Vec<u8>> = fenced.iter().map(|id| id.to_vec()).collect();
    pool.run("committing", |session| run(session, sql, ops, &fenced))
}

fn run(
    session: &mut Session,
    sql: &Sql,
    ops: &[WriteOp],
    fenced: &[Vec<u8>],
) -> OpResult<FlushReport> {
    // Prepared before the transaction borrows the session.
    let statements = [
        sql.fence_tokens,
        sql.append_journal,
        sql.put_invocations,
        sql.delete_invocations,
        sql.put_data,
        sql.delete_data,
        sql.dequeue,
        sql.tombstone,
        sql.enqueue,
    ]
    .map(|text| session.statement(text));
    let [fence_tokens, append_journal, put_inv, del_inv, put_data, del_data, dequeue, tombstone, enqueue] =
        statements;
    let (
        fence_tokens,
        append_journal,
        put_inv,
        del_inv,
        put_data,
        del_data,
        dequeue,
        tombstone,
        enqueue,
    ) = (
        fence_tokens?,
        append_journal?,
        put_inv?,
        del_inv?,
        put_data?,
        del_data?,
        dequeue?,
        tombstone?,
        enqueue?,
    );
    let mut tx = session.client.transaction()?;
    let mut tokens: HashMap<[u8; 16], u64> = HashMap::new();
    if !fenced.is_empty() {
        for row in tx.query(&fence_tokens, &[&fenced])? {
            let id: &[u8] = row.get(0);
            if let Ok(id) = <[u8; 16]>::try_from(id) {
                tokens.insert(id, row.get::<_, i64>(1) as u64);
            }
        }
    }
    let mut report = FlushReport::default();
    let rows = fold(ops, &tokens, &mut report);
    if !rows.journal.0.is_empty() {
        let (ids, positions, segments) = &rows.journal;
        tx.execute(&append_journal, &[ids, positions, segments])?;
    }
    for (table, put, delete) in [
        (&rows.invocations, &put_inv, &del_inv),
        (&rows.data, &put_data, &del_data),
    ] {
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
        if !keys.is_empty() {
            tx.execute(put, &[&keys, &values])?;
        }
        if !gone.is_empty() {
            tx.execute(delete, &[&gone])?;
        }
    }
    let leaving: Vec<&[u8]> = rows
        .queued
        .iter()
        .filter(|(_, queued)| !**queued)
        .map(|(id, _)| id.as_slice())
        .collect();
    if !leaving.is_empty() {
        tx.execute(&dequeue, &[&leaving])?;
    }
    if !rows.completed.is_empty() {
        let done: Vec<&[u8]> = rows.completed.iter().map(|id| id.as_slice()).collect();
        tx.execute(&tombstone, &[&done])?;
    }
    let joining: Vec<&[u8]> = rows
        .enqueue_order
        .iter()
        .filter(|id| rows.queued.get(*id) == Some(&true))
        .map(|id| id.as_slice())
        .collect();
    if !joining.is_empty() {
        tx.execute(&enqueue, &[&joining])?;
    }
    tx.commit()?;
    Ok(report)
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
        }
        match op {
            WriteOp::Journal {
                invocation,
                first_position,
                entries,
                ..
            } => {
                for (i, chunk) in entries.chunks(SEGMENT_MAX_ENTRIES).enumerate() {
                    let position = first_position + (i * SEGMENT_MAX_ENTRIES) as u64;
                    rows.journal.0.push(invocation.to_vec());
                    rows.journal.1.push(position as i64);
                    rows.journal.2.push(encode_segment(chunk));
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
            WriteOp::Complete { invocation, .. } => {
                rows.queued.insert(*invocation, false);
                rows.completed.insert(*invocation);
            }
        }
    }
    rows
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
