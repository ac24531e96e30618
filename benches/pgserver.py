"""The PostgreSQL server the `postgres` group measures on, and a fresh schema per measurement.

With `PYNENC_BENCH_POSTGRES_URL` set (`postgresql://USER@HOST:PORT/DB`), that server is used
as it is: each measurement creates a schema `bench_<hex>` on it and drops it afterwards.
Otherwise the run starts a throwaway cluster for itself and deletes it at the end: the very
one the test suite starts (`tests/postgres_server.py`, loaded from its file so the benchmarks
import nothing else of the suite): `initdb` into a temporary directory, 127.0.0.1 at a free
port, `fsync=on`, `synchronous_commit=on`, run as an unprivileged user under root.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["ENV_URL", "Server", "acquire"]

ENV_URL = "PYNENC_BENCH_POSTGRES_URL"
SERVER_MODULE = Path(__file__).resolve().parent.parent / "tests" / "postgres_server.py"
NOT_AVAILABLE = "n/a (no PostgreSQL server)"


def _server_module() -> ModuleType:
    """`tests/postgres_server.py`, imported from its file under a name of its own."""
    name = "pynenc_bench_postgres_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SERVER_MODULE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {SERVER_MODULE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Server:
    """A reachable server: `schema()` gives a fresh store URL, `connect(url)` a psycopg
    connection; `stop()` ends a throwaway cluster (a server the URL named is left alone)."""

    def __init__(self, url: str, module: ModuleType, cluster: Any | None) -> None:
        self.url = url
        self._module = module
        self._cluster = cluster
        self.describe = self._settings()

    def connect(self, url: str, **kwargs: Any) -> Any:
        """A psycopg connection to the server of a store URL (its `schema` parameter left out)."""
        return self._module.connect(url, **kwargs)

    @contextmanager
    def schema(self) -> Iterator[str]:
        """A store URL in a schema of its own, dropped afterwards."""
        name = f"bench_{secrets.token_hex(6)}"
        url = self._module.with_schema(self.url, name)
        try:
            yield url
        finally:
            with self.connect(self.url, autocommit=True) as conn:
                conn.execute("SET lock_timeout = '30s'")
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def _settings(self) -> str:
        """What the server is and how durable its commits are, for the rows' notes."""
        with self.connect(self.url, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
            fsync = conn.execute("SHOW fsync").fetchone()[0]
            sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
        where = "throwaway" if self._cluster is not None else "given"
        return f"PostgreSQL {version} ({where}), fsync={fsync}, synchronous_commit={sync}"

    def stop(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None


def acquire() -> tuple[Server | None, str | None]:
    """(the server, None), or (None, why there is none)."""
    try:
        import psycopg  # noqa: F401 - the raw baseline's client and the schemas' janitor
    except ImportError:
        return None, f"{NOT_AVAILABLE}: psycopg is not installed (pip install -e '.[bench]')"
    try:
        module = _server_module()
    except (ImportError, OSError) as exc:
        return None, f"{NOT_AVAILABLE}: {exc}"
    external = os.environ.get(ENV_URL)
    cluster = None
    try:
        if external:
            url = external
        else:
            cluster = module.PostgresServer().start()
            url = cluster.url
        return Server(url, module, cluster), None
    except Exception as exc:  # noqa: BLE001 - no server here is a reason, not a crash
        if cluster is not None:
            cluster.stop()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{NOT_AVAILABLE}: {first}"
