//! The background flusher: staged writes that no flush has taken for the store's
//! `flush_interval` (`FLUSH_INTERVAL` by default) are committed by a thread of the store, so
//! workflow data written by a task that runs on for a long time reaches other processes
//! within a few ms, not at the task's next effect boundary.
//!
//! The thread starts with the first write staged and exits after `IDLE` with nothing staged,
//! so an idle process has no thread of the store. It watches the store's `Waiting` (atomics,
//! no lock) and takes the store itself only to flush, so it never keeps a dropped store open
//! (a dropped store commits what it staged while closing). A flush error is not lost with it:
//! every thread whose writes the commit held hears of it at its own next flush (`commit.rs`).
//!
//! Fork safety: the thread flushes inside a `fork_gate` section, and skips a tick while a
//! fork is under way.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use super::commit::Waiting;
use super::fork_gate::Busy;
use super::Store;

/// How long a staged write may wait for its writer's own flush, by default.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(5);

/// How long the thread stays with nothing staged before it exits.
const IDLE: Duration = Duration::from_millis(500);

/// Start the flusher of `store` (whose staging state is `waiting`) unless one runs.
pub(crate) fn ensure<S: Store + 'static>(store: &Weak<S>, waiting: &Arc<Waiting>, tick: Duration) {
    if waiting.running.swap(true, Ordering::AcqRel) {
        return;
    }
    let (store, watched) = (store.clone(), Arc::clone(waiting));
    let spawned = thread::Builder::new()
        .name("pynenc-flush".into())
        .spawn(move || run(&store, &watched, tick));
    if spawned.is_err() {
        // No thread: writes still become durable at their writers' flushes.
        waiting.running.store(false, Ordering::Release);
    }
}

fn run<S: Store>(store: &Weak<S>, waiting: &Waiting, tick: Duration) {
    let mut idle = Duration::ZERO;
    while store.strong_count() > 0 {
        thread::sleep(tick);
        match waiting.age() {
            Some(age) => {
                idle = Duration::ZERO;
                if age < tick {
                    continue;
                }
                // Skipped while a fork is under way (`fork_gate.rs`).
                let Some(_busy) = Busy::try_enter() else {
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
