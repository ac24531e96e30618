//! The tables of a PostgreSQL store, their versioned migrations, and the SQL every operation
//! runs (built once per store, with its schema name).
//!
//! Migrations run on first use, each in its own transaction under an advisory lock keyed by
//! the schema, so processes opening a new store at once create it once. A store whose version
//! is newer than this build refuses to open.

use std::time::Instant;

use super::conn::{OpError, OpResult, Pool};
use crate::error::{Error, Result};
use crate::store::Migration;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The migrations, in order: `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
/// `{s}` stands for the quoted schema name.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE {s}.meta (key text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE {s}.invocations (id bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE {s}.data (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE {s}.journal (
    invocation bytea NOT NULL,
    first_position bigint NOT NULL,
    segment bytea NOT NULL,
    PRIMARY KEY (invocation, first_position)
);
CREATE TABLE {s}.queue (
    invocation bytea PRIMARY KEY,
    seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX queue_by_seq ON {s}.queue (seq);
CREATE TABLE {s}.leases (
    invocation bytea PRIMARY KEY,
    owner bytea NOT NULL,
    expires_ms bigint NOT NULL,
    token bigint NOT NULL
);
CREATE INDEX leases_held ON {s}.leases (invocation) WHERE owner <> ''::bytea;
CREATE SEQUENCE {s}.lease_token;
CREATE FUNCTION {s}.now_ms() RETURNS bigint LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
INSERT INTO {s}.meta (key, value) VALUES ('schema_version', 0);
"#];

/// `name` if it can name the store's schema: lowercase letters, digits and `_`, not starting
/// with a digit, at most 63 bytes (PostgreSQL's limit), not `pg_`-prefixed.
pub fn check_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with("pg_")
        && !name.as_bytes()[0].is_ascii_digit()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Error::InvalidArgument(format!(
            "schema {name:?} cannot name a store's schema: use 1 to 63 lowercase letters, digits \
             and underscores, not starting with a digit or pg_ (e.g. ?schema=orders)"
        )))
    }
}

/// Create or migrate the store's tables in `schema`; the migration done, if any.
pub fn migrate(pool: &Pool, schema: &str, create: bool) -> Result<Option<Migration>> {
    let started = Instant::now();
    let quoted = format!("\"{schema}\"");
    let from = pool.run("opening the store", |session| {
        let mut tx = session.client.transaction()?;
        // One opener at a time per schema: the others wait here, then find it done.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('pynenc-store'), hashtext($1))",
            &[&schema],
        )?;
        let found = read_version(&mut tx, schema)?;
        if found == 0 && !create {
            return Err(OpError::Core(Error::InvalidArgument(format!(
                "no store in schema {schema:?} of {}: check the URL's ?schema= (a store is \
                 created by the first app or worker that uses it)",
                pool.location()
            ))));
        }
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))?;
        if found > SCHEMA_VERSION {
            return Err(OpError::Core(newer(pool, schema, found)));
        }
        for (n, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(&step.replace("{s}", &quoted))?;
            tx.execute(
                &format!("UPDATE {quoted}.meta SET value = $1 WHERE key = 'schema_version'"),
                &[&(n as i64 + 1)],
            )?;
        }
        tx.commit()?;
        Ok(found)
    })?;
    Ok((from != SCHEMA_VERSION && from != 0).then(|| Migration {
        from,
        to: SCHEMA_VERSION,
        took: started.elapsed(),
    }))
}

/// The schema's version: 0 when it has no tables yet.
fn read_version(tx: &mut postgres::Transaction<'_>, schema: &str) -> OpResult<u32> {
    let exists = tx.query_one(
        "SELECT to_regclass(format('%I.meta', $1::text)) IS NOT NULL",
        &[&schema],
    )?;
    if !exists.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = tx.query_opt(
        &format!("SELECT value FROM \"{schema}\".meta WHERE key = 'schema_version'"),
        &[],
    )?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0).clamp(0, u32::MAX as i64) as u32))
}

fn newer(pool: &Pool, schema: &str, found: u32) -> Error {
    Error::FormatVersion {
        path: format!("{}?schema={schema}", pool.location()).into(),
        found,
        supported: SCHEMA_VERSION,
    }
}

/// The schema's version as stored.
pub fn version(pool: &Pool, sql: &Sql) -> Result<u32> {
    pool.run("reading the schema version", |session| {
        let st = session.statement(sql.version)?;
        let row = session.client.query_one(&st, &[])?;
        Ok(row.get::<_, i64>(0).clamp(0, u32::MAX as i64) as u32)
    })
}

/// A whole flush in one statement (`apply.rs`): share-lock the lease rows of the fenced
/// invocations ($1, with the tokens $2 the writes carry); if any token is stale, write nothing
/// and return those invocations with their current tokens; else append journal segments ($3
/// ids, $4 first positions, $5 segments), upsert ($6, $7) and delete ($8) invocation records,
/// upsert ($9, $10) and delete ($11) data, take invocations off the queue ($12), drop the
/// leases of finished ones ($13) and enqueue ($14, in order). Empty arrays write nothing.
const FLUSH: &str = "\
WITH locked AS MATERIALIZED (
    SELECT invocation, token FROM {s}.leases WHERE invocation = ANY($1::bytea[])
    ORDER BY invocation FOR SHARE
), stale AS MATERIALIZED (
    SELECT DISTINCT l.invocation, l.token
    FROM locked l JOIN unnest($1::bytea[], $2::int8[]) AS f(invocation, token)
        ON f.invocation = l.invocation
    WHERE f.token <> l.token
), journal AS (
    INSERT INTO {s}.journal (invocation, first_position, segment)
    SELECT * FROM unnest($3::bytea[], $4::int8[], $5::bytea[])
    WHERE NOT EXISTS (SELECT FROM stale)
    ON CONFLICT DO NOTHING
), put_invocations AS (
    INSERT INTO {s}.invocations (id, value)
    SELECT * FROM unnest($6::bytea[], $7::bytea[])
    WHERE NOT EXISTS (SELECT FROM stale)
    ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value
), delete_invocations AS (
    DELETE FROM {s}.invocations
    WHERE id = ANY($8::bytea[]) AND NOT EXISTS (SELECT FROM stale)
), put_data AS (
    INSERT INTO {s}.data (key, value)
    SELECT * FROM unnest($9::bytea[], $10::bytea[])
    WHERE NOT EXISTS (SELECT FROM stale)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
), delete_data AS (
    DELETE FROM {s}.data WHERE key = ANY($11::bytea[]) AND NOT EXISTS (SELECT FROM stale)
), dequeue AS (
    DELETE FROM {s}.queue
    WHERE invocation = ANY($12::bytea[]) AND NOT EXISTS (SELECT FROM stale)
), tombstone AS (
    UPDATE {s}.leases SET owner = ''::bytea, expires_ms = 0
    WHERE invocation = ANY($13::bytea[]) AND NOT EXISTS (SELECT FROM stale)
), enqueue AS (
    INSERT INTO {s}.queue (invocation)
    SELECT i FROM unnest($14::bytea[]) WITH ORDINALITY AS u(i, n)
    WHERE NOT EXISTS (SELECT FROM stale)
    ORDER BY n
    ON CONFLICT DO NOTHING
), drop_journals AS (
    DELETE FROM {s}.journal
    WHERE invocation = ANY($15::bytea[]) AND NOT EXISTS (SELECT FROM stale)
)
SELECT invocation, token FROM stale";

/// A claim in one statement (`queue.rs`): lock the queue rows `{pick}` chooses (skipping rows
/// other claimers hold), then their lease rows; take each lease for owner $1 for $2 ms of
/// database time unless it is live. `previous` is read under row locks, so each is its row's
/// latest version; a lease row committed after this statement's snapshot is not in it, and is
/// then left alone (not claimed, as if another claimer had won), so `taken_over` (whether the
/// previous lease still named an owner) is always the previous row's. Claims come back in
/// queue order.
const CLAIM: &str = "\
WITH picked AS MATERIALIZED ({pick}),
previous AS MATERIALIZED (
    SELECT l.invocation, l.owner <> ''::bytea AS named, l.expires_ms <= {s}.now_ms() AS expired
    FROM {s}.leases l WHERE l.invocation IN (SELECT invocation FROM picked)
    FOR UPDATE
),
taken AS (
    INSERT INTO {s}.leases AS l (invocation, owner, expires_ms, token)
    SELECT p.invocation, $1, {s}.now_ms() + $2, nextval('{s}.lease_token') FROM picked p
    WHERE NOT EXISTS (SELECT FROM previous v WHERE v.invocation = p.invocation AND NOT v.expired)
    ON CONFLICT (invocation) DO UPDATE
        SET owner = EXCLUDED.owner, expires_ms = EXCLUDED.expires_ms, token = EXCLUDED.token
        WHERE EXISTS (SELECT FROM previous v WHERE v.invocation = l.invocation)
            AND l.expires_ms <= {s}.now_ms()
    RETURNING l.invocation, l.token, l.expires_ms
)
SELECT t.invocation, t.token, t.expires_ms,
    coalesce((SELECT v.named FROM previous v WHERE v.invocation = t.invocation), false)
FROM taken t JOIN picked p ON p.invocation = t.invocation ORDER BY p.seq";

/// The first $3 ready invocations in enqueue order: queued, without a live lease.
const PICK_NEXT: &str = "\
    SELECT q.invocation, q.seq FROM {s}.queue q
    WHERE NOT EXISTS (SELECT 1 FROM {s}.leases l
        WHERE l.invocation = q.invocation AND l.expires_ms > {s}.now_ms())
    ORDER BY q.seq LIMIT $3 FOR UPDATE OF q SKIP LOCKED";

/// The invocation $3, if it is queued.
const PICK_ONE: &str =
    "SELECT invocation, seq FROM {s}.queue WHERE invocation = $3 FOR UPDATE SKIP LOCKED";

/// Every statement of the store, with its schema name in place. Leaked once per opened store
/// (a few kilobytes), so sessions can cache prepared statements by their text.
pub(crate) struct Sql {
    pub version: &'static str,
    pub now_ms: &'static str,
    pub flush: &'static str,
    pub notify: &'static str,
    pub get_invocation: &'static str,
    pub get_data: &'static str,
    pub scan_invocations: &'static str,
    pub scan_data: &'static str,
    pub journal: &'static str,
    pub claim_next: &'static str,
    pub claim_one: &'static str,
    pub renew: &'static str,
    pub release: &'static str,
    pub lease: &'static str,
    pub leases: &'static str,
    pub queued: &'static str,
}

impl Sql {
    pub fn new(schema: &str) -> Sql {
        let s = format!("\"{schema}\"");
        let q =
            |text: &str| -> &'static str { Box::leak(text.replace("{s}", &s).into_boxed_str()) };
        let scan = |table: &str, key: &str| {
            q(&format!(
                "SELECT {key}, value FROM {{s}}.{table} \
                 WHERE {key} >= $1 AND ($2::bytea IS NULL OR {key} < $2) ORDER BY {key}"
            ))
        };
        Sql {
            version: q("SELECT value FROM {s}.meta WHERE key = 'schema_version'"),
            now_ms: q("SELECT {s}.now_ms()"),
            flush: q(FLUSH),
            notify: q(&format!(
                "SELECT pg_notify('{}', p) FROM unnest($1::text[]) AS p",
                super::notify::channel(schema)
            )),
            get_invocation: q("SELECT value FROM {s}.invocations WHERE id = $1"),
            get_data: q("SELECT value FROM {s}.data WHERE key = $1"),
            scan_invocations: scan("invocations", "id"),
            scan_data: scan("data", "key"),
            journal: q("SELECT first_position, segment FROM {s}.journal \
                 WHERE invocation = $1 ORDER BY first_position"),
            claim_next: q(&CLAIM.replace("{pick}", PICK_NEXT)),
            claim_one: q(&CLAIM.replace("{pick}", PICK_ONE)),
            renew: q("UPDATE {s}.leases SET expires_ms = {s}.now_ms() + $3 \
                 WHERE invocation = $1 AND token = $2"),
            release: q("UPDATE {s}.leases \
                 SET owner = CASE WHEN $3 THEN owner ELSE ''::bytea END, \
                     expires_ms = $4, token = nextval('{s}.lease_token') \
                 WHERE invocation = $1 AND token = $2"),
            lease: q("SELECT owner, expires_ms, token FROM {s}.leases WHERE invocation = $1"),
            leases: q(
                "SELECT invocation, owner, expires_ms, token FROM {s}.leases \
                 WHERE owner <> ''::bytea ORDER BY invocation",
            ),
            queued: q("SELECT invocation FROM {s}.queue ORDER BY seq"),
        }
    }
}
