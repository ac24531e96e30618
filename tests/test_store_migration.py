"""Stores of format 1 (each table in a named database of its own) are migrated in place when
this build opens them, in one transaction: every row reads back the same, and a process killed
during the migration leaves a store that still opens with every row.

Older stores are made from a current one by rewriting it with the `lmdb` package, from the
layout in docs/journal-format.md (§2, §5), while no store process has it open: format 3 has
the current layout without the 4-byte row checksum that ends every value (§2.1), format 1 also
keeps each table in a named database.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import lmdb
import pytest
from conftest import run_python

from pynenc._core import STORE_FORMAT_VERSION
from pynenc.store import open_store
from pynenc.store.lmdb import LmdbStore, StoreOptions

# Tag → name of each table (docs/journal-format.md §2).
TABLES = {
    1: b"journal",
    2: b"invocations",
    3: b"data",
    4: b"queue",
    5: b"queued",
    6: b"leases",
    7: b"counters",
}
OPTIONS = StoreOptions(sync=True, map_size=64 << 20)  # a file as long as its pages: cheap to copy

# Prints what a store holds: every table, through the store's own API (opening it migrates).
SNAPSHOT = """
import hashlib, json, sys
from pynenc.store.lmdb import LmdbStore, StoreOptions
journals = [bytes([n]) * 16 for n in range(1, 4)]
store = LmdbStore(sys.argv[1], StoreOptions(sync=True, map_size=64 << 20))
rows = {
    "format": store._core.format_version(),
    "journals": [[[k, v.hex()] for k, v in store.journal_entries(j)] for j in journals],
    "invocations": hashlib.sha256(repr(store.scan("invocations", b"")).encode()).hexdigest(),
    "invocation_count": len(store.scan("invocations", b"")),
    "data": [[k.hex(), v.hex()] for k, v in store.scan("data", b"")],
    "queued": [q.hex() for q in store.queued()],
    "leases": [[x.invocation.hex(), x.owner.hex(), x.expires_ms, x.token] for x in store.leases()],
}
print(json.dumps(rows))
"""


# Writes a current-format store holding rows of every table.
FILL = """
import json, os, sys
from pynenc.store.lmdb import LmdbStore, StoreOptions
journals = [bytes([n]) * 16 for n in range(1, 4)]
store = LmdbStore(sys.argv[1], StoreOptions(sync=True, map_size=64 << 20))
for n, journal in enumerate(journals):
    store._core._append_journal(journal, 0, [(1, i.to_bytes(8, "little")) for i in range(n * 5000 + 3)])
for i in range(int(sys.argv[2])):
    store.put("invocations", i.to_bytes(16, "big"), os.urandom(300))
    if i % 10_000 == 9_999:
        store.flush()
store.put("data", journals[0] + b"total", bytes([0x18, 0x2A]))
for journal in journals:
    store.enqueue(journal)
store.flush()
assert store.claim(b"worker-1", 60_000, 1_000_000) is not None  # a lease and a token
store.flush()
print(json.dumps({}))
"""


def fill(path: Path, records: int) -> None:
    """A current-format store holding rows of every table (written in a child process)."""
    run_python(FILL, str(path), str(records))


def is_journal_end(key: bytes) -> bool:
    """A journal's end record (format 4): tag 1, id, position 2^64 - 1."""
    return key[0] == 1 and key[17:] == b"\xff" * 8


def downgrade_to_format_3(path: Path) -> None:
    """Strip the row checksums of the store at `path`, as format 3 stored rows."""
    env = lmdb.open(str(path), max_dbs=16, map_size=64 << 20, lock=False)
    with env.begin(write=True) as txn:
        rows = [(k, v) for k, v in txn.cursor() if k[0] in TABLES]
        for key, value in rows:
            if is_journal_end(key):
                txn.delete(key)
            else:
                txn.put(key, value[:-4])
    meta = env.open_db(b"meta", create=False)
    with env.begin(write=True, db=meta) as txn:
        txn.put(b"format_version", (3).to_bytes(4, "big"))
    env.close()


def downgrade_to_format_1(path: Path) -> None:
    """Rewrite the store at `path` in the format-1 layout (no store process open)."""
    env = lmdb.open(str(path), max_dbs=16, map_size=64 << 20, lock=False)
    with env.begin(write=True) as txn:
        rows = [(k, v[:-4]) for k, v in txn.cursor() if k[0] in TABLES]
        for key, _ in rows:
            txn.delete(key)
        rows = [(k, v) for k, v in rows if not is_journal_end(k)]
    for tag, name in TABLES.items():
        db = env.open_db(name)
        with env.begin(write=True, db=db) as txn:
            for key, value in rows:
                if key[0] == tag:
                    txn.put(key[1:], value)
    meta = env.open_db(b"meta", create=False)
    with env.begin(write=True, db=meta) as txn:
        txn.put(b"format_version", (1).to_bytes(4, "big"))
    env.close()


def named_databases(path: Path) -> list[bytes]:
    env = lmdb.open(str(path), max_dbs=16, map_size=64 << 20, lock=False, readonly=True)
    with env.begin() as txn:
        names = [k for k, _ in txn.cursor() if k[:1].isalpha()]
    env.close()
    return names


def snapshot(path: Path) -> Any:
    return run_python(SNAPSHOT, str(path))


def test_a_format_1_store_is_migrated_on_open_and_reads_the_same(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store"
    fill(path, 200)
    before = snapshot(path)
    assert before["format"] == STORE_FORMAT_VERSION
    assert before["invocation_count"] == 200 and len(before["queued"]) == 3
    assert len(before["leases"]) == 1 and before["data"]

    downgrade_to_format_1(path)
    assert sorted(named_databases(path)) == sorted([b"meta", *TABLES.values()])
    reported = [f"migrated the store at {path} from format 1 to {STORE_FORMAT_VERSION}"]
    with caplog.at_level(logging.INFO, logger="pynenc.store"):
        store = open_store(f"lmdb://{path}")  # as an app opens its store
        assert [r.getMessage().split(" in ")[0] for r in caplog.records] == reported
        LmdbStore(path, OPTIONS)  # the same store, still open: nothing more to report
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == reported
    del store
    assert snapshot(path) == before
    assert named_databases(path) == [b"meta"], "the format-1 databases are removed"
    # The counters carried over: a new claim takes the token after the one handed out before.
    claim = LmdbStore(path, OPTIONS).claim(b"worker-2", 1_000, 2_000_000)
    assert claim is not None and claim.token == before["leases"][0][3] + 1


def test_a_format_3_store_gets_row_checksums_on_open_and_reads_the_same(tmp_path: Path) -> None:
    from pynenc._core import verify_file

    path = tmp_path / "store"
    fill(path, 200)
    before = snapshot(path)
    downgrade_to_format_3(path)
    findings, _ = verify_file(path)
    assert findings and all("checksum" in detail for _, _, detail in findings)
    assert snapshot(path) == before
    assert verify_file(path)[0] == [], "every row has its checksum now"


def test_a_process_killed_while_migrating_leaves_every_row(tmp_path: Path) -> None:
    original = tmp_path / "format-1"
    fill(original, 60_000)
    expected = snapshot(original)
    downgrade_to_format_1(original)

    opener = textwrap.dedent(
        """
        import sys
        from pynenc.store.lmdb import LmdbStore, StoreOptions
        print("opening", flush=True)
        LmdbStore(sys.argv[1], StoreOptions(sync=True, map_size=64 << 20))
        print("opened", flush=True)
        """
    )
    # How long an open that migrates takes here, from the line printed before it.
    timing = tmp_path / "timing"
    shutil.copytree(original, timing)
    with subprocess.Popen([sys.executable, "-c", opener, timing], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"opening\n"
        t0 = time.perf_counter()
        assert proc.stdout.readline() == b"opened\n"
        migration = time.perf_counter() - t0

    killed_mid_migration = 0
    for i, fraction in enumerate((0.1, 0.3, 0.5, 0.7, 0.9)):
        copy = tmp_path / f"kill-{i}"
        shutil.copytree(original, copy)
        with subprocess.Popen([sys.executable, "-c", opener, copy], stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"opening\n"
            time.sleep(migration * fraction)
            proc.send_signal(signal.SIGKILL)
            rest = proc.stdout.read()
        killed_mid_migration += rest != b"opened\n"
        assert snapshot(copy) == expected, f"killed at {fraction:.0%} of the migration"
    assert killed_mid_migration >= 2, f"only {killed_mid_migration} kills landed before the end"
