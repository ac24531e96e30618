//! What a `fork` changes for the store: its locks, and the process id it caches. One set of
//! `pthread_atfork` handlers covers both.
//!
//! A `fork` copies the memory of the whole process but only the calling thread: a lock that
//! another thread held at that moment stays held in the child, where nobody will release it.
//! So every store call that may take a lock (the staging buffer's mutex, the environment's
//! read-write lock, the registry, LMDB's own locks inside a transaction) runs inside a `Busy`
//! section, and a `pthread_atfork` prepare handler makes the fork wait until no thread of the
//! process is inside one; meanwhile new sections wait for the fork to finish.
//!
//! Sections nest per thread (only the outermost one counts), and a section never blocks on
//! anything that needs the forking thread, since the store takes no Python lock.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Once;
use std::thread;

static ON_FORK: Once = Once::new();
static FORKING: AtomicBool = AtomicBool::new(false);
static BUSY: AtomicUsize = AtomicUsize::new(0);
static PID: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// How deeply this thread is nested in sections.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Register the fork handlers (once per process).
pub(crate) fn install() {
    ON_FORK.call_once(|| {
        // SAFETY: the handlers only touch atomics (async-signal-safe, so allowed in a forked
        // child) and yield the CPU; `prepare` runs in the parent before the fork, `parent`
        // and `child` after it.
        unsafe {
            libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
        }
    });
}

/// This process's id, without a system call on every store operation (glibc does not cache
/// `getpid`): cached, and forgotten in the child of every `fork`.
pub(crate) fn current_pid() -> u32 {
    let cached = PID.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    install();
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// A section of store code that may hold a lock; a fork waits until none is open.
pub(crate) struct Busy(());

impl Busy {
    /// Open a section, waiting for a fork under way to finish first.
    pub fn enter() -> Busy {
        match Busy::open(true) {
            Some(busy) => busy,
            None => unreachable!("a waiting open always opens"),
        }
    }

    /// Open a section unless a fork is under way (for work that can be skipped).
    pub fn try_enter() -> Option<Busy> {
        Busy::open(false)
    }

    fn open(wait: bool) -> Option<Busy> {
        let depth = DEPTH.get();
        if depth == 0 {
            loop {
                BUSY.fetch_add(1, Ordering::SeqCst);
                if !FORKING.load(Ordering::SeqCst) {
                    break;
                }
                BUSY.fetch_sub(1, Ordering::SeqCst);
                if !wait {
                    return None;
                }
                while FORKING.load(Ordering::SeqCst) {
                    thread::yield_now();
                }
            }
        }
        DEPTH.set(depth + 1);
        Some(Busy(()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let depth = DEPTH.get() - 1;
        DEPTH.set(depth);
        if depth == 0 {
            BUSY.fetch_sub(1, Ordering::SeqCst);
        }
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
    // Only the forking thread lives on in the child, and it was in no section.
    PID.store(0, Ordering::Relaxed);
    BUSY.store(0, Ordering::SeqCst);
    FORKING.store(false, Ordering::SeqCst);
}
