"""The LMDB store through its Python face: round trips, queue and leases, and the
multi-process behaviours (several processes at once, fork, sharing within a process)."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_python

from pynenc import _core
from pynenc.errors import InvalidArgumentError, LeaseLostError
from pynenc.store.lmdb import LmdbStore, StoreOptions

FAST = StoreOptions(sync=False, map_size=1 << 20)


def inv() -> bytes:
    return uuid.uuid4().bytes


def random_entry(value: int) -> tuple[int, bytes]:
    return (1, value.to_bytes(8, "little"))


def test_staged_writes_are_read_back_and_flushed(store_path: Path) -> None:
    store = LmdbStore(store_path, FAST)
    store.put("data", b"wf-a", b"1")
    store.put("invocations", b"x" * 16, b"record")
    assert store.get("data", b"wf-a") == b"1"
    assert store.flush() == []
    store.delete("data", b"wf-a")
    store.put("data", b"wf-b", b"2")
    assert store.get("data", b"wf-a") is None
    assert store.scan("data", b"wf-") == [(b"wf-b", b"2")]
    store.flush()
    reopened = run_python(
        """
        import json, sys
        from pynenc.store.lmdb import LmdbStore
        s = LmdbStore(sys.argv[1])
        print(json.dumps([s.get("data", b"wf-a"), s.get("data", b"wf-b").decode()]))
        """,
        str(store_path),
    )
    assert reopened == [None, "2"]


def test_journal_entries_round_trip_in_position_order(store_path: Path) -> None:
    store = LmdbStore(store_path, FAST)
    a = inv()
    store._core._append_journal(a, 0, [random_entry(i) for i in range(3)])
    store.flush()
    store._core._append_journal(a, 3, [(3, (1_700_000_000_000_000).to_bytes(8, "little"))])
    assert store.journal_len(a) == 4
    entries = store.journal_entries(a)
    assert [k for k, _ in entries] == [1, 1, 1, 3]
    assert entries[2] == random_entry(2)
    assert store.journal_len(inv()) == 0


def test_invalid_arguments_are_typed(store_path: Path) -> None:
    store = LmdbStore(store_path, FAST)
    with pytest.raises(InvalidArgumentError):
        store.put("data", b"", b"v")
    store.put("data", b"k" * 510, b"v")  # the longest key: LMDB's 511 less the table's tag
    with pytest.raises(InvalidArgumentError):
        store.put("data", b"k" * 511, b"v")
    with pytest.raises(InvalidArgumentError):
        store.enqueue(b"short")
    with pytest.raises(ValueError):
        store.put("nope", b"k", b"v")  # type: ignore[arg-type]


def test_claim_renew_release_complete(store_path: Path) -> None:
    store = LmdbStore(store_path, FAST)
    first, second = inv(), inv()
    store.enqueue(first)
    store.enqueue(second)
    store.flush()
    claim = store.claim(b"w1", 1000, 0)
    assert claim is not None and claim.invocation == first
    token, expires = claim.token, claim.expires_ms
    lease = store.lease(first)
    assert lease is not None and not claim.taken_over
    assert (lease.invocation, lease.owner, lease.expires_ms, lease.token) == (
        first,
        b"w1",
        expires,
        token,
    )
    second_claim = store.claim(b"w2", 1000, 10)
    assert second_claim is not None and second_claim.invocation == second
    assert store.claim(b"w3", 1000, 20) is None
    store.renew(first, token, 5000, 100)
    with pytest.raises(LeaseLostError) as info:
        store.renew(first, token + 100, 5000, 100)
    assert info.value.current == token  # type: ignore[attr-defined]
    # An expired lease is claimable by someone else, whose token fences the old owner out.
    taken = store.claim(b"w4", 1000, 5100)
    assert taken is not None and taken.invocation == first and taken.token > token
    assert taken.taken_over, "w1 never gave it back: the claim is a takeover (a resumption)"
    store.put("data", b"late", b"x", fence=(first, token))
    store.complete(first, fence=(first, token))
    assert store.flush() == [(first, token, taken.token)]
    assert store.get("data", b"late") is None
    assert store.queued() == [first, second]
    store.complete(first, fence=(first, taken.token))
    assert store.flush() == []
    assert store.queued() == [second]
    # Completed: an ownerless tombstone keeps the last token, fencing off older owners.
    tombstone = store.lease(first)
    assert tombstone is not None
    assert (tombstone.owner, tombstone.expires_ms, tombstone.token) == (b"", 0, taken.token)
    assert len(store.leases()) == 1
    store.put("data", b"zombie", b"x", fence=(first, token))
    assert store.flush() == [(first, token, taken.token)]


def test_a_child_enqueued_under_a_lost_lease_is_not_queued(store_path: Path) -> None:
    """The enqueue of a child dispatched by a run whose lease was taken over is refused with
    the rest of that run's writes: a finished child is never put back in the queue."""
    store = LmdbStore(store_path, FAST)
    parent, child = inv(), inv()
    store.enqueue(parent)
    store.flush()
    claim = store.claim(b"w1", 1000, 0)
    assert claim is not None
    taken = store.claim(b"w2", 1000, 5000)  # the lease expired; another worker took it
    assert taken is not None
    store.put("invocations", child, b"child record", (parent, claim.token))
    store.enqueue(child, (parent, claim.token))
    assert store.flush() == [(parent, claim.token, taken.token)]
    assert store.queued() == [parent] and store.get("invocations", child) is None
    store.enqueue(child, (parent, taken.token))  # the current holder's dispatch goes through
    assert store.flush() == []
    assert store.queued() == [parent, child]


def test_a_stale_owner_learns_of_its_rejected_writes_when_another_thread_committed_them(
    store_path: Path,
) -> None:
    """A worker's threads share commits: the one whose fenced writes a flush of another thread
    rejected still gets `LeaseLostError` at its own flush, which then finds nothing to commit."""
    store = LmdbStore(store_path, FAST)
    job = inv()
    store.enqueue(job)
    store.flush()
    claim = store.claim(b"w1", 1000, 0)
    assert claim is not None
    stale_token = claim.token
    taken = store.claim(b"w2", 1000, 5000)  # the lease expired; another worker took it
    assert taken is not None and taken.token > stale_token
    execution = _core.Execution(store._core, job, str(uuid.UUID(bytes=job)), 0)
    execution.set_fence(stale_token)
    execution.random()
    execution.stage()
    # Another thread's flush commits (and rejects) the stale owner's staged journal entry...
    assert store.flush() == [(job, stale_token, taken.token)]
    # ...and the stale owner still finds out at its own flush.
    with pytest.raises(LeaseLostError) as info:
        execution.flush()
    assert info.value.current == taken.token  # type: ignore[attr-defined]
    # The owner holding the current token is not affected.
    current = _core.Execution(store._core, job, str(uuid.UUID(bytes=job)), 1)
    current.set_fence(taken.token)
    current.random()
    current.flush()


def test_permissions_are_private(store_path: Path) -> None:
    LmdbStore(store_path, FAST)
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o700
    for name in ("data.mdb", "lock.mdb"):
        assert stat.S_IMODE((store_path / name).stat().st_mode) == 0o600


def test_one_store_per_path_in_a_process(tmp_path: Path) -> None:
    real = tmp_path / "real"
    a = _core.Store(real, sync=False)
    (tmp_path / "link").symlink_to(real)
    b = _core.Store(tmp_path / "link", sync=False)
    os.chdir(tmp_path)
    c = _core.Store("real/../real", sync=False)
    assert a.path() == b.path() == c.path()
    a.put("data", b"shared", b"1")  # staged only: visible through the others only if shared
    assert b.get("data", b"shared") == b"1" and c.get("data", b"shared") == b"1"
    b.flush()


@pytest.mark.parametrize("beta_sync", [False, True], ids=["both-unsynced", "mixed-sync"])
def test_two_processes_write_at_once_and_nothing_is_lost(store_path: Path, beta_sync: bool) -> None:
    # Without sync a store writes through a writable map, with sync through `pwrite`; the
    # map starts at 1 MiB, so both processes also grow it while the other writes.
    LmdbStore(store_path, FAST)
    script = """
    import json, sys
    from pynenc.store.lmdb import LmdbStore, StoreOptions
    path, tag, sync = sys.argv[1], sys.argv[2].encode(), sys.argv[3] == "True"
    store = LmdbStore(path, StoreOptions(sync=sync, map_size=1 << 20))
    inv = tag.ljust(16, b"-")
    for i in range(2000):
        store._core._append_journal(inv, i, [(1, i.to_bytes(8, "little"))])
        store.put("data", tag + b"/" + str(i).encode(), b"v" * 100)
        if i % 10 == 9:
            store.flush()
    store.flush()
    print(json.dumps({"done": True}))
    """
    import subprocess
    import sys
    import textwrap

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), str(store_path), tag, str(sync)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for tag, sync in (("alpha", False), ("beta", beta_sync))
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    store = LmdbStore(store_path, FAST)
    total = 0
    for tag in (b"alpha", b"beta"):
        entries = store.journal_entries(tag.ljust(16, b"-"))
        assert [int.from_bytes(p, "little") for _, p in entries] == list(range(2000))
        rows = store.scan("data", tag + b"/")
        assert len(rows) == 2000
        total += len(entries) + len(rows)
    assert total == 8000


def test_forked_child_reopens_and_parent_keeps_its_staged_writes(store_path: Path) -> None:
    # No background flusher: the parent's staged write must stay uncommitted across the fork.
    store = LmdbStore(store_path, replace(FAST, flush_interval_ms=0))
    store.put("data", b"before-fork", b"committed")
    store.flush()
    store.put("data", b"parent-staged", b"p")  # not flushed when forking
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            ok = store.get("data", b"before-fork") == b"committed"
            ok = ok and store.get("data", b"parent-staged") is None
            store.put("data", b"from-child", b"c")
            store.flush()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("data", b"from-child") == b"c"
    assert store.get("data", b"parent-staged") == b"p"
    store.flush()
    seen = run_python(
        """
        import json, sys
        from pynenc.store.lmdb import LmdbStore
        s = LmdbStore(sys.argv[1])
        print(json.dumps(sorted(k.decode() for k, _ in s.scan("data", b""))))
        """,
        str(store_path),
    )
    assert seen == ["before-fork", "from-child", "parent-staged"]


def test_forks_while_the_background_flusher_commits_never_deadlock(store_path: Path) -> None:
    """A fork waits until the store's flusher thread holds no lock, so every child can use
    the store; the parent's writes staged meanwhile are committed by the flusher, once."""
    store = LmdbStore(store_path, replace(FAST, flush_interval_ms=1))
    stop = threading.Event()

    def stage_without_flushing() -> None:
        n = 0
        while not stop.is_set():
            store.put("data", b"parent-%06d" % n, b"p")
            n += 1
            time.sleep(0.0002)

    writer = threading.Thread(target=stage_without_flushing)
    writer.start()
    try:
        _fork_children_that_write(store, 20)
    finally:
        stop.set()
        writer.join()
    # The parent never flushed: its background flusher committed what it staged.
    reader = run_python(
        """
        import json, sys
        from pynenc.store.lmdb import LmdbStore
        s = LmdbStore(sys.argv[1])
        keys = [k.decode() for k, _ in s.scan("data", b"")]
        print(json.dumps([len([k for k in keys if k.startswith(p)]) for p in ("child-", "parent-")]))
        """,
        str(store_path),
    )
    assert reader[0] == 20 and reader[1] > 0


def test_forks_while_other_threads_commit_and_read_never_deadlock(store_path: Path) -> None:
    """A fork waits until no thread of the process is inside a store call, so a child never
    inherits a store lock that nobody will release."""
    store = LmdbStore(store_path, FAST)
    stop = threading.Event()

    def busy(me: int) -> None:
        n = 0
        while not stop.is_set():
            store.put("data", b"t%d-%06d" % (me, n), b"x")
            store.flush()
            store.get("data", b"t%d-%06d" % (me, n))
            n += 1

    workers = [threading.Thread(target=busy, args=(k,)) for k in range(3)]
    for w in workers:
        w.start()
    try:
        _fork_children_that_write(store, 20)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert len(store.scan("data", b"child-")) == 20


def _fork_children_that_write(store: LmdbStore, n: int) -> None:
    """Fork `n` children a few ms apart; each must write, commit and read back at once (only
    the forking thread lives on in a child)."""
    children = []
    for i in range(n):
        time.sleep(0.003)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                store.put("data", b"child-%02d" % i, b"c")
                store.flush()
                code = 0 if store.get("data", b"child-%02d" % i) == b"c" else 2
            finally:
                os._exit(code)
        children.append(pid)
    _wait_for_children(children)


def _wait_for_children(children: list[int], timeout: float = 30) -> None:
    """Reap every child, each with exit status 0; kill them all and fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while children:
        done, status = os.waitpid(children[0], os.WNOHANG)
        if done:
            children.pop(0)
            assert os.waitstatus_to_exitcode(status) == 0
        elif time.monotonic() > deadline:
            for p in children:
                os.kill(p, signal.SIGKILL)
                os.waitpid(p, 0)
            pytest.fail(f"{len(children)} forked children hung on a lock held at fork time")
        else:
            time.sleep(0.01)


def test_flushes_from_many_threads_share_commits(store_path: Path) -> None:
    store = LmdbStore(store_path, StoreOptions(sync=True, map_size=1 << 20))
    ids = [inv() for _ in range(8)]

    def work(me: bytes) -> None:
        for i in range(30):
            store._core._append_journal(me, i, [random_entry(i)])
            store.flush()

    threads = [threading.Thread(target=work, args=(me,)) for me in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(store.journal_len(me) == 30 for me in ids)
    assert store.commit_count() < 8 * 30


def test_a_small_map_grows_to_take_20_mb(store_path: Path) -> None:
    store = LmdbStore(store_path, StoreOptions(sync=False, map_size=1 << 20))
    chunk = os.urandom(100_000)
    for i in range(200):
        store.put("data", f"blob/{i:04d}".encode(), chunk)
        if i % 20 == 19:
            store.flush()
    store.flush()
    assert len(store.scan("data", b"blob/")) == 200
    assert store.get("data", b"blob/0199") == chunk
