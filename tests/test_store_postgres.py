"""What only the PostgreSQL store has: schemas per app, database time, connections that come
and go, and claims from many processes at once. (The contract every store keeps runs on it
through the `store_url` fixture.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from postgres_server import PostgresServer

from pynenc import Pynenc
from pynenc.errors import (
    InvalidArgumentError,
    LeaseLostError,
    StoreFormatError,
    StoreUnavailableError,
)
from pynenc.store import open_store, parse_url


def schema_url(postgres_url: str, schema: str) -> str:
    return f"{postgres_url}?schema={schema}"


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_url_names_schema_and_connection(postgres_url: str) -> None:
    parsed = parse_url("postgresql://app:pw@db:5433/orders?schema=shop&connect_timeout=3")
    assert (parsed.kind, parsed.schema) == ("postgresql", "shop")
    assert parsed.dsn == "postgresql://app:pw@db:5433/orders?connect_timeout=3"
    assert parse_url("postgres://db/x").schema == "pynenc"
    with pytest.raises(InvalidArgumentError, match="more than once"):
        parse_url("postgresql://db/x?schema=a&schema=b")
    with pytest.raises(InvalidArgumentError, match="TLS"):
        parse_url("postgresql://db/x?sslmode=require")


@pytest.mark.parametrize("bad", ["", "Orders", "1st", "pg_catalog", "a-b", "x" * 64, 'a"; --'])
def test_a_bad_schema_name_is_refused_before_anything_is_created(
    postgres_url: str, bad: str
) -> None:
    with pytest.raises(InvalidArgumentError, match="schema"):
        open_store(f"{postgres_url}?schema={bad}")


def test_apps_in_two_schemas_of_one_database_do_not_see_each_other(
    postgres_url: str, schema: str
) -> None:
    other = f"{schema}_b"
    try:
        a = Pynenc("a", store=schema_url(postgres_url, schema))
        b = Pynenc("b", store=schema_url(postgres_url, other))

        @a.task(name="pg.double_a")
        def double_a(x: int) -> int:
            return 2 * x

        @b.task(name="pg.double_b")
        def double_b(x: int) -> int:
            return 2 * x

        assert double_a(2).result == 4
        assert double_b(3).result == 6
        assert [r.task_id for r in a.list_invocations()] == ["pg.double_a"]
        assert [r.task_id for r in b.list_invocations()] == ["pg.double_b"]
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')


def test_reading_a_missing_schema_is_an_error_and_creates_nothing(
    postgres_url: str, schema: str
) -> None:
    with pytest.raises(InvalidArgumentError, match="no store in schema"):
        open_store(schema_url(postgres_url, schema), create=False)
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    assert found == (0,)
    proc = subprocess.run(
        [sys.executable, "-m", "pynenc", "--store", schema_url(postgres_url, schema), "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0 and "no store in schema" in proc.stderr


def test_the_tables_are_created_once_and_versioned(postgres_url: str, schema: str) -> None:
    url = schema_url(postgres_url, schema)
    first, second = open_store(url), open_store(url)
    assert first.format_version() == second.format_version() == 1
    assert first.kind() == "postgresql"
    with psycopg.connect(postgres_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        }
    assert tables == {"meta", "invocations", "data", "journal", "queue", "leases"}


def test_a_newer_schema_refuses_to_open(postgres_url: str, schema: str) -> None:
    open_store(schema_url(postgres_url, schema))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"UPDATE \"{schema}\".meta SET value = 99 WHERE key = 'schema_version'")
    with pytest.raises(StoreFormatError, match="99"):
        open_store(schema_url(postgres_url, schema))


def test_leases_are_judged_by_database_time(postgres_url: str, schema: str) -> None:
    store = open_store(schema_url(postgres_url, schema))
    inv = uuid.uuid4().bytes
    store.enqueue(inv)
    store.flush()
    # A worker whose clock is a day behind gets the same lease as any other.
    claim = store.claim(b"worker-a", 2000, 0)
    assert claim is not None
    token = claim.token
    db_now = store.now_ms()
    assert db_now - 1000 < claim.expires_ms - 2000 <= db_now and not claim.taken_over
    assert store.claim(b"worker-b", 2000, 10**15) is None  # a clock far ahead steals nothing
    time.sleep(2.2)
    second = store.claim(b"worker-b", 2000, 0)
    assert second is not None and second.token > token and second.taken_over  # a takeover


def test_a_write_fenced_with_a_lost_lease_is_refused(postgres_url: str, schema: str) -> None:
    store = open_store(schema_url(postgres_url, schema))
    inv = uuid.uuid4().bytes
    store.enqueue(inv)
    store.flush()
    claim = store.claim(b"worker-a", 60_000, 0)
    assert claim is not None
    old = claim.token
    store.release(inv, old)
    store.put("data", inv + b"k", b"zombie", (inv, old))
    rejected = store.flush()
    assert [(r[0], r[1]) for r in rejected] == [(inv, old)]
    assert store.get("data", inv + b"k") is None
    with pytest.raises(LeaseLostError):
        store.renew(inv, old, 1000, 0)


def test_a_stale_write_is_refused_and_the_rest_of_its_flush_is_kept(
    postgres_url: str, schema: str
) -> None:
    store = open_store(schema_url(postgres_url, schema))
    lost, held = uuid.uuid4().bytes, uuid.uuid4().bytes
    for inv in (lost, held):
        store.enqueue(inv)
    store.flush()
    claims = {
        c.invocation: c.token for c in (store.claim(b"worker-a", 60_000, 0) for _ in range(2)) if c
    }
    assert set(claims) == {lost, held}
    store.release(lost, claims[lost])  # taken from under its writer
    # One flush: a write with the lost lease, writes with the live one, one without a fence.
    store.put("data", lost + b"k", b"zombie", (lost, claims[lost]))
    store.put("data", held + b"k", b"kept", (held, claims[held]))
    store.put("invocations", held, b"record", (held, claims[held]))
    store.complete(held, (held, claims[held]))
    store.put("data", b"\x00" * 16 + b"free", b"unfenced")
    rejected = store.flush()
    assert [(r[0], r[1]) for r in rejected] == [(lost, claims[lost])]
    assert store.get("data", lost + b"k") is None
    assert store.get("data", held + b"k") == b"kept"
    assert store.get("invocations", held) == b"record"
    assert store.get("data", b"\x00" * 16 + b"free") == b"unfenced"
    assert store.queued() == [lost]  # the finished one left the queue, the other stays


def test_a_child_enqueued_under_a_lost_lease_is_not_queued(postgres_url: str, schema: str) -> None:
    store = open_store(schema_url(postgres_url, schema))
    parent, child = uuid.uuid4().bytes, uuid.uuid4().bytes
    store.enqueue(parent)
    store.flush()
    claim = store.claim(b"worker-a", 60_000, 0)
    assert claim is not None
    store.release(parent, claim.token)  # given up: its token is no longer the current one
    store.put("invocations", child, b"child record", (parent, claim.token))
    store.enqueue(child, (parent, claim.token))
    assert [(r[0], r[1]) for r in store.flush()] == [(parent, claim.token)]
    assert store.queued() == [parent] and store.get("invocations", child) is None
    again = store.claim(b"worker-b", 60_000, 0)
    assert again is not None and again.invocation == parent
    store.enqueue(child, (parent, again.token))  # the current holder's dispatch goes through
    assert store.flush() == []
    assert store.queued() == [parent, child]


CLAIMER = """
import json, sys
from pynenc.store import open_store
store = open_store(sys.argv[1])
got = []
while True:
    claim = store.claim(sys.argv[2].encode(), 60_000, 0)
    if claim is None:
        break
    got.append(claim.invocation.hex())
    store.complete(claim.invocation, (claim.invocation, claim.token))
    store.flush()
print(json.dumps(got))
"""


def test_concurrent_claimers_never_take_the_same_invocation(postgres_url: str, schema: str) -> None:
    url = schema_url(postgres_url, schema)
    store = open_store(url)
    ids = [uuid.uuid4().bytes for _ in range(200)]
    for inv in ids:
        store.enqueue(inv)
    store.flush()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, f"claimer-{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    taken: list[str] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        taken += json.loads(out.splitlines()[-1])
    assert sorted(taken) == sorted(i.hex() for i in ids)  # each exactly once
    assert store.queued() == []


NOTIFIER = """
import sys
from pynenc.store import open_store
store = open_store(sys.argv[1])
inv = bytes.fromhex(sys.argv[3])
if sys.argv[2] == "enqueue":
    store.enqueue(inv)
else:
    claim = store.claim_invocation(inv, b"other-host", 60_000, 0)
    store.complete(inv, (inv, claim.token))
store.flush()
"""


def notify_from_elsewhere(url: str, what: str, inv: bytes) -> None:
    """Enqueue, or claim and finish, `inv` from another process (as a worker on another host)."""
    subprocess.run([sys.executable, "-c", NOTIFIER, url, what, inv.hex()], check=True, timeout=60)


def test_waiters_are_woken_by_work_enqueued_and_invocations_finished_elsewhere(
    postgres_url: str, schema: str, tmp_path: Path
) -> None:
    url = schema_url(postgres_url, schema)
    store = open_store(url)
    inv, other = uuid.uuid4().bytes, uuid.uuid4().bytes
    ticket = store.notice_ticket()
    assert ticket is not None  # the first ticket starts the listener and waits for it
    notify_from_elsewhere(url, "enqueue", inv)
    started = time.monotonic()
    assert store.wait_notice(ticket, 30.0)  # work was enqueued
    assert time.monotonic() - started < 10
    ticket = store.notice_ticket()
    assert ticket is not None
    assert not store.wait_notice(ticket, 0.2)  # nothing since
    notify_from_elsewhere(url, "finish", inv)
    started = time.monotonic()
    assert store.wait_notice(ticket, 30.0, inv)  # it finished
    assert time.monotonic() - started < 10
    assert not store.wait_notice(ticket, 0.2, other)  # another one did not
    # A completion whose only waiter is the one completing it (a parent running its own child)
    # tells nobody else.
    store.enqueue(other)
    store.flush()
    claim = store.claim_invocation(other, b"parent-host", 60_000, 0)
    assert claim is not None
    ticket = store.notice_ticket()
    assert ticket is not None
    store.complete(other, (other, claim.token), notice=False)
    store.flush()
    assert store.queued() == [] and not store.wait_notice(ticket, 0.5, other)
    assert open_store(f"lmdb://{tmp_path}").notice_ticket() is None  # LMDB sends none: poll


def test_an_idle_worker_is_woken_by_new_work_before_its_poll_comes(
    postgres_url: str, schema: str
) -> None:
    from pynenc.runner.worker import Worker

    app = Pynenc("pg", store=schema_url(postgres_url, schema), execution="queued")

    @app.task(name="pgw.square")
    def square(n: int) -> int:
        return n * n

    worker = Worker(app, idle_poll_seconds=60)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        time.sleep(5.0)  # idle for a while: a backing-off poll would now wait seconds
        started = time.monotonic()
        assert square(7).wait(timeout=30).result == 49
        assert time.monotonic() - started < 2.0
    finally:
        worker.stop()
        thread.join(10)


def test_a_signal_and_an_event_tell_their_waiters_at_once(postgres_url: str, schema: str) -> None:
    app = Pynenc("pgn", store=schema_url(postgres_url, schema))

    @app.task(name="pgn.approval")
    def approval() -> str:
        approval.wf.set_event("asked", True)
        return str(approval.wf.wait_signal("answer", timeout=60))

    store = app.store
    before = store.notice_ticket()
    assert before is not None
    outcome: list[str] = []
    runner = threading.Thread(target=lambda: outcome.append(approval().result), daemon=True)
    runner.start()
    running: list[str] = []
    for _ in range(600):  # bounded: 30 s
        running = [i.invocation_id for i in app.list_invocations(status="running")]
        if running:
            break
        time.sleep(0.05)
    assert len(running) == 1
    workflow = uuid.UUID(running[0]).bytes
    assert app.get_event(running[0], "asked", timeout=30) is True
    assert store.wait_notice(before, 5.0, workflow)  # its set_event sent a notice
    ticket = store.notice_ticket()
    assert ticket is not None
    assert not store.wait_notice(ticket, 0.2, workflow)  # nothing since
    app.signal(running[0], "answer", "yes")
    assert store.wait_notice(ticket, 5.0, workflow)  # the signal sent one
    runner.join(30)
    assert outcome == ["yes"]


FORKER = """
import json, os, sys, time, uuid
from pynenc.store import open_store
store = open_store(sys.argv[1])
def round_trip():
    ticket = store.notice_ticket()
    inv = uuid.uuid4().bytes
    store.enqueue(inv)
    store.put("data", inv + b"k", b"v")
    store.flush()
    return ticket is not None and store.wait_notice(ticket, 30.0) and store.get("data", inv + b"k") == b"v"
before = round_trip()  # the parent listens and holds pooled connections
pid = os.fork()
if pid == 0:
    os._exit(0 if round_trip() else 3)  # the child: its own listener and connections
_, status = os.waitpid(pid, 0)
print(json.dumps({"before": before, "child": os.waitstatus_to_exitcode(status), "after": round_trip()}))
"""


def test_a_forked_child_listens_and_queries_on_connections_of_its_own(
    postgres_url: str, schema: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FORKER, schema_url(postgres_url, schema)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"before": True, "child": 0, "after": True}


def test_an_unreachable_server_fails_within_store_unavailable_seconds() -> None:
    url = f"postgresql://pynenc@127.0.0.1:{free_port()}/postgres"
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as err:
        open_store(url, unavailable_seconds=1.0)
    took = time.monotonic() - started
    assert 1.0 <= took < 6.0
    assert "unreachable" in str(err.value) and "127.0.0.1" in str(err.value)


def test_passwords_never_appear_in_messages() -> None:
    url = f"postgresql://pynenc:hunter2@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(StoreUnavailableError) as err:
        open_store(url, unavailable_seconds=0.0)
    assert "hunter2" not in str(err.value) and "***" in str(err.value)


WORKER_APP = """
import os
from pynenc import Pynenc

app = Pynenc("pg", execution="queued")

@app.task(name="pgw.step")
def step(n: int) -> int:
    return n * n

@app.task(name="pgw.flow", force_new_workflow=True)
def flow(n: int) -> int:
    return sum(flow.wf.execute_task(step, i).result for i in range(n))
"""


def start_worker(tmp_path: Path, url: str, *extra_env: tuple[str, str]) -> subprocess.Popen[str]:
    (tmp_path / "pgw_app.py").write_text(textwrap.dedent(WORKER_APP))
    env = {
        **os.environ,
        "PYNENC_STORE": url,
        "PYNENC_EXECUTION": "queued",
        "PYNENC_LEASE_SECONDS": "2",
        "PYTHONPATH": str(tmp_path),
        **dict(extra_env),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pynenc", "--app", "pgw_app:app", "worker", "--concurrency", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, to restart and stop."""
    server = PostgresServer().start()
    yield server
    server.stop()


def test_workers_ride_out_a_server_restart(tmp_path: Path, own_server: PostgresServer) -> None:
    url = f"{own_server.url}?schema=restart"
    app = Pynenc("pg", store=url, execution="queued")

    @app.task(name="pgw.step")
    def step(n: int) -> int:
        return n * n

    @app.task(name="pgw.flow", force_new_workflow=True)
    def flow(n: int) -> int:
        return sum(flow.wf.execute_task(step, i).result for i in range(n))

    started = [flow(n) for n in range(1, 21)]
    workers = [start_worker(tmp_path, url) for _ in range(2)]
    try:
        time.sleep(0.5)
        own_server.restart()  # pg_ctl restart -m fast: every session is cut
        results = [inv.wait(timeout=90).result for inv in started]
    finally:
        for w in workers:
            w.terminate()
        outputs = [w.communicate(timeout=60) for w in workers]
    assert results == [sum(i * i for i in range(n)) for n in range(1, 21)]
    assert all(w.returncode == 0 for w in workers), outputs


def test_workers_exit_with_the_error_when_the_server_is_gone_for_good(
    tmp_path: Path, own_server: PostgresServer
) -> None:
    url = f"{own_server.url}?schema=gone"
    open_store(url)  # the schema exists
    worker = start_worker(tmp_path, url, ("PYNENC_STORE_UNAVAILABLE_SECONDS", "2"))
    time.sleep(1.5)  # started and polling
    own_server.stop()
    stopped = time.monotonic()
    _, err = worker.communicate(timeout=60)
    took = time.monotonic() - stopped
    assert worker.returncode == 1, err
    assert "StoreUnavailableError" in err or "unreachable" in err
    assert took < 2 + 10  # its window, plus connect and shutdown time


def _idle_in_transaction(conn: psycopg.Connection[object], schema: str) -> list[int]:
    """Sessions idle inside a transaction whose last statement was on `schema`'s tables."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE %s",
        (f'%"{schema}".%',),
    ).fetchall()
    return [int(r[0]) for r in rows]
