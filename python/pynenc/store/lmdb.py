"""The embedded LMDB store: a typed face over `pynenc._core.Store`.

One store is a directory holding an LMDB environment (`docs/journal-format.md` describes it
byte by byte). Writes are *staged* (visible at once to reads in this process) and made durable
by `flush`, which commits everything staged by any thread in one transaction; concurrent
flushes share that transaction and its fsync. Opening the same directory twice in a process
(also through a symlink or a relative path) shares one underlying store, whose first opener's
options apply. A forked child reopens the store transparently; writes its parent staged but
did not flush stay the parent's. Opening a store of an older format migrates it in place and
logs one INFO line on the `pynenc.store` logger.

Invocation ids are 16 `bytes`. A fence is `(invocation id, lease token)`: the fenced write is
applied only while that token is the invocation's current lease (or it has no lease).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pynenc import _core, checks
from pynenc import logging as logs

log = logs.logger("pynenc.store")

__all__ = ["Claim", "Fence", "Lease", "LmdbStore", "Rejected", "StoreOptions", "Table"]

Table = Literal["invocations", "data"]
Fence = tuple[bytes, int]
#: A claimed invocation (`invocation`, `token`, `expires_ms`, `taken_over`) and a lease
#: (`invocation`, `owner`, `expires_ms`, `token`): typed values of the core.
Claim = _core.Claim
Lease = _core.Lease
#: A fenced write refused at flush: (invocation id, token carried, current token).
Rejected = tuple[bytes, int, int]


@dataclass(frozen=True)
class StoreOptions:
    """Options of a store (mirrors `StoreOptions` in `rust/src/store/lmdb.rs`).

    Attributes:
        sync: fsync every commit. Off, a process crash still loses nothing (the OS keeps the
            pages); a power loss may lose the last commits or leave the store unreadable.
            Off, commits also write through a writable map and `data.mdb` is as long as
            the map, reserved on disk (a full disk is `StoreFullError`, not a crash).
        map_size: initial size of the memory map in bytes (1 to 2**44, 16 TiB; with `sync`
            off, at most 1 MiB: that map is reserved on disk); it doubles whenever it is full,
            and is never less than the file another process grew.
        max_readers: most read transactions open at once, across all processes (1 to 65,536).
        flush_interval_ms: longest a staged write waits for its writer's next flush before a
            background thread of the store commits it (so workflow data reaches other
            processes while its task runs on; 0 to 3,600,000); 0 turns the thread off.

    Raises:
        InvalidArgumentError: An option has the wrong type or is out of its range.
    """

    sync: bool = True
    map_size: int = 1 << 30
    max_readers: int = 512
    flush_interval_ms: int = 5

    def __post_init__(self) -> None:
        settle = object.__setattr__  # frozen: each option is stored in its plain type
        settle(self, "sync", checks.switch("sync", self.sync))
        for name, least, most in (
            ("map_size", 1, checks.MAX_MAP_SIZE),
            ("max_readers", 1, checks.MAX_READERS),
            ("flush_interval_ms", 0, checks.MAX_FLUSH_INTERVAL_MS),
        ):
            settle(self, name, checks.whole(name, getattr(self, name), least=least, most=most))


def report_migration(core: _core.Store) -> None:
    """Log, once per store, the migration from an older format its opening did (if any)."""
    migration = core.take_migration()
    if migration is not None:
        old_format, new_format, seconds = migration
        log.info(
            "migrated the store at %s from format %d to %d in %.2f s",
            core.path() or core.location(),
            old_format,
            new_format,
            seconds,
        )


class LmdbStore:
    """A store in one directory, shared by every thread (and, through LMDB, every process)."""

    def __init__(self, path: str | os.PathLike[str], options: StoreOptions | None = None) -> None:
        """Open (creating, mode 0700) the store at `path`.

        Raises:
            StoreAccessError: the path cannot be created or opened (e.g. it is a file).
            StoreReadOnlyError: the path is on a read-only filesystem.
            CorruptStoreError: the files there are not a readable store.
            StoreFormatError: the store was written by a newer version.
        """
        opts = options or StoreOptions()
        self._options = opts
        self._core = _core.Store(
            os.fspath(path),
            sync=opts.sync,
            map_size=opts.map_size,
            max_readers=opts.max_readers,
            flush_interval_ms=opts.flush_interval_ms,
        )
        report_migration(self._core)

    @property
    def path(self) -> Path:
        """The canonical path of the store directory."""
        path = self._core.path()
        assert path is not None  # opened by path
        return Path(path)

    @property
    def options(self) -> StoreOptions:
        """The options this handle was opened with."""
        return self._options

    def get(self, table: Table, key: bytes) -> bytes | None:
        """The value under `key`, staged writes of this process first."""
        return self._core.get(table, key)

    def put(self, table: Table, key: bytes, value: bytes, fence: Fence | None = None) -> None:
        """Stage a write of `value` under `key` (1 to 510 bytes)."""
        self._core.put(table, key, value, fence)

    def delete(self, table: Table, key: bytes, fence: Fence | None = None) -> None:
        """Stage the removal of `key`."""
        self._core.delete(table, key, fence)

    def scan(self, table: Table, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every `(key, value)` whose key starts with `prefix`, in key order."""
        return self._core.scan(table, prefix)

    def enqueue(self, invocation: bytes, fence: Fence | None = None) -> None:
        """Stage adding `invocation` to the work queue (once; enqueueing again is a no-op).
        `fence`: that of the invocation dispatching it, refused with its other writes."""
        self._core.enqueue(invocation, fence)

    def complete(self, invocation: bytes, fence: Fence | None = None) -> None:
        """Stage removing `invocation` from the queue and dropping its lease."""
        self._core.complete(invocation, fence)

    def delete_journal(self, journal: bytes, fence: Fence | None = None) -> None:
        """Stage the delete of a whole journal, by its journal id (every segment of it and its
        end record): reads see it empty at once."""
        self._core.delete_journal(journal, fence)

    def flush(self) -> list[Rejected]:
        """Make everything staged so far durable; returns the fenced writes refused.

        Raises:
            StoreIOError: the commit failed; nothing of it was stored.
            StoreFullError: the store's filesystem is full (a `StoreIOError`); nothing of
                the commit was stored, and the message says how many bytes to free.
            StoreLockError: `lock.mdb` was deleted or replaced since the store was opened;
                nothing is written until every process using the store is restarted.
        """
        return self._core.flush()

    def journal_len(self, invocation: bytes) -> int:
        """Number of journal entries of `invocation`, staged ones included."""
        return self._core.journal_len(invocation)

    def journal_ops(self, invocation: bytes) -> list[tuple[object, ...]]:
        """The journal as `(operation, *values)` tuples (see `pynenc.journal`)."""
        return self._core.journal_ops(invocation)

    def journal_sites(self, invocation: bytes) -> list[tuple[str, int, str] | None]:
        """Where each journal entry was made, in order: `(file, line, function)` (the function
        `""` when not recorded), or None for an entry recorded without a call site."""
        return self._core.journal_sites(invocation)

    def journal_entries(self, invocation: bytes) -> list[tuple[int, bytes]]:
        """The journal of `invocation` as `(kind, raw payload)` pairs, for debugging.

        Raises:
            CorruptEntryError: an entry failed its checksum (naming invocation and position).
        """
        return self._core.journal_entries(invocation)

    def claim(self, owner: bytes, lease_ms: int, now_ms: int) -> Claim | None:
        """Lease the first queued invocation with no live lease to `owner` (committed): its
        `Claim`, whose `taken_over` says its last holder never gave it back (its lease ran
        out, or was released as dead), so running it resumes it."""
        return self._core.claim(owner, lease_ms, now_ms)

    def claim_invocation(
        self, invocation: bytes, owner: bytes, lease_ms: int, now_ms: int
    ) -> Claim | None:
        """Lease this invocation to `owner` if it is queued with no live lease (committed)."""
        return self._core.claim_invocation(invocation, owner, lease_ms, now_ms)

    def renew(self, invocation: bytes, token: int, lease_ms: int, now_ms: int) -> None:
        """Extend a lease to `now_ms + lease_ms`.

        Raises:
            LeaseLostError: `token` is no longer the invocation's lease token.
        """
        self._core.renew(invocation, token, lease_ms, now_ms)

    def release(self, invocation: bytes, token: int) -> None:
        """Give up a lease; the invocation stays queued and is claimable at once. The lease
        becomes an ownerless, expired one with a fresh token, so writes carrying `token` are
        refused from now on.

        Raises:
            LeaseLostError: `token` is no longer the invocation's lease token.
        """
        self._core.release(invocation, token)

    def defer(self, invocation: bytes, token: int, until_ms: int) -> None:
        """`release`, leaving the invocation unclaimable until `until_ms` (for one that cannot
        go on now, e.g. its code diverged); the next claim is not a takeover.

        Raises:
            LeaseLostError: `token` is no longer the invocation's lease token.
        """
        self._core.defer(invocation, token, until_ms)

    def release_dead(self, invocation: bytes, token: int) -> None:
        """`release` for a holder known to be dead: the expired lease keeps its owner, so the
        next claim is a takeover (`taken_over`) and counts as a resumption.

        Raises:
            LeaseLostError: `token` is no longer the invocation's lease token.
        """
        self._core.release_dead(invocation, token)

    def lease(self, invocation: bytes) -> Lease | None:
        """The `Lease` of `invocation` (expired ones included; a released or completed
        invocation keeps an ownerless tombstone), or None."""
        return self._core.lease(invocation)

    def leases(self) -> list[Lease]:
        """Every `Lease` held by an owner."""
        return self._core.leases()

    def queued(self) -> list[bytes]:
        """Invocations in the queue, in claim order."""
        return self._core.queued()

    def commit_count(self) -> int:
        """Write transactions committed by flushes in this process (for benchmarks)."""
        return self._core.commit_count()
