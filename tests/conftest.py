"""Shared fixtures: every test gets its own store, under tmp_path for LMDB or in a schema of
its own on the session's throwaway PostgreSQL server."""

from __future__ import annotations

import importlib.util
import json
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import postgres_server
import pytest

from pynenc import Pynenc

# The stores every `store_url` test runs against, one test id each.
STORES = ["lmdb", "postgresql"]


def run_python(
    script: str, *args: str, prefix: list[str] | None = None, timeout: float = 60
) -> Any:
    """Run `script` in a fresh interpreter; return the JSON it prints last.

    A crash (abort, SIGSEGV, SIGBUS) shows as a non-zero exit status and fails the test, so
    "an error, never a crash" is checked for real.
    """
    cmd = [*(prefix or []), sys.executable, "-c", textwrap.dedent(script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    lines = [line for line in proc.stdout.splitlines() if line[:1] in ("{", "[")]
    assert lines, f"no JSON output\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(lines[-1])


# Opens a store in a child and reports the error class (if any) as JSON.
OPEN_SCRIPT = """
import json, sys
from pynenc.errors import PynencError
from pynenc.store.lmdb import LmdbStore, StoreOptions
try:
    store = LmdbStore(sys.argv[1], StoreOptions(sync=False))
    store.put("data", b"k", b"v")
    store.flush()
    print(json.dumps({"ok": True}))
except PynencError as e:
    print(json.dumps({"ok": False, "error": type(e).__name__, "path": getattr(e, "path", None),
                      "message": str(e), "mro": [c.__name__ for c in type(e).__mro__]}))
"""


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The base URL of the session's PostgreSQL server, started on first use (or the one
    PYNENC_TEST_POSTGRES_URL names) and stopped when the session ends."""
    yield postgres_server.start().url
    postgres_server.stop()


@pytest.fixture
def lmdb_url(tmp_path: Path) -> str:
    """An embedded store under tmp_path, for tests of what only LMDB has (its files)."""
    return f"lmdb://{tmp_path / 'store'}"


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store: an LMDB directory under tmp_path, or a PostgreSQL schema of its own that
    is dropped after the test."""
    if request.param == "lmdb":
        yield f"lmdb://{tmp_path / 'store'}"
        return
    assert request.param == "postgresql", f"unknown store {request.param!r}"
    schema = f"t_{secrets.token_hex(8)}"
    url = postgres_server.with_schema(request.getfixturevalue("postgres_url"), schema)
    yield url
    drop_schema(url, schema)


def store_snapshot(url: str) -> tuple[Any, ...]:
    """Everything a store holds, read through the store contract (on any store): records,
    workflow data, the journal of every attempt of every invocation, the queue and leases."""
    from pynenc import codec
    from pynenc._core import journal_id
    from pynenc.store import open_store

    store = open_store(url, create=False)
    records = store.scan("invocations", b"")
    journals = []
    for key, value in records:
        record = codec.decode(value)
        attempts = record.get("attempt", 1) if isinstance(record, dict) else 1
        for attempt in range(1, int(attempts) + 1):
            journals.append(store.journal_entries(journal_id(key, attempt)))
    leases = [(x.invocation, x.owner, x.expires_ms, x.token) for x in store.leases()]
    return (records, store.scan("data", b""), journals, store.queued(), leases)


def drop_schema(url: str, schema: str) -> None:
    """Drop a test's schema and everything in it; a connection the test left inside a
    transaction on it makes this fail after lock_timeout instead of hanging the suite."""
    with postgres_server.connect(url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '30s'")
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def app(store_url: str) -> Pynenc:
    return Pynenc("test", store=store_url, sync=False)


@pytest.fixture(params=["inline", "queued"])
def execution(request: pytest.FixtureRequest) -> str:
    """Run a test once per execution mode."""
    return str(request.param)


@pytest.fixture
def load_example(
    monkeypatch: pytest.MonkeyPatch, store_url: str, tmp_path: Path
) -> Iterator[Callable[..., ModuleType]]:
    """Import `examples/NAME.py` afresh, its app on this test's store; with
    `execution="queued"`, two worker processes serve it until the test ends."""
    loaded: list[str] = []
    started: list[WorkerPool] = []

    def load(name: str, execution: str = "inline") -> ModuleType:
        monkeypatch.setenv("PYNENC_STORE", store_url)
        monkeypatch.setenv("PYNENC_SYNC", "0")
        monkeypatch.setenv("PYNENC_EXECUTION", execution)
        monkeypatch.syspath_prepend(str(EXAMPLES))
        sys.modules.pop(name, None)
        module = importlib.import_module(name)
        loaded.append(name)
        if execution == "queued":
            pool = WorkerPool(f"{name}:app", tmp_path, pythonpath=EXAMPLES)
            pool.start(2)
            started.append(pool)
        return module

    yield load
    for pool in started:
        pool.stop()
    for name in loaded:
        sys.modules.pop(name, None)


class WorkerPool:
    """Worker processes (`python -m pynenc --app SPEC worker`) on the test's environment."""

    def __init__(
        self,
        app_spec: str,
        tmp_path: Path,
        *,
        pythonpath: Path,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.app_spec = app_spec
        self.args = args  # more options of `pynenc worker` (`--log-format json`)
        self.logs = tmp_path
        self.pythonpath = pythonpath
        self.concurrency = concurrency
        self.env = env or {}
        self.grace = 5.0
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1) -> list[subprocess.Popen[bytes]]:
        import os

        env = dict(os.environ, **self.env)
        env["PYTHONPATH"] = os.pathsep.join([str(self.pythonpath), env.get("PYTHONPATH", "")])
        new = []
        for _ in range(n):
            with open(self.logs / f"worker-{len(self.procs)}.log", "wb") as log:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "pynenc",
                        "--app",
                        self.app_spec,
                        "worker",
                        "--concurrency",
                        str(self.concurrency),
                        "--grace",
                        str(self.grace),
                        *self.args,
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self.procs.append(proc)
            new.append(proc)
        return new

    def log_text(self, index: int) -> str:
        return (self.logs / f"worker-{index}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def waits_worker(tmp_path: Path, store_url: str) -> Iterator[Callable[..., WorkerPool]]:
    """Start worker processes of `tests/programs/waits_app.py` (stopped when the test ends)."""
    from waits_support import PROGRAMS, waits_env

    pools: list[WorkerPool] = []

    def start(concurrency: int = 1, count: int = 1) -> WorkerPool:
        env = waits_env(tmp_path, store_url, "queued")
        pool = WorkerPool(
            "waits_app:app", tmp_path, pythonpath=PROGRAMS, concurrency=concurrency, env=env
        )
        pool.start(count)
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.stop()


@pytest.fixture
def waits_app(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """`tests/programs/waits_app.py` imported afresh, queued, on the test's store."""
    from waits_support import PROGRAMS, waits_env

    for key, value in waits_env(tmp_path, store_url, "queued").items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(PROGRAMS))
    sys.modules.pop("waits_app", None)
    yield importlib.import_module("waits_app")
    sys.modules.pop("waits_app", None)
