"""The hosts of the hosts campaign: network namespaces on one bridge, a throwaway PostgreSQL
server listening on the bridge, and worker processes inside each namespace.

`Cluster` owns the `Lab` (tests/campaigns/netns.py) and the server; `Hosts` starts the workers
of one run (each host under a host name of its own), kills a host, and stops the rest. The
server sees every lease change: `install_audit` adds a trigger to the store's `leases` table
that copies each new row version to `lease_audit`, and the server keeps commit timestamps, so
claims and takeovers are timed by when they committed, on the clock that judges the leases.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .netns import Lab

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as `python -m tests.campaigns.hosts`
    sys.path.append(str(HERE.parent))
import postgres_server  # noqa: E402 - tests/postgres_server.py, found through the path above

APP_SPEC = "hosts_app:app"
STARTED_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

AUDIT = """
CREATE TABLE {s}.lease_audit (
    at_ms bigint NOT NULL, invocation bytea NOT NULL, owner bytea NOT NULL,
    token bigint NOT NULL, expires_ms bigint NOT NULL
);
CREATE FUNCTION {s}.audit_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.lease_audit VALUES ({s}.now_ms(), NEW.invocation, NEW.owner, NEW.token,
                                        NEW.expires_ms);
    RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON {s}.leases
    FOR EACH ROW EXECUTE FUNCTION {s}.audit_lease();
"""


class Cluster:
    """`hosts` namespaces and a PostgreSQL server on their bridge; `close()` removes all."""

    def __init__(self, hosts: int) -> None:
        self.lab = Lab(hosts)
        try:
            self.server = postgres_server.PostgresServer(
                host=self.lab.server_address,
                clients=(str(self.lab.subnet),),
                settings={"track_commit_timestamp": "on"},
            ).start()
        except BaseException:
            self.lab.close()
            raise

    def store_url(self, schema: str) -> str:
        return postgres_server.with_schema(self.server.url, schema)

    def close(self) -> None:
        try:
            self.server.stop()
        finally:
            self.lab.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str) -> Any:
    return postgres_server.connect(url, autocommit=True)


def install_audit(url: str, schema: str) -> None:
    with connect(url) as conn:
        conn.execute(AUDIT.replace("{s}", f'"{schema}"'))


def db_now_ms(conn: Any, schema: str) -> int:
    return int(conn.execute(f'SELECT "{schema}".now_ms()').fetchone()[0])


def live_leases(conn: Any, schema: str) -> dict[str, tuple[str, int, int]]:
    """Invocation id (hex) -> (owner, token, expires_ms) of every lease held and unexpired."""
    rows = conn.execute(
        f'SELECT invocation, owner, token, expires_ms FROM "{schema}".leases '
        f"WHERE owner <> ''::bytea AND expires_ms > \"{schema}\".now_ms()"
    ).fetchall()
    return {bytes(r[0]).hex(): (bytes(r[1]).decode(), int(r[2]), int(r[3])) for r in rows}


def audit_rows(conn: Any, schema: str) -> list[tuple[int, str, str, int, int]]:
    """(committed_ms, invocation hex, owner, token, expires_ms) of every committed lease row
    version, in commit order: the time is when its transaction committed, by the server's
    clock (`track_commit_timestamp`), the row versions of one transaction in statement order."""
    rows = conn.execute(
        "SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000)::bigint AS c, "
        f'invocation, owner, token, expires_ms FROM "{schema}".lease_audit ORDER BY c, at_ms'
    ).fetchall()
    return [
        (int(r[0]), bytes(r[1]).hex(), bytes(r[2]).decode(), int(r[3]), int(r[4])) for r in rows
    ]


def host_of(owner: str) -> str:
    """The host part of an owner string (`HOST:pid=PID:start=...`)."""
    return owner.split(":pid=", 1)[0]


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_app(env: dict[str, str]) -> ModuleType:
    """A fresh copy of `hosts_app` whose app uses the store and settings in `env` (the app
    reads them when it is made; the process environment is restored afterwards)."""
    name = f"hosts_app_{secrets.token_hex(4)}"
    spec = importlib.util.spec_from_file_location(name, HERE / "hosts_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with environment({k: v for k, v in env.items() if k.startswith("PYNENC_")}):
        spec.loader.exec_module(module)
    return module


@dataclass
class Worker:
    host: int
    hostname: str
    log: Path
    proc: subprocess.Popen[bytes]

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Hosts:
    """The worker processes of one run, `per_host` on each host of `cluster`."""

    cluster: Cluster
    env: dict[str, str]
    logs: Path
    per_host: int = 2
    concurrency: int = 2
    grace: float = 5.0
    workers: list[Worker] = field(default_factory=list)

    def hostname(self, n: int) -> str:
        return f"host{n}-{self.cluster.lab.suffix}"

    def start(self, on: Iterable[int] | None = None) -> None:
        """Start `per_host` workers on each host (or on the hosts `on` names) and wait until
        every one says it started."""
        env = dict(os.environ, **self.env)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        argv = [
            sys.executable, "-m", "pynenc", "--app", APP_SPEC, "worker",
            "--concurrency", str(self.concurrency), "--grace", str(self.grace),
        ]  # fmt: skip
        new = []
        for n in range(self.cluster.lab.hosts) if on is None else on:
            for i in range(self.per_host):
                log = self.logs / f"host{n}-worker{i}.log"
                with open(log, "wb") as out:
                    proc = subprocess.Popen(
                        self.cluster.lab.command(n, self.hostname(n), argv),
                        env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    )  # fmt: skip
                new.append(Worker(n, self.hostname(n), log, proc))
        self.workers += new
        deadline = time.monotonic() + STARTED_TIMEOUT
        for w in new:
            while " started: app " not in w.text():
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker on host {w.host} exited at start:\n{w.text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker on host {w.host} did not start:\n{w.text()}")
                time.sleep(0.05)

    def on(self, n: int) -> list[Worker]:
        return [w for w in self.workers if w.host == n]

    def kill(self, n: int) -> None:
        """SIGKILL every worker of host n at once, and reap them."""
        for w in self.on(n):
            w.proc.send_signal(signal.SIGKILL)
        for w in self.on(n):
            w.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every live worker; their exit statuses (None: had to be killed)."""
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + STOP_TIMEOUT
        for w in self.workers:
            try:
                codes[w.log.stem] = w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(timeout=STOP_TIMEOUT)
                codes[w.log.stem] = None
        return codes

    def kill_all(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.kill()
        for w in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=STOP_TIMEOUT)
