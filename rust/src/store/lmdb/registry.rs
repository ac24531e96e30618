//! One `LmdbStore` per canonical path per process.
//!
//! LMDB must not open the same environment twice in one process (two handles would each
//! take the lock file and defeat its reader accounting), and heed refuses it with
//! `EnvAlreadyOpened`. So `LmdbStore::open` looks the canonical path (symlinks and relative paths
//! resolved) up here first and shares the live `LmdbStore`; the registry holds weak references so
//! a store closes when its last user drops it. A `LmdbStore` removes itself and closes its
//! environment while holding the registry lock, so a concurrent reopen never meets a
//! half-closed environment.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use super::LmdbStore;
use crate::error::Result;

type Stores = HashMap<PathBuf, Weak<LmdbStore>>;

static STORES: LazyLock<Mutex<Stores>> = LazyLock::new(Mutex::default);

pub(crate) fn lock() -> MutexGuard<'static, Stores> {
    STORES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The live store at `canonical`, or a new one made by `open`.
pub(crate) fn shared(
    canonical: PathBuf,
    open: impl FnOnce(PathBuf) -> Result<LmdbStore>,
) -> Result<Arc<LmdbStore>> {
    let mut stores = lock();
    if let Some(store) = stores.get(&canonical).and_then(Weak::upgrade) {
        return Ok(store);
    }
    let store = Arc::new(open(canonical.clone())?);
    stores.insert(canonical, Arc::downgrade(&store));
    Ok(store)
}
