//! Change notices on PostgreSQL: `LISTEN/NOTIFY` wakes idle workers and waiting callers.
//!
//! A flush that enqueues sends a *work* notice, one that finishes invocations a *done* notice
//! per invocation, and a release (the invocation is claimable at once) a work notice, all on
//! one channel per schema (`pynenc_` and the schema's name, cut to PostgreSQL's 63 bytes; a
//! shared prefix only wakes a waiter for nothing). They are sent by a statement of their own
//! after the write commits: `NOTIFY` takes a database-wide lock from the commit of its
//! transaction to its end, so inside the flush it would queue every notifying flush behind
//! the others' commit flush, defeating the server's group commit; a transaction holding only
//! notices writes nothing to the WAL and has no flush to wait for.
//!
//! Each process keeps one listening connection, opened by its first `ticket()` and served by
//! a thread of its own. Every notice received bumps a sequence number; a waiter takes a ticket
//! (the number now) before it looks at the store, and `wait` returns once a notice it waits
//! for arrived after its ticket, or at its timeout. Notices are hints: a waiter always looks
//! again, and keeps polling at its own pace as a safety net (a notice sent while the listener
//! was reconnecting is lost; waiters holding older tickets are then woken to look again).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};

use crate::store::fork_gate::{current_pid, Busy};

/// Payload of a work notice; a done notice is `d` and the invocation id in hex.
pub(crate) const WORK: &str = "w";
/// Recent done notices kept for waiters; a waiter whose ticket is older than all of them
/// looks again.
const DONE_KEPT: usize = 4096;
/// How long the listener waits for a notice before checking that it should go on.
const TICK: Duration = Duration::from_secs(1);
/// Silence after which the listener checks that its connection is alive.
const CHECK_AFTER: Duration = Duration::from_secs(10);
/// Longest pause between two attempts to (re)open the listening connection.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Longest the first ticket waits for the listener to listen.
const FIRST_LISTEN: Duration = Duration::from_secs(1);
/// Longest a waiter stays inside one `Busy` section: a fork waits for it at most this long.
const SLICE: Duration = Duration::from_millis(50);

/// The channel of the store in `schema`.
pub(crate) fn channel(schema: &str) -> String {
    let mut name = format!("pynenc_{schema}");
    name.truncate(63); // ASCII: the schema name is checked (`schema::check_name`)
    name
}

/// A done notice's payload.
pub(crate) fn done_payload(invocation: &[u8]) -> String {
    let mut s = String::with_capacity(1 + 2 * invocation.len());
    s.push('d');
    for b in invocation {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[derive(Default)]
struct State {
    /// Notices received so far (and listener restarts, which may have lost some).
    seq: u64,
    /// `seq` at the latest work notice.
    last_work: u64,
    /// `seq` at the latest (re)start of listening: notices before it may be lost.
    restarted: u64,
    /// Recent done notices: (`seq`, invocation).
    done: VecDeque<(u64, [u8; 16])>,
    /// Whether the listener is listening now.
    listening: bool,
    /// Whether a listener thread runs (for this process).
    started: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The notices a store's process listens to (see the module docs).
pub(crate) struct Notices {
    shared: Arc<Shared>,
    config: Config,
    channel: String,
    /// The process the listener belongs to.
    pid: AtomicU32,
}

impl Notices {
    pub fn new(config: Config, schema: &str) -> Notices {
        Notices {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
            }),
            config,
            channel: channel(schema),
            pid: AtomicU32::new(current_pid()),
        }
    }

    /// The state, locked, inside the caller's `Busy` section. A forked child has no listener
    /// (the thread stayed in the parent, the connection is the parent's): it forgets the
    /// parent's state and starts its own listener at its first ticket. Every holder of the
    /// lock is inside a section, so a fork never leaves it held in the child.
    fn state(&self, _busy: &Busy) -> MutexGuard<'_, State> {
        let mut st = self.shared.lock();
        let pid = current_pid();
        if self.pid.swap(pid, Ordering::Relaxed) != pid {
            *st = State::default();
        }
        st
    }

    /// The ticket a waiter takes before looking at the store, or None while nothing listens
    /// (the listener is being started or reconnects: the waiter polls).
    pub fn ticket(&self) -> Option<u64> {
        let busy = Busy::enter();
        let mut st = self.state(&busy);
        if !st.started {
            st.started = true;
            let shared = Arc::downgrade(&self.shared);
            let (config, channel) = (self.config.clone(), self.channel.clone());
            let spawned = std::thread::Builder::new()
                .name("pynenc-pg-notices".into())
                .spawn(move || listen(&shared, &config, &channel));
            if spawned.is_err() {
                st.started = false;
            } else {
                // The first ticket waits (briefly) for the listener, so that the first wait
                // already hears notices.
                st = self
                    .shared
                    .changed
                    .wait_timeout_while(st, FIRST_LISTEN, |st| !st.listening)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        st.listening.then_some(st.seq)
    }

    /// Wait until a work notice (`invocation` None) or a done notice of `invocation` arrives
    /// after `ticket`, or `timeout` passes. True when one did, or when notices may have been
    /// lost since the ticket.
    pub fn wait(&self, ticket: u64, invocation: Option<&[u8; 16]>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let busy = Busy::enter();
            let st = self.state(&busy);
            if arrived(&st, ticket, invocation) {
                return true;
            }
            if !st.listening {
                return false; // the connection broke: the waiter polls until it is back
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // Woken by every notice; the section ends at least every SLICE for a fork.
            let (st, _) = self
                .shared
                .changed
                .wait_timeout(st, left.min(SLICE))
                .unwrap_or_else(PoisonError::into_inner);
            let found = arrived(&st, ticket, invocation);
            drop(st);
            drop(busy);
            if found {
                return true;
            }
        }
    }
}

/// Whether what a waiter holding `ticket` waits for arrived (see `Notices::wait`).
fn arrived(st: &State, ticket: u64, invocation: Option<&[u8; 16]>) -> bool {
    if st.restarted > ticket {
        return true; // notices may have been lost since the ticket
    }
    match invocation {
        None => st.last_work > ticket,
        Some(id) => {
            let newer = st.done.iter().rev().take_while(|(seq, _)| *seq > ticket);
            let forgotten = st.done.len() == DONE_KEPT
                && st.done.front().is_some_and(|(seq, _)| *seq > ticket + 1);
            forgotten || newer.into_iter().any(|(_, i)| i == id)
        }
    }
}

/// The listener thread: listen, note every notice, reconnect with backoff; end when the store
/// is gone.
fn listen(shared: &Weak<Shared>, config: &Config, channel: &str) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(me) = shared.upgrade() else { return };
        drop(me);
        match open(config, channel) {
            Ok(mut client) => {
                backoff = Duration::from_millis(50);
                {
                    let Some(me) = shared.upgrade() else { return };
                    let _busy = Busy::enter();
                    let mut st = me.lock();
                    st.seq += 1;
                    st.restarted = st.seq;
                    st.listening = true;
                    me.changed.notify_all();
                }
                serve(shared, &mut client);
                if let Some(me) = shared.upgrade() {
                    let _busy = Busy::enter();
                    me.lock().listening = false;
                    me.changed.notify_all();
                }
            }
            Err(_) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn open(config: &Config, channel: &str) -> Result<Client, postgres::Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!("LISTEN \"{channel}\""))?;
    Ok(client)
}

/// Take notices off `client` until its connection breaks or the store is gone.
fn serve(shared: &Weak<Shared>, client: &mut Client) {
    let mut quiet_since = Instant::now();
    loop {
        let next = client.notifications().timeout_iter(TICK).next();
        let Some(me) = shared.upgrade() else { return };
        match next {
            Ok(Some(notice)) => {
                quiet_since = Instant::now();
                let _busy = Busy::enter();
                let mut st = me.lock();
                note(&mut st, notice.payload());
                me.changed.notify_all();
            }
            Ok(None) if client.is_closed() => return,
            Ok(None) => {
                if quiet_since.elapsed() >= CHECK_AFTER {
                    if client.is_valid(CHECK_AFTER).is_err() {
                        return;
                    }
                    quiet_since = Instant::now();
                }
            }
            Err(_) => return,
        }
    }
}

fn note(st: &mut State, payload: &str) {
    st.seq += 1;
    let seq = st.seq;
    if payload == WORK {
        st.last_work = seq;
    } else if let Some(hex) = payload.strip_prefix('d') {
        if let Some(id) = parse_hex16(hex) {
            if st.done.len() == DONE_KEPT {
                st.done.pop_front();
            }
            st.done.push_back((seq, id));
        }
    }
}

fn parse_hex16(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_payloads_round_trip_and_channels_fit() {
        let id = [0xab_u8; 16];
        let payload = done_payload(&id);
        assert_eq!(parse_hex16(payload.strip_prefix('d').unwrap()), Some(id));
        assert_eq!(channel(&"x".repeat(63)).len(), 63);
        assert_eq!(channel("orders"), "pynenc_orders");
    }

    #[test]
    fn a_waiter_sees_only_notices_after_its_ticket() {
        let mut st = State {
            listening: true,
            started: true,
            ..State::default()
        };
        note(&mut st, &done_payload(&[1; 16]));
        let ticket = st.seq;
        note(&mut st, &done_payload(&[2; 16]));
        assert!(!arrived(&st, ticket, Some(&[1; 16])));
        assert!(arrived(&st, ticket, Some(&[2; 16])));
        assert!(!arrived(&st, ticket, None));
        note(&mut st, WORK);
        assert!(arrived(&st, ticket, None));
        // A restart of the listener may have lost notices: every older ticket looks again.
        st.seq += 1;
        st.restarted = st.seq;
        assert!(arrived(&st, ticket, Some(&[3; 16])));
        assert!(!arrived(&st, st.seq, Some(&[3; 16])));
    }

    #[test]
    fn a_waiter_whose_ticket_is_older_than_every_kept_notice_looks_again() {
        let mut st = State::default();
        for n in 0..DONE_KEPT + 10 {
            note(&mut st, &done_payload(&[(n % 200) as u8 + 1; 16]));
        }
        assert!(arrived(&st, 0, Some(&[0; 16])));
        assert!(!arrived(&st, st.seq, Some(&[0; 16])));
    }
}
