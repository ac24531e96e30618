//! Connections of a PostgreSQL store: a small pool of sessions shared by the threads of one
//! process, retried while the server cannot be reached, and never used across a fork.
//!
//! Every operation runs in `Pool::run`, which takes a session (opening one when none is idle),
//! runs the operation's body, and puts the session back. A body that fails because the
//! connection broke (the server restarted, the network dropped) or because the server asks
//! for a retry (a serialization failure, a deadlock, a shutdown in progress) is run again on
//! a fresh session, with backoff, until `unavailable` has passed since the first failure;
//! then the operation fails with `StoreUnavailable`. Bodies are written to be safe to run
//! again after an unknown outcome (see `apply.rs`).
//!
//! A forked child must not speak on its parent's sockets (a session's messages would
//! interleave with the parent's): it forgets the inherited sessions without closing them and
//! opens its own.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, Config, NoTls, Statement};

use crate::error::{Error, Result};
use crate::store::fork_gate::{current_pid, Busy};

/// A session and the statements prepared on it, by SQL text.
pub(crate) struct Session {
    pub client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Session {
    /// The statement for `sql`, prepared on this session once.
    pub fn statement(
        &mut self,
        sql: &'static str,
    ) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }
}

/// A failure inside an operation body.
pub(crate) enum OpError {
    /// From the database or the connection: retried when it is transient.
    Pg(postgres::Error),
    /// The store's own (a stale lease, a corrupt entry): returned as is.
    Core(Error),
}

impl From<postgres::Error> for OpError {
    fn from(e: postgres::Error) -> Self {
        OpError::Pg(e)
    }
}

impl From<Error> for OpError {
    fn from(e: Error) -> Self {
        OpError::Core(e)
    }
}

pub(crate) type OpResult<T> = std::result::Result<T, OpError>;

/// How one failed attempt of an operation ends: tried again (a transient failure), or the
/// operation's error.
enum Attempt {
    Retry(postgres::Error),
    Stop(Error),
}

/// First pause after a transient failure; doubled up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Idle sessions kept per process; more are opened under load and closed when returned.
const MAX_IDLE: usize = 16;

/// Run on every new session, so that the server does not keep the store's rows locked for a
/// client that vanished (a host cut off the network, a process frozen mid-transaction): a
/// transaction left idle for 5 s is ended and its locks released (the store's transactions
/// are a few round trips each; one ended this way is retried on a new session), and the server
/// probes a silent client after 5 s and drops it within about 10 s, as the client does the
/// server. A tighter setting (lower, and not 0) from the server, database, role or URL is kept.
const SESSION_SETUP: &str = "SELECT set_config(w.name, w.value::text, false) FROM (VALUES \
    ('idle_in_transaction_session_timeout', 5000), ('tcp_keepalives_idle', 5), \
    ('tcp_keepalives_interval', 2), ('tcp_keepalives_count', 3), ('tcp_user_timeout', 10000)) \
    AS w(name, value) JOIN pg_settings s USING (name) \
    WHERE s.setting::bigint = 0 OR s.setting::bigint > w.value";

pub(crate) struct Pool {
    config: Config,
    /// The URL as shown in messages: without its password.
    location: String,
    unavailable: Duration,
    idle: Mutex<Vec<Session>>,
    /// The process the idle sessions belong to.
    pid: AtomicU32,
}

impl Pool {
    pub fn new(url: &str, unavailable: Duration) -> Result<Pool> {
        let mut config = Config::from_str(url).map_err(|e| {
            Error::InvalidArgument(format!(
                "store URL {} is not a PostgreSQL connection URL: {e} (expected \
                 postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME])",
                redact(url)
            ))
        })?;
        // A link that goes dead must not hang an operation for the kernel's default of
        // minutes: it fails over to the retry loop, which bounds the wait.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(10));
        }
        config.keepalives_idle(Duration::from_secs(5));
        if config.get_application_name().is_none() {
            config.application_name("pynenc");
        }
        Ok(Pool {
            config,
            location: redact(url),
            unavailable,
            idle: Mutex::new(Vec::new()),
            pid: AtomicU32::new(current_pid()),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// How the pool connects (for a connection of another kind: the notice listener's).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether this process is a fork of the one that opened the idle sessions; if so they
    /// are forgotten (never closed: closing speaks on the parent's sockets) and this reports
    /// the fork once.
    pub fn forked(&self) -> bool {
        let pid = current_pid();
        if self.pid.load(Ordering::Relaxed) == pid {
            return false;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if self.pid.swap(pid, Ordering::Relaxed) == pid {
            return false;
        }
        for session in idle.drain(..) {
            std::mem::forget(session);
        }
        true
    }

    /// Run `body` on a session, retrying transient failures (see the module docs).
    pub fn run<T>(
        &self,
        during: &'static str,
        mut body: impl FnMut(&mut Session) -> OpResult<T>,
    ) -> Result<T> {
        self.retrying(during, || {
            // No session (the server cannot be reached): always worth another try.
            let mut session = self.take().map_err(Attempt::Retry)?;
            match body(&mut session) {
                Ok(v) => {
                    self.put(session);
                    Ok(v)
                }
                Err(e) => {
                    let failed = self.judge(during, e);
                    if matches!(failed, Attempt::Stop(_)) {
                        self.put_if_usable(session);
                    }
                    Err(failed)
                }
            }
        })
    }

    /// A session of its own holding the session-level advisory lock of `schema`'s recovery;
    /// the lock ends when the session is dropped (closed) or its process dies.
    pub fn lock_session(&self, schema: &str) -> Result<LockSession> {
        let during = "taking the recovery lock";
        self.retrying(during, || {
            let take = || -> OpResult<Client> {
                let mut client = self.connect()?;
                client.execute(
                    "SELECT pg_advisory_lock(hashtext('pynenc-recover'), hashtext($1))",
                    &[&schema],
                )?;
                Ok(client)
            };
            let client = take().map_err(|e| self.judge(during, e))?;
            Ok(LockSession {
                client: Some(client),
                pid: current_pid(),
            })
        })
    }

    /// Whether a failed body is worth another try.
    fn judge(&self, during: &'static str, e: OpError) -> Attempt {
        match e {
            OpError::Core(e) => Attempt::Stop(e),
            OpError::Pg(e) if transient(&e) => Attempt::Retry(e),
            OpError::Pg(e) => Attempt::Stop(self.error(during, &e)),
        }
    }

    /// Make `attempt` until it succeeds or stops, with backoff between transient failures,
    /// for at most `unavailable` after the first one; then `StoreUnavailable`.
    fn retrying<T>(
        &self,
        during: &'static str,
        mut attempt: impl FnMut() -> std::result::Result<T, Attempt>,
    ) -> Result<T> {
        let _busy = Busy::enter();
        self.forked();
        let mut first_failure: Option<Instant> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let failure = match attempt() {
                Ok(v) => return Ok(v),
                Err(Attempt::Stop(e)) => return Err(e),
                Err(Attempt::Retry(e)) => e,
            };
            let since = *first_failure.get_or_insert_with(Instant::now);
            let waited = since.elapsed();
            if waited >= self.unavailable {
                return Err(Error::StoreUnavailable {
                    location: self.location.clone(),
                    during,
                    detail: describe(&failure),
                    waited_s: waited.as_secs_f64(),
                });
            }
            std::thread::sleep(backoff.min(self.unavailable - waited));
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn take(&self) -> std::result::Result<Session, postgres::Error> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(session) = idle {
            if !session.client.is_closed() {
                return Ok(session);
            }
        }
        Ok(Session {
            client: self.connect()?,
            prepared: HashMap::new(),
        })
    }

    /// A new session, set up with `SESSION_SETUP`.
    fn connect(&self) -> std::result::Result<Client, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        client.batch_execute(SESSION_SETUP)?;
        Ok(client)
    }

    fn put(&self, session: Session) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE && self.pid.load(Ordering::Relaxed) == current_pid() {
            idle.push(session);
        }
    }

    /// Keep a session after a failed body only if it is still open (a body's transaction is
    /// rolled back when its `Transaction` is dropped).
    fn put_if_usable(&self, session: Session) {
        if !session.client.is_closed() {
            self.put(session);
        }
    }

    pub fn error(&self, during: &'static str, e: &postgres::Error) -> Error {
        Error::Postgres {
            location: self.location.clone(),
            during,
            detail: describe(e),
        }
    }
}

/// A session holding an advisory lock (`Pool::lock_session`).
pub(crate) struct LockSession {
    client: Option<Client>,
    pid: u32,
}

impl Drop for LockSession {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if self.pid == current_pid() {
                drop(client); // closing the session releases its lock
            } else {
                std::mem::forget(client); // the parent's session: never speak on it
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.pid.load(Ordering::Relaxed) != current_pid() {
            let idle = self.idle.get_mut().unwrap_or_else(PoisonError::into_inner);
            for session in idle.drain(..) {
                std::mem::forget(session);
            }
        }
    }
}

/// Whether `e` may pass if the operation is run again (on a new session).
fn transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => e.as_db_error().is_none(), // I/O or protocol failure: the connection broke
        Some(code) => {
            *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
                // The session sat in a transaction past `SESSION_SETUP`'s timeout (its process
                // was paused): the server ended it and rolled the transaction back.
                || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
                || code.code().starts_with("08") // connection exceptions
        }
    }
}

/// A database error as one line: its message, detail and SQLSTATE.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                s.push_str(": ");
                s.push_str(detail);
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    }
}

/// `url` with any password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgresql://app:s3cret@db:5432/x?sslmode=disable"),
            "postgresql://app:***@db:5432/x?sslmode=disable"
        );
        assert_eq!(redact("postgresql://app@db/x"), "postgresql://app@db/x");
        assert_eq!(redact("postgresql://db"), "postgresql://db");
    }
}
