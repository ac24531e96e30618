//! LMDB implementation of the store (skeleton: signatures fixed, bodies being written).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Fence, Table, WriteOp};
use crate::entry::Entry;
use crate::error::Result;

/// Options of a store; mirrored by `pynenc.store.lmdb.StoreOptions` in Python.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// fsync on every commit (default true). Off: a process crash still loses nothing.
    pub sync: bool,
    /// Initial map size in bytes; the map grows automatically when full.
    pub map_size: usize,
    /// Maximum concurrent read transactions across all processes.
    pub max_readers: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { sync: true, map_size: 1 << 30, max_readers: 512 }
    }
}

/// What a flush did: writes rejected because their fencing token was stale.
#[derive(Clone, Debug, Default)]
pub struct FlushReport {
    /// (fence carried, current token) of each rejected write, at most one per invocation.
    pub rejected: Vec<(Fence, u64)>,
}

/// A claimed invocation and the lease taken on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub invocation: [u8; 16],
    pub token: u64,
    pub expires_ms: u64,
}

/// The current lease of an invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: Vec<u8>,
    pub expires_ms: u64,
    pub token: u64,
}

pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn open(_path: &Path, _options: StoreOptions) -> Result<Arc<Store>> {
        todo!()
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn stage(&self, _op: WriteOp) {
        todo!()
    }
    pub fn stage_many(&self, _ops: Vec<WriteOp>) {
        todo!()
    }
    pub fn flush(&self) -> Result<FlushReport> {
        todo!()
    }
    pub fn journal(&self, _invocation: &[u8; 16]) -> Result<Vec<Entry>> {
        todo!()
    }
    pub fn get(&self, _table: Table, _key: &[u8]) -> Result<Option<Vec<u8>>> {
        todo!()
    }
    pub fn scan(&self, _table: Table, _prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        todo!()
    }
    pub fn claim(&self, _owner: &[u8], _lease_ms: u64, _now_ms: u64) -> Result<Option<Claim>> {
        todo!()
    }
    pub fn renew(&self, _inv: &[u8; 16], _token: u64, _lease_ms: u64, _now_ms: u64) -> Result<()> {
        todo!()
    }
    pub fn release(&self, _inv: &[u8; 16], _token: u64) -> Result<()> {
        todo!()
    }
    pub fn lease(&self, _inv: &[u8; 16]) -> Result<Option<Lease>> {
        todo!()
    }
    pub fn leases(&self) -> Result<Vec<([u8; 16], Lease)>> {
        todo!()
    }
}
