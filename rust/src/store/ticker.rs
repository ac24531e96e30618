//! The background flusher: staged writes that no flush has taken for the store's
//! `flush_interval` (`FLUSH_INTERVAL` by default) are
//! committed by a thread of the store, so workflow data written by a task that runs on for a
//! long time reaches other processes within a few ms, not at the task's next effect boundary.
//!
//! The thread starts with the first write staged and exits after `IDLE` with nothing staged,
//! so an idle process has no thread of the store. It watches the store's `Waiting` (atomics,
//! no lock) and takes the store itself only to flush, so it never keeps a dropped store open
//! (a dropped store commits what it staged while closing). A flush error is not lost with it:
//! every thread whose writes the commit held hears of it at its own next flush (`commit.rs`).
//!
//! Fork safety: a fork while this thread holds one of the store's locks would leave the child
//! with a lock nobody can release. So the thread takes no lock while a fork is under way, and
//! a fork waits (in a `pthread_atfork` prepare handler) until the thread holds none.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once, Weak};
use std::thread;
use std::time::Duration;

use super::commit::Waiting;
use super::Store;

/// How long a staged write may wait for its writer's own flush, by default.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(5);

/// How long the thread stays with nothing staged before it exits.
const IDLE: Duration = Duration::from_millis(500);

/// Start the flusher of `store` (whose staging state is `waiting`) unless one runs.
pub(crate) fn ensure(store: &Weak<Store>, waiting: &Arc<Waiting>, tick: Duration) {
    if waiting.running.swap(true, Ordering::AcqRel) {
        return;
    }
    ON_FORK.call_once(|| {
        // SAFETY: the handlers only touch atomics and yield the CPU; `prepare` runs in the
        // parent before the fork, `parent` and `child` after it.
        unsafe {
            libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
        }
    });
    let (store, watched) = (store.clone(), Arc::clone(waiting));
    let spawned = thread::Builder::new()
        .name("pynenc-flush".into())
        .spawn(move || run(&store, &watched, tick));
    if spawned.is_err() {
        // No thread: writes still become durable at their writers' flushes.
        waiting.running.store(false, Ordering::Release);
    }
}

fn run(store: &Weak<Store>, waiting: &Waiting, tick: Duration) {
    let mut idle = Duration::ZERO;
    while store.strong_count() > 0 {
        thread::sleep(tick);
        match waiting.age() {
            Some(age) => {
                idle = Duration::ZERO;
                if age < tick {
                    continue;
                }
                let Some(_busy) = Busy::enter() else {
                    continue;
                };
                if let Some(store) = store.upgrade() {
                    // An error reaches the writers at their own flushes.
                    let _ = store.flush();
                }
            }
            None => {
                idle += tick;
                if idle >= IDLE {
                    // Exit, unless a write was staged while the flag still said "running".
                    waiting.running.store(false, Ordering::Release);
                    if waiting.age().is_none() || waiting.running.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    idle = Duration::ZERO;
                }
            }
        }
    }
    waiting.running.store(false, Ordering::Release);
}

static ON_FORK: Once = Once::new();
static FORKING: AtomicBool = AtomicBool::new(false);
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// Held while a flusher may take a store lock; refused while a fork is under way.
struct Busy;

impl Busy {
    fn enter() -> Option<Busy> {
        BUSY.fetch_add(1, Ordering::SeqCst);
        if FORKING.load(Ordering::SeqCst) {
            BUSY.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Busy)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.fetch_sub(1, Ordering::SeqCst);
    }
}

extern "C" fn prepare() {
    FORKING.store(true, Ordering::SeqCst);
    while BUSY.load(Ordering::SeqCst) > 0 {
        thread::yield_now();
    }
}

extern "C" fn parent() {
    FORKING.store(false, Ordering::SeqCst);
}

extern "C" fn child() {
    // The child has no flusher thread; its stores start one again when they stage.
    BUSY.store(0, Ordering::SeqCst);
    FORKING.store(false, Ordering::SeqCst);
}
