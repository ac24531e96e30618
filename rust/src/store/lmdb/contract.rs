//! The store contract on LMDB: each operation is the `LmdbStore` method of the same name.

use super::{Claim, Fence, FlushReport, Lease, LmdbStore, Migration, Table};
use crate::entry::Entry;
use crate::error::Result;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;

use crate::store::{system_now_ms, RecoveryGuard, Staging, Store};

impl Store for LmdbStore {
    fn kind(&self) -> &'static str {
        "lmdb"
    }
    fn location(&self) -> String {
        format!("lmdb://{}", self.path().display())
    }
    fn staging(&self) -> Staging<'_> {
        LmdbStore::staging(self)
    }
    fn flush(&self) -> Result<FlushReport> {
        LmdbStore::flush(self)
    }
    fn stale_fence(&self, fence: Fence) -> Option<u64> {
        LmdbStore::stale_fence(self, fence)
    }
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        LmdbStore::get(self, table, key)
    }
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        LmdbStore::scan(self, table, prefix)
    }
    fn journal(&self, invocation: &[u8; 16]) -> Result<Vec<Entry>> {
        LmdbStore::journal(self, invocation)
    }
    fn claim_many(
        &self,
        owner: &[u8],
        lease_ms: u64,
        now_ms: u64,
        most: usize,
    ) -> Result<Vec<Claim>> {
        LmdbStore::claim_many(self, owner, lease_ms, now_ms, most)
    }
    fn claim_invocation(
        &self,
        invocation: &[u8; 16],
        owner: &[u8],
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Option<Claim>> {
        LmdbStore::claim_invocation(self, invocation, owner, lease_ms, now_ms)
    }
    fn renew(&self, invocation: &[u8; 16], token: u64, lease_ms: u64, now_ms: u64) -> Result<()> {
        LmdbStore::renew(self, invocation, token, lease_ms, now_ms)
    }
    fn release(&self, invocation: &[u8; 16], token: u64) -> Result<()> {
        LmdbStore::release(self, invocation, token)
    }
    fn defer(&self, invocation: &[u8; 16], token: u64, until_ms: u64) -> Result<()> {
        LmdbStore::defer(self, invocation, token, until_ms)
    }
    fn release_dead(&self, invocation: &[u8; 16], token: u64) -> Result<()> {
        LmdbStore::release_dead(self, invocation, token)
    }
    fn lease(&self, invocation: &[u8; 16]) -> Result<Option<Lease>> {
        LmdbStore::lease(self, invocation)
    }
    fn leases(&self) -> Result<Vec<([u8; 16], Lease)>> {
        LmdbStore::leases(self)
    }
    fn queued(&self) -> Result<Vec<[u8; 16]>> {
        LmdbStore::queued(self)
    }
    fn now_ms(&self) -> Result<u64> {
        Ok(system_now_ms())
    }
    fn commit_count(&self) -> u64 {
        LmdbStore::commit_count(self)
    }
    fn format_version(&self) -> Result<u32> {
        LmdbStore::format_version(self)
    }
    fn take_migration(&self) -> Option<Migration> {
        LmdbStore::take_migration(self)
    }
    fn recovery_lock(&self) -> Result<RecoveryGuard> {
        // An exclusive `flock` on `recover.lock` in the store directory: held by the open
        // file, so it ends with the guard or the process.
        let path = self.path().join("recover.lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| super::env::map_io(self.path(), "opening the recovery lock", e))?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Box::new(file));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(super::env::map_io(
                    self.path(),
                    "taking the recovery lock",
                    err,
                ));
            }
        }
    }
    fn owners_are_local(&self) -> bool {
        // One LMDB store is shared only by the processes of the machine it lives on.
        true
    }
}
