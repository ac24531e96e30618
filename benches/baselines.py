"""Plain-Python baselines: what the same job costs without the engine."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cbor2

__all__ = ["NaiveJournal"]


class NaiveJournal:
    """A naive durable journal: cbor2-encoded entries appended to sqlite3, one committed row per
    entry (WAL; `synchronous=FULL` with sync, `OFF` without)."""

    def __init__(self, path: Path, *, sync: bool) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit: a row, a commit
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if sync else 'OFF'}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS journal (inv BLOB, pos INTEGER, entry BLOB, "
            "PRIMARY KEY (inv, pos))"
        )
        self._position = 0

    def append(self, invocation: bytes, kind: int, value: object) -> None:
        """Append one entry and commit it."""
        self._db.execute(
            "INSERT INTO journal VALUES (?, ?, ?)",
            (invocation, self._position, cbor2.dumps([kind, value])),
        )
        self._position += 1

    def read(self, invocation: bytes) -> list[object]:
        """Every entry of `invocation`, decoded, in order."""
        rows = self._db.execute(
            "SELECT entry FROM journal WHERE inv = ? ORDER BY pos", (invocation,)
        )
        return [cbor2.loads(entry) for (entry,) in rows]

    def close(self) -> None:
        self._db.close()
