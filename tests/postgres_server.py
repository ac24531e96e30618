"""A throwaway PostgreSQL server for the suite: `initdb` into a temporary directory, serve on
127.0.0.1 at a free port, stop and delete it at the end.

`start()` returns the session's server, starting it on first use; `restart()` and `stop()` act
on it. With `PYNENC_TEST_POSTGRES_URL` set, that server is used instead and nothing is started.
The cluster trusts loopback connections and has one superuser, `pynenc`; its base URL is
`postgresql://pynenc@127.0.0.1:PORT/postgres`. PostgreSQL refuses to run as root, so under
root the cluster runs as the `postgres` system user (created as `pynenc-pg` when missing).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ENV_URL = "PYNENC_TEST_POSTGRES_URL"
BIN_GLOB = "/usr/lib/postgresql/*/bin"
TOOLS = ("initdb", "pg_ctl", "postgres", "pg_isready")
SUPERUSER = "pynenc"
FALLBACK_OS_USER = "pynenc-pg"
PORT_ATTEMPTS = 5
READY_TIMEOUT = 30.0
PG_CTL_TIMEOUT = 30

# What the suite relies on: durable commits (as a user's server has), loopback only, room for
# the many worker processes the suite starts, and little memory.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "on",
    "synchronous_commit": "on",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "logging_collector": "off",
}
HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"


class PostgresServerError(RuntimeError):
    """The throwaway server could not be found, started or stopped; the message says why."""


def find_bindir(pattern: str = BIN_GLOB, pg_config: str = "pg_config") -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres`: `pg_config --bindir` when it
    has them, else the newest of the versioned directories matching `pattern` (Debian's)."""
    candidates: list[Path] = []
    if shutil.which(pg_config):
        proc = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=10
        )
        if proc.returncode == 0 and proc.stdout.strip():
            candidates.append(Path(proc.stdout.strip()))
    candidates += sorted((Path(p) for p in glob.glob(pattern)), key=_version, reverse=True)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in TOOLS):
            return bindir
    raise PostgresServerError(
        f"no PostgreSQL server binaries ({', '.join(TOOLS)}) under `pg_config --bindir` or "
        f"{pattern}: install Debian's package with `apt-get install postgresql`, or point the "
        f"suite at a running server with {ENV_URL}=postgresql://USER@HOST:PORT/DB"
    )


def _version(bindir: Path) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin, so that 15 sorts above 9.6."""
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name)) or (0,)


def free_ports(host: str = "127.0.0.1") -> Iterator[int]:
    """Ports the kernel says are free on `host` now (another process may take one first)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        yield port


def _os_user() -> pwd.struct_passwd | None:
    """The unprivileged user to run the cluster as, or None when the suite is not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_OS_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", FALLBACK_OS_USER],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return pwd.getpwnam(FALLBACK_OS_USER)


def _temp_base(user: pwd.struct_passwd | None) -> str | None:
    """A parent for the temporary directory that `user` can reach (a root-only TMPDIR is not)."""
    base = Path(tempfile.gettempdir()).resolve()
    if user is None or all(part.stat().st_mode & 0o001 for part in (base, *base.parents)):
        return None
    return "/tmp"


class PostgresServer:
    """One throwaway cluster: `start()` it, then `url`, `restart()`, `stop()`.

    By default it listens on 127.0.0.1 and trusts only loopback clients; `host` makes it listen
    on another address of this machine instead, `clients` (networks such as `10.200.7.0/24`)
    are trusted besides loopback, and `settings` are added to (or override) `SETTINGS`.
    """

    managed = True

    def __init__(
        self,
        ports: Iterator[int] | None = None,
        *,
        host: str = "127.0.0.1",
        clients: tuple[str, ...] = (),
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bindir = find_bindir()
        self.os_user = _os_user()
        self.host = host
        self.clients = clients
        self.settings = {**SETTINGS, **(settings or {}), "listen_addresses": f"'{host}'"}
        self.ports = ports if ports is not None else free_ports(host)
        self.port = 0
        self.root: Path | None = None
        self.port_attempts = 0
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/postgres"

    @property
    def datadir(self) -> Path:
        assert self.root is not None, "the server is not started"
        return self.root / "data"

    @property
    def log(self) -> Path:
        assert self.root is not None, "the server is not started"
        return self.root / "server.log"

    def pid(self) -> int:
        """The postmaster's process id, from the first line of its pid file."""
        return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])

    def start(self) -> PostgresServer:
        began = time.monotonic()
        user = self.os_user
        self.root = Path(tempfile.mkdtemp(prefix="pynenc-pg-", dir=_temp_base(user)))
        atexit.register(self.stop)
        if user is not None:
            os.chown(self.root, user.pw_uid, user.pw_gid)
        try:
            # --no-sync: nothing is gained by flushing files that die with the run; the server
            # itself runs with fsync=on.
            self._run(
                "initdb", "-D", str(self.datadir), "-U", SUPERUSER, "-E", "UTF8", "--no-locale",
                "--auth=trust", "--no-sync", timeout=120,
            )  # fmt: skip
            (self.datadir / "pg_hba.conf").write_text(
                HBA + "".join(f"host all all {net} trust\n" for net in self.clients)
            )
            with (self.datadir / "postgresql.conf").open("a") as conf:
                conf.write("include 'pynenc_test.conf'\n")
            self._listen()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _listen(self) -> None:
        """Start the postmaster on a free port, trying another when one is taken meanwhile."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port_attempts = attempt
            self.port = next(self.ports)
            settings = {**self.settings, "port": str(self.port)}
            settings["unix_socket_directories"] = f"'{self.root}'"
            (self.datadir / "pynenc_test.conf").write_text(
                "".join(f"{key} = {value}\n" for key, value in settings.items())
            )
            proc = self._pg_ctl("start", check=False)
            if proc.returncode == 0:
                self.wait_ready()
                return
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "could not bind" not in log:
                raise PostgresServerError(f"pg_ctl start failed:\n{proc.stdout}{log[-3000:]}")
            self.log.unlink()
        raise PostgresServerError(f"no free port on {self.host} after {PORT_ATTEMPTS} attempts")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once the server accepts connections on host:port."""
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port),
                 "-U", SUPERUSER, "-d", "postgres", "-t", "2"],
                capture_output=True, check=False, timeout=10, env=_clean_env(),
            )  # fmt: skip
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise PostgresServerError(
                    f"the server on port {self.port} did not accept connections within "
                    f"{timeout:.0f} s; its log ends:\n{self.log.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.05)

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, committed data stays."""
        self._pg_ctl("restart", "-m", "fast")
        self.wait_ready()

    def stop(self) -> None:
        """`pg_ctl stop -m fast`, then delete the directory. Safe to call twice."""
        root = self.root
        if root is None:
            return
        try:
            if (self.datadir / "postmaster.pid").exists():
                pid = self.pid()
                if self._pg_ctl("stop", "-m", "fast", check=False).returncode != 0:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        finally:
            self.root = None
            shutil.rmtree(root, ignore_errors=True)

    def _pg_ctl(
        self, action: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self._run(
            "pg_ctl", action, "-w", "-t", str(PG_CTL_TIMEOUT), "-D", str(self.datadir),
            "-l", str(self.log), *args, timeout=PG_CTL_TIMEOUT + 30, check=check,
        )  # fmt: skip

    def _run(
        self, tool: str, *args: str, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool as the cluster's OS user (initdb and postgres refuse root)."""
        user = self.os_user
        as_user: dict[str, Any] = {}
        if user is not None:
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        proc = subprocess.run(
            [str(self.bindir / tool), *args],
            cwd=self.root, env=_clean_env(self.root), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout, check=False, **as_user,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise PostgresServerError(
                f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc


class ExternalServer:
    """The server `PYNENC_TEST_POSTGRES_URL` names: used as it is, never started or stopped."""

    managed = False

    def __init__(self, url: str) -> None:
        self.url = url

    def restart(self) -> None:
        raise PostgresServerError(f"cannot restart the server {ENV_URL} names")

    def stop(self) -> None:
        """Nothing to do: the server is not the suite's to stop."""


Server = PostgresServer | ExternalServer
_current: Server | None = None


def start() -> Server:
    """The session's server: the one `PYNENC_TEST_POSTGRES_URL` names, else a throwaway
    cluster, started on the first call."""
    global _current
    if _current is None:
        external = os.environ.get(ENV_URL)
        _current = ExternalServer(external) if external else PostgresServer().start()
    return _current


def restart() -> None:
    """Restart the session's server (only a throwaway one can be)."""
    start().restart()


def stop() -> None:
    """Stop the session's server and delete its directory; the next `start()` makes a new one."""
    global _current
    server, _current = _current, None
    if server is not None:
        server.stop()


def with_schema(url: str, schema: str) -> str:
    """`url` with its `schema` query parameter set to `schema`, other parameters kept."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def connect(url: str, **kwargs: Any) -> Any:
    """A psycopg connection to the server of a store URL (its `schema` parameter is the
    store's, not libpq's, so it is left out)."""
    import psycopg

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    conninfo = urlunsplit(parts._replace(query=urlencode(query)))
    return psycopg.connect(conninfo, connect_timeout=10, **kwargs)


def _clean_env(home: Path | None = None) -> dict[str, str]:
    """The environment without PG* variables, which would point the tools elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if home is not None:
        env["HOME"] = str(home)
    return env
