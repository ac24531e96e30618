//! The work queue and its leases. Each operation here is its own write transaction,
//! committed (and synced) before it returns: a claim must be durable before the claimer
//! starts work.

use super::apply::read_counter;
use super::env::Handle;
use super::keys::{self, COUNTER_LEASE_TOKEN};
use super::{Claim, Lease, LmdbStore};
use super::{TxnError, TxnResult};
use crate::error::{Error, Result};

impl LmdbStore {
    /// Claim the first queued invocation (in enqueue order) that has no lease or whose lease
    /// expired (`expires_ms <= now_ms`): take a fresh fencing token and lease it to `owner`
    /// until `now_ms + lease_ms`. The invocation stays queued until completed.
    pub fn claim(&self, owner: &[u8], lease_ms: u64, now_ms: u64) -> Result<Option<Claim>> {
        Ok(self
            .claim_many(owner, lease_ms, now_ms, 1)?
            .into_iter()
            .next())
    }

    /// Claim up to `most` of the first queued invocations without a live lease, in queue
    /// order, in one write transaction (one commit, one fsync for all of them).
    pub fn claim_many(
        &self,
        owner: &[u8],
        lease_ms: u64,
        now_ms: u64,
        most: usize,
    ) -> Result<Vec<Claim>> {
        self.check_fork();
        if most == 0 {
            return Ok(Vec::new());
        }
        let expires_ms = now_ms.saturating_add(lease_ms);
        self.write("claiming", |h, txn| {
            let mut found = Vec::new();
            for row in h.dbs.queue.iter(txn)? {
                let (key, _) = row?;
                let Some(invocation) = keys::queue_key_invocation(key) else {
                    continue;
                };
                let lease = h
                    .dbs
                    .leases
                    .get(txn, &invocation)?
                    .and_then(keys::decode_lease);
                if !matches!(lease, Some(l) if l.expires_ms > now_ms) {
                    found.push(invocation);
                    if found.len() == most {
                        break;
                    }
                }
            }
            found
                .iter()
                .map(|invocation| take_lease(h, txn, invocation, owner, expires_ms))
                .collect()
        })
    }

    /// Claim one given invocation, if it is queued and has no live lease: the way a parent
    /// waiting on a child runs that child itself instead of starving a worker pool.
    pub fn claim_invocation(
        &self,
        inv: &[u8; 16],
        owner: &[u8],
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Option<Claim>> {
        self.check_fork();
        let expires_ms = now_ms.saturating_add(lease_ms);
        self.write("claiming an invocation", |h, txn| {
            if h.dbs.queued.get(txn, inv)?.is_none() {
                return Ok(None);
            }
            let lease = h.dbs.leases.get(txn, inv)?.and_then(keys::decode_lease);
            if matches!(lease, Some(l) if l.expires_ms > now_ms) {
                return Ok(None);
            }
            take_lease(h, txn, inv, owner, expires_ms).map(Some)
        })
    }

    /// Extend the lease of `inv` to `now_ms + lease_ms`, if `token` is still its lease token.
    pub fn renew(&self, inv: &[u8; 16], token: u64, lease_ms: u64, now_ms: u64) -> Result<()> {
        self.check_fork();
        self.write("renewing a lease", |h, txn| {
            let mut lease = self.held(h.dbs.leases.get(txn, inv)?, inv, token)?;
            lease.expires_ms = now_ms.saturating_add(lease_ms);
            h.dbs.leases.put(txn, inv, &keys::encode_lease(&lease))?;
            Ok(())
        })
    }

    /// Give up the lease of `inv` if `token` is still its lease token; the invocation stays
    /// queued and can be claimed again at once. The lease is replaced by an ownerless, expired
    /// one with a fresh token, so later writes carrying `token` are fenced off.
    pub fn release(&self, inv: &[u8; 16], token: u64) -> Result<()> {
        self.release_lease(inv, token, false, 0)
    }

    /// Release the lease of `inv` as `release` does, but leave it unclaimable until
    /// `until_ms`: for an invocation that cannot go on now (its code diverged), so workers do
    /// not take it up again at once. The next claim is not a takeover.
    pub fn defer(&self, inv: &[u8; 16], token: u64, until_ms: u64) -> Result<()> {
        self.release_lease(inv, token, false, until_ms)
    }

    /// Release the lease of `inv` for a holder known to be dead: as `release`, but the expired
    /// lease keeps its owner, so the next claim is a takeover (`Claim::taken_over`) and its
    /// execution counts as a resumption.
    pub fn release_dead(&self, inv: &[u8; 16], token: u64) -> Result<()> {
        self.release_lease(inv, token, true, 0)
    }

    fn release_lease(
        &self,
        inv: &[u8; 16],
        token: u64,
        holder_died: bool,
        until_ms: u64,
    ) -> Result<()> {
        self.check_fork();
        self.write("releasing a lease", |h, txn| {
            let held = self.held(h.dbs.leases.get(txn, inv)?, inv, token)?;
            let fresh = read_counter(h, txn, COUNTER_LEASE_TOKEN)? + 1;
            h.dbs
                .counters
                .put(txn, COUNTER_LEASE_TOKEN, &fresh.to_be_bytes())?;
            let released = Lease {
                owner: if holder_died { held.owner } else { Vec::new() },
                expires_ms: until_ms,
                token: fresh,
            };
            h.dbs.leases.put(txn, inv, &keys::encode_lease(&released))?;
            Ok(())
        })
    }

    /// The current lease of `inv`, if any (expired leases included).
    pub fn lease(&self, inv: &[u8; 16]) -> Result<Option<Lease>> {
        self.check_fork();
        self.read("reading a lease", |h, txn| {
            Ok(h.dbs.leases.get(txn, inv)?.and_then(keys::decode_lease))
        })
    }

    /// Every lease held by an owner (released and completed tombstones left out), by
    /// invocation id.
    pub fn leases(&self) -> Result<Vec<([u8; 16], Lease)>> {
        self.check_fork();
        self.read("listing leases", |h, txn| {
            let mut out = Vec::new();
            for row in h.dbs.leases.iter(txn)? {
                let (key, value) = row?;
                if let (Ok(inv), Some(lease)) =
                    (<[u8; 16]>::try_from(key), keys::decode_lease(value))
                {
                    if !lease.owner.is_empty() {
                        out.push((inv, lease));
                    }
                }
            }
            Ok(out)
        })
    }

    /// Invocations in the queue, in claim order.
    pub fn queued(&self) -> Result<Vec<[u8; 16]>> {
        self.check_fork();
        self.read("listing the queue", |h, txn| {
            let mut out = Vec::new();
            for row in h.dbs.queue.iter(txn)? {
                out.extend(keys::queue_key_invocation(row?.0));
            }
            Ok(out)
        })
    }

    /// The lease in `raw` if its token is `token`, else `StaleLease`.
    fn held(&self, raw: Option<&[u8]>, inv: &[u8; 16], token: u64) -> TxnResult<Lease> {
        match raw.and_then(keys::decode_lease) {
            Some(lease) if lease.token == token => Ok(lease),
            other => Err(TxnError::Core(Error::StaleLease {
                invocation_id: crate::ids::format(inv),
                token,
                current: other.map_or(0, |l| l.token),
            })),
        }
    }
}

/// Lease `invocation` to `owner` until `expires_ms` under a fresh fencing token.
fn take_lease(
    h: &Handle,
    txn: &mut heed::RwTxn,
    invocation: &[u8; 16],
    owner: &[u8],
    expires_ms: u64,
) -> TxnResult<Claim> {
    // A lease that still names an owner was never given back: its holder died (or stalled
    // past its expiry). Completions delete the lease; releases leave it ownerless.
    let taken_over = h
        .dbs
        .leases
        .get(txn, invocation)?
        .and_then(keys::decode_lease)
        .is_some_and(|previous| !previous.owner.is_empty());
    let token = read_counter(h, txn, COUNTER_LEASE_TOKEN)? + 1;
    h.dbs
        .counters
        .put(txn, COUNTER_LEASE_TOKEN, &token.to_be_bytes())?;
    let lease = Lease {
        owner: owner.to_vec(),
        expires_ms,
        token,
    };
    h.dbs
        .leases
        .put(txn, invocation, &keys::encode_lease(&lease))?;
    Ok(Claim {
        invocation: *invocation,
        token,
        expires_ms,
        taken_over,
    })
}
