//! The work queue and its leases on PostgreSQL, judged by the database's clock.
//!
//! A claim locks the queue row of the first ready invocation with `FOR UPDATE SKIP LOCKED`
//! (so concurrent claimers on any host take different invocations without waiting on each
//! other) and takes its lease with an upsert that applies only while the previous lease has
//! expired; each claim, renewal and release is one statement, committed on its own before it
//! returns (one round trip).

use super::conn::{OpError, OpResult, Pool};
use super::notify;
use super::schema::Sql;
use crate::error::{Error, Result};
use crate::store::{Claim, Lease};

/// Claim `only` (when given, if it is queued and has no live lease) or the first ready
/// invocation in enqueue order, leasing it to `owner` for `lease_ms` of database time: one
/// statement, committed on its own (`Sql::claim_next`).
pub(super) fn claim(
    pool: &Pool,
    sql: &Sql,
    only: &[u8; 16],
    owner: &[u8],
    lease_ms: u64,
) -> Result<Option<Claim>> {
    let lease_ms = ms(lease_ms);
    pool.run("claiming", |session| {
        let st = session.statement(sql.claim_one)?;
        let id = only.as_slice();
        let rows = session.client.query(&st, &[&owner, &lease_ms, &id])?;
        rows.iter().map(claim_row).next().transpose()
    })
}

/// Claim up to `most` ready invocations in queue order, in one statement.
pub(super) fn claim_many(
    pool: &Pool,
    sql: &Sql,
    owner: &[u8],
    lease_ms: u64,
    most: usize,
) -> Result<Vec<Claim>> {
    if most == 0 {
        return Ok(Vec::new());
    }
    let lease_ms = ms(lease_ms);
    let most = i64::try_from(most).unwrap_or(i64::MAX);
    pool.run("claiming", |session| {
        let st = session.statement(sql.claim_next)?;
        let rows = session.client.query(&st, &[&owner, &lease_ms, &most])?;
        rows.iter().map(claim_row).collect()
    })
}

fn claim_row(row: &postgres::Row) -> OpResult<Claim> {
    Ok(Claim {
        invocation: id16(row.get(0))?,
        token: row.get::<_, i64>(1) as u64,
        expires_ms: row.get::<_, i64>(2).max(0) as u64,
        taken_over: row.get::<_, bool>(3),
    })
}

/// Extend the lease held with `token` to `lease_ms` from now (database time).
pub(super) fn renew(
    pool: &Pool,
    sql: &Sql,
    inv: &[u8; 16],
    token: u64,
    lease_ms: u64,
) -> Result<()> {
    let lease_ms = ms(lease_ms);
    pool.run("renewing a lease", |session| {
        let st = session.statement(sql.renew)?;
        let n = session
            .client
            .execute(&st, &[&inv.as_slice(), &(token as i64), &lease_ms])?;
        if n == 0 {
            return Err(stale(session, sql, inv, token));
        }
        Ok(())
    })
}

/// Give up the lease held with `token` under a fresh token: ownerless unless `holder_died`,
/// unclaimable until `until_ms`.
pub(super) fn release(
    pool: &Pool,
    sql: &Sql,
    inv: &[u8; 16],
    token: u64,
    holder_died: bool,
    until_ms: u64,
) -> Result<()> {
    let until = ms(until_ms);
    pool.run("releasing a lease", |session| {
        let st = session.statement(sql.release)?;
        let n = session.client.execute(
            &st,
            &[&inv.as_slice(), &(token as i64), &holder_died, &until],
        )?;
        if n == 0 {
            return Err(stale(session, sql, inv, token));
        }
        if until_ms == 0 {
            // Claimable at once: wake an idle worker (a hint, see `notify.rs`).
            if let Ok(st) = session.statement(sql.notify) {
                let _ = session.client.execute(&st, &[&vec![notify::WORK]]);
            }
        }
        Ok(())
    })
}

pub(super) fn lease(pool: &Pool, sql: &Sql, inv: &[u8; 16]) -> Result<Option<Lease>> {
    pool.run("reading a lease", |session| {
        let st = session.statement(sql.lease)?;
        let row = session.client.query_opt(&st, &[&inv.as_slice()])?;
        Ok(row.map(|r| Lease {
            owner: r.get::<_, Vec<u8>>(0),
            expires_ms: r.get::<_, i64>(1).max(0) as u64,
            token: r.get::<_, i64>(2) as u64,
        }))
    })
}

pub(super) fn leases(pool: &Pool, sql: &Sql) -> Result<Vec<([u8; 16], Lease)>> {
    pool.run("listing leases", |session| {
        let st = session.statement(sql.leases)?;
        let mut out = Vec::new();
        for r in session.client.query(&st, &[])? {
            let lease = Lease {
                owner: r.get::<_, Vec<u8>>(1),
                expires_ms: r.get::<_, i64>(2).max(0) as u64,
                token: r.get::<_, i64>(3) as u64,
            };
            out.push((id16(r.get(0))?, lease));
        }
        Ok(out)
    })
}

pub(super) fn queued(pool: &Pool, sql: &Sql) -> Result<Vec<[u8; 16]>> {
    pool.run("listing the queue", |session| {
        let st = session.statement(sql.queued)?;
        let rows = session.client.query(&st, &[])?;
        rows.iter().map(|r| id16(r.get(0))).collect()
    })
}

/// The database's clock, in ms since the epoch.
pub(super) fn now_ms(pool: &Pool, sql: &Sql) -> Result<u64> {
    pool.run("reading the database clock", |session| {
        let st = session.statement(sql.now_ms)?;
        let row = session.client.query_one(&st, &[])?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    })
}

/// The lease-lost error for a write held with `token`, naming the current token.
fn stale(session: &mut super::conn::Session, sql: &Sql, inv: &[u8; 16], token: u64) -> OpError {
    let current = session
        .statement(sql.lease)
        .and_then(|st| session.client.query_opt(&st, &[&inv.as_slice()]));
    match current {
        Ok(row) => OpError::Core(Error::StaleLease {
            invocation_id: crate::ids::format(inv),
            token,
            current: row.map_or(0, |r| r.get::<_, i64>(2) as u64),
        }),
        Err(e) => OpError::Pg(e),
    }
}

/// An invocation id column, which the store only ever writes as 16 bytes.
fn id16(raw: &[u8]) -> OpResult<[u8; 16]> {
    <[u8; 16]>::try_from(raw).map_err(|_| {
        OpError::Core(Error::InvalidArgument(format!(
            "the store holds a malformed invocation id of {} bytes",
            raw.len()
        )))
    })
}

/// Milliseconds as PostgreSQL's bigint.
fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Send a done-style notice for `inv` now (`Store::announce`). A hint: a failure is dropped,
/// and the caller's waiters poll anyway.
pub(super) fn announce(pool: &Pool, sql: &Sql, inv: &[u8; 16]) {
    let payload = vec![notify::done_payload(inv)];
    let _ = pool.run("sending a change notice", |session| {
        let st = session.statement(sql.notify)?;
        session.client.execute(&st, &[&payload])?;
        Ok(())
    });
}
