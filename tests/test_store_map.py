"""The map of a store shared by processes: opening or growing never cuts another process's
file, and a deleted or replaced lock file stops every writer before it writes.

Every process here is a real interpreter driving a store through `LmdbStore` (an "agent" that
takes one command per line on stdin and answers one JSON line), so a SIGBUS shows as a
negative exit status.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

AGENT = r"""
import json, os, sys
from pynenc.errors import PynencError
from pynenc.store.lmdb import LmdbStore, StoreOptions

store = None
for line in sys.stdin:
    cmd, *args = line.split()
    try:
        if cmd == "open":
            store = LmdbStore(sys.argv[1], StoreOptions(sync=args[0] == "1", map_size=int(args[1])))
            reply = {}
        elif cmd == "write":  # prefix count size: each record flushed on its own
            prefix, count, size = args[0].encode(), int(args[1]), int(args[2])
            for i in range(count):
                store.put("data", prefix + b"-%06d" % i, bytes([i % 251]) * size)
                store.flush()
            reply = {}
        elif cmd == "count":
            rows = store.scan("data", args[0].encode())
            good = all(v == bytes([int(k.rsplit(b"-", 1)[1]) % 251]) * len(v) for k, v in rows)
            reply = {"count": len(rows), "good": good}
        elif cmd == "exit":
            break
        else:
            raise SystemExit(f"unknown command {cmd}")
        reply["ok"] = True
    except PynencError as e:
        reply = {"ok": False, "error": type(e).__name__, "message": str(e),
                 "mro": [c.__name__ for c in type(e).__mro__]}
    reply["file_len"] = os.path.getsize(os.path.join(sys.argv[1], "data.mdb"))
    print(json.dumps(reply), flush=True)
"""


class Agent:
    """One process with the store open."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(AGENT), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=30)
            assert self.proc.stderr is not None
            pytest.fail(f"agent died on {command!r} with exit {code}: {self.proc.stderr.read()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> int:
        """Stop the agent; its exit status (negative: killed by that signal)."""
        assert self.proc.stdin is not None
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write("exit\n")
                self.proc.stdin.flush()
            code = self.proc.wait(timeout=30)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()
            code = self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["ok"], reply
    return reply


def test_growing_beside_a_process_with_a_larger_map_never_cuts_its_file(store_path: Path) -> None:
    """The sequence that cut the file: `small` maps 1 MiB; `large` then opens asking for
    8 MiB; `small` fills its map and grows; `large` writes on past `small`'s new map. A map
    set to less than the file (LMDB's `ftruncate` with a writable map) kills `large` with
    SIGBUS at that write."""
    small, large = Agent(store_path), Agent(store_path)
    try:
        ok(small(f"open 0 {1 << 20}"))
        ok(small("write s 10 100"))
        opened = ok(large(f"open 0 {8 << 20}"))
        grown = ok(small("write s 700 2000"))  # about 1.4 MB: past the 1 MiB map
        assert grown["file_len"] >= opened["file_len"]
        after = ok(large("write l 1500 2000"))  # about 3 MB more
        assert after["file_len"] >= grown["file_len"]
        counted = ok(small("count s-"))
        assert (counted["count"], counted["good"]) == (700, True)
        assert ok(small("count l-"))["count"] == 1500
        assert ok(large("count s-"))["count"] == 700
    finally:
        assert small.close() == 0
        assert large.close() == 0


@pytest.mark.parametrize("sync", [0, 1])
def test_opening_with_a_small_map_after_another_process_grew_the_file(
    store_path: Path, sync: int
) -> None:
    """A process opening with a 64 KiB map after another grew the file to several MiB adopts
    the file's size; the grower goes on writing; the file never gets shorter."""
    grower = Agent(store_path)
    try:
        ok(grower(f"open 0 {1 << 20}"))
        before = ok(grower("write g 1500 2000"))["file_len"]
        assert before > 2 << 20
        late = Agent(store_path)
        try:
            opened = ok(late(f"open {sync} {64 << 10}"))
            assert opened["file_len"] >= before, "opening cut the file"
            counted = ok(late("count g-"))
            assert (counted["count"], counted["good"]) == (1500, True)
            grown = ok(grower("write h 1500 2000"))
            assert grown["file_len"] >= opened["file_len"]
            ok(late("write m 300 2000"))
            assert ok(late("count h-"))["count"] == 1500
            assert ok(grower("count m-"))["count"] == 300
        finally:
            assert late.close() == 0
    finally:
        assert grower.close() == 0


def test_fork_stress_ci_variant() -> None:
    """20 runs of `tests/stress_fork.py` (fork while threads commit, two CPU-bound
    neighbours); the long run is `python tests/stress_fork.py --runs 200`."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "stress_fork.py"), "--runs", "20"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["failed"] == 0, result
    assert proc.returncode == 0


def _remove(lock: Path) -> None:
    lock.unlink()


def _replace(lock: Path) -> None:
    copy = lock.with_name("lock.mdb.copy")
    shutil.copyfile(lock, copy)
    os.replace(copy, lock)


@pytest.mark.parametrize("change", [_remove, _replace], ids=["deleted", "replaced"])
@pytest.mark.parametrize("sync", [0, 1])
def test_a_changed_lock_file_stops_every_writer_at_its_next_write(
    store_path: Path, sync: int, change: Any
) -> None:
    what = "deleted" if change is _remove else "replaced"
    one, two = Agent(store_path), Agent(store_path)
    try:
        ok(one(f"open {sync} {1 << 20}"))
        ok(two(f"open {sync} {1 << 20}"))
        ok(one("write a 50 500"))
        ok(two("write b 50 500"))
        change(store_path / "lock.mdb")
        for agent, prefix in ((one, "a2"), (two, "b2")):
            refused = agent(f"write {prefix} 1 500")
            assert refused["error"] == "StoreLockError", refused
            assert "StoreError" in refused["mro"]
            assert f"lock.mdb was {what}" in refused["message"]
            assert "Stop every process using the store and start them again" in (refused["message"])
            again = agent(f"write {prefix} 1 500")  # still refused, still nothing written
            assert again["error"] == "StoreLockError", again
    finally:
        assert one.close() == 0
        assert two.close() == 0
    # A fresh process (all the others stopped) reads back exactly what was written before.
    fresh = Agent(store_path)
    try:
        ok(fresh(f"open {sync} {1 << 20}"))
        for prefix, count in (("a-", 50), ("b-", 50), ("a2-", 0), ("b2-", 0)):
            assert ok(fresh(f"count {prefix}"))["count"] == count, prefix
            assert ok(fresh(f"count {prefix}"))["good"]
        ok(fresh("write c 20 500"))
        assert ok(fresh("count c-"))["count"] == 20
    finally:
        assert fresh.close() == 0
    import lmdb

    with lmdb.open(str(store_path), readonly=True, lock=False, max_dbs=9) as env:
        with env.begin() as txn:  # every page of the main tree is reachable and readable
            assert sum(1 for _ in txn.cursor()) >= 120
