"""The throwaway PostgreSQL server the suite starts (tests/postgres_server.py) and the
per-test schemas `store_url` hands out on it."""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import postgres_server
import psutil
import psycopg
import pytest
from conftest import ROOT, drop_schema
from postgres_server import PostgresServer, PostgresServerError, find_bindir

EXTERNAL = bool(os.environ.get(postgres_server.ENV_URL))
needs_throwaway = pytest.mark.skipif(
    EXTERNAL, reason=f"{postgres_server.ENV_URL} names a server this suite did not start"
)


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A schema name of this test's own, dropped afterwards."""
    name = f"t_{secrets.token_hex(8)}"
    yield name
    drop_schema(postgres_url, name)


def throwaway() -> PostgresServer:
    server = postgres_server.start()
    assert isinstance(server, PostgresServer)
    return server


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def refused(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect((host, port))
        except ConnectionRefusedError:
            return True
    return False


def test_answers_on_loopback(postgres_url: str) -> None:
    with postgres_server.connect(postgres_url) as conn:
        row = conn.execute("SELECT current_user, inet_server_addr()::text, 1 + 1").fetchone()
    assert row is not None
    assert row[1].split("/")[0] == "127.0.0.1"
    assert row[2] == 2


@needs_throwaway
def test_listens_on_127_0_0_1_only(postgres_url: str) -> None:
    server = throwaway()
    proc = psutil.Process(server.pid())
    listening = {c.laddr for c in proc.net_connections(kind="inet") if c.status == "LISTEN"}
    assert listening == {("127.0.0.1", server.port)}
    # Another loopback address of this machine reaches the port, but nothing listens there.
    assert refused("127.0.0.2", server.port)
    with postgres_server.connect(postgres_url) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)


def test_fsync_is_on(postgres_url: str) -> None:
    with postgres_server.connect(postgres_url) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        (max_connections,) = conn.execute("SHOW max_connections").fetchone() or ("0",)
    assert int(max_connections) >= 200


@needs_throwaway
def test_runs_as_an_unprivileged_os_user(postgres_url: str) -> None:
    server = throwaway()
    uids = psutil.Process(server.pid()).uids()
    if os.geteuid() == 0:
        assert server.os_user is not None
        assert uids.real == uids.effective == server.os_user.pw_uid != 0
        assert pwd.getpwuid(uids.real).pw_name in ("postgres", postgres_server.FALLBACK_OS_USER)
        assert server.datadir.stat().st_uid == server.os_user.pw_uid
    else:
        assert uids.real == os.getuid()


def test_a_schema_one_connection_commits_is_seen_by_another(postgres_url: str, schema: str) -> None:
    with (
        postgres_server.connect(postgres_url) as writer,
        postgres_server.connect(postgres_url) as reader,
    ):
        writer.execute(f'CREATE SCHEMA "{schema}"')
        writer.execute(f'CREATE TABLE "{schema}".kv (k text PRIMARY KEY, v text)')
        writer.execute(f"INSERT INTO \"{schema}\".kv VALUES ('a', 'b')")
        seen = "SELECT count(*) FROM pg_namespace WHERE nspname = %s"
        assert reader.execute(seen, (schema,)).fetchone() == (0,)
        reader.rollback()
        writer.commit()
        assert reader.execute(seen, (schema,)).fetchone() == (1,)
        assert reader.execute(f'SELECT k, v FROM "{schema}".kv').fetchall() == [("a", "b")]


@needs_throwaway
def test_restart_keeps_committed_data_and_answers_again(postgres_url: str, schema: str) -> None:
    server = throwaway()
    with postgres_server.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".kv (k text PRIMARY KEY, v text)')
        conn.execute(f"INSERT INTO \"{schema}\".kv VALUES ('kept', 'yes')")
    before = server.pid()
    cut = postgres_server.connect(postgres_url, autocommit=True)
    try:
        postgres_server.restart()
        with pytest.raises(psycopg.OperationalError):
            cut.execute("SELECT 1")
    finally:
        cut.close()
    assert server.pid() != before
    assert wait_gone(before)
    with postgres_server.connect(postgres_url) as conn:
        assert conn.execute(f'SELECT v FROM "{schema}".kv').fetchall() == [("yes",)]


def test_store_url_schema_is_dropped_after_the_test(postgres_url: str, tmp_path: Path) -> None:
    """A pytest session of its own fills a store_url schema; once it has ended, the schema is
    gone from the server."""
    out = tmp_path / "schema"
    env = dict(os.environ, PG_SCHEMA_PROBE_OUT=str(out))
    env[postgres_server.ENV_URL] = postgres_url
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/programs/pg_schema_probe.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    schema = out.read_text()
    assert schema.startswith("t_")
    with postgres_server.connect(postgres_url) as conn:
        found = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
        assert found.fetchone() == (0,)


@needs_throwaway
def test_a_taken_port_is_skipped_and_stop_removes_everything() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])

        def ports() -> Iterator[int]:
            yield busy
            yield from postgres_server.free_ports()

        server = PostgresServer(ports()).start()
        try:
            assert server.port_attempts == 2
            assert server.port != busy
            with postgres_server.connect(server.url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            root, pid, port = server.root, server.pid(), server.port
        finally:
            server.stop()
    assert root is not None and not root.exists()
    assert wait_gone(pid)
    assert refused("127.0.0.1", port)
    server.stop()  # a second stop is harmless


def test_missing_binaries_say_which_package(tmp_path: Path) -> None:
    with pytest.raises(PostgresServerError, match=r"apt-get install postgresql"):
        find_bindir(str(tmp_path / "*" / "bin"), pg_config="no-such-pg-config")


def test_the_newest_complete_version_is_chosen(tmp_path: Path) -> None:
    for version, tools in [
        ("9.6", postgres_server.TOOLS),
        ("13", postgres_server.TOOLS),
        ("15", postgres_server.TOOLS),
        ("16", ("pg_ctl",)),  # client tools only: no server there
    ]:
        bindir = tmp_path / version / "bin"
        bindir.mkdir(parents=True)
        for tool in tools:
            (bindir / tool).write_text("")
    chosen = find_bindir(str(tmp_path / "*" / "bin"), pg_config="no-such-pg-config")
    assert chosen == tmp_path / "15" / "bin"
