"""The store under hostile conditions: damaged files, unusable paths, a newer format, failed
fsyncs, and readers killed mid-transaction. Each case runs in a child process, so a crash
(abort, SIGBUS) would show as a non-zero exit instead of a clean error."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lmdb
import pytest
from conftest import OPEN_SCRIPT, run_python

from pynenc._core import STORE_FORMAT_VERSION
from pynenc.store.lmdb import LmdbStore, StoreOptions

FAST = StoreOptions(sync=False, map_size=1 << 20)


def open_in_child(path: Path | str, prefix: list[str] | None = None) -> dict[str, object]:
    result: dict[str, object] = run_python(OPEN_SCRIPT, str(path), prefix=prefix)
    return result


def expect_error(result: dict[str, object], name: str, path: Path | str) -> None:
    assert result["ok"] is False, result
    assert result["error"] == name, result
    assert "PynencError" in result["mro"]  # type: ignore[operator]
    assert str(path) in str(result["message"]), result


def test_garbage_data_file(store_path: Path) -> None:
    store_path.mkdir()
    (store_path / "data.mdb").write_bytes(os.urandom(64 * 1024))
    expect_error(open_in_child(store_path), "CorruptStoreError", store_path)


@pytest.mark.parametrize("sync", [False, True])
def test_truncated_data_file(tmp_path: Path, sync: bool) -> None:
    for keep in (0, 100, 4096 * 2 + 10, None):
        path = tmp_path / f"store-{keep}"
        filled_store_in_child(path, sync=sync)
        data = path / "data.mdb"
        # Half the pages the store uses. Without sync the file is as long as the map (the
        # store writes through a writable map), so its length says nothing of what is used.
        with lmdb.open(str(path), lock=False, readonly=True) as env:
            used = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        length = used // 2 if keep is None else keep
        with open(data, "r+b") as f:
            f.truncate(length)
        expect_error(open_in_child(path), "CorruptStoreError", path)
        assert data.stat().st_size == length, "a refused store must be left as it was"


def filled_store_in_child(path: Path, *, sync: bool = False) -> None:
    run_python(
        """
        import json, os, sys
        from pynenc.store.lmdb import LmdbStore, StoreOptions
        sync = sys.argv[2] == "True"
        store = LmdbStore(sys.argv[1], StoreOptions(sync=sync, map_size=1 << 20))
        for i in range(50):
            store.put("data", f"k{i}".encode(), os.urandom(4000))
        store.flush()
        print(json.dumps({}))
        """,
        str(path),
        str(sync),
    )


def test_a_file_where_the_directory_should_be(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.write_text("not a store")
    expect_error(open_in_child(path), "StoreAccessError", path)


def test_a_path_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "store"
    expect_error(open_in_child(path), "StoreAccessError", path)


def test_a_path_where_nothing_can_be_created() -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, where not even root can create a directory")
    path = "/proc/pynenc-replay-store"
    expect_error(open_in_child(path), "StoreAccessError", path)


def test_a_data_file_that_is_a_directory(store_path: Path) -> None:
    (store_path / "data.mdb").mkdir(parents=True)
    expect_error(open_in_child(store_path), "StoreAccessError", store_path)


def _can_mount() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o ro tmpfs $d"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs root and mount namespaces")
def test_read_only_filesystem(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = textwrap.dedent(OPEN_SCRIPT)
    # In a private mount namespace: a store made on a tmpfs, then the tmpfs made read-only.
    shell = f"""
        set -e
        mount -t tmpfs -o size=8m tmpfs {mnt}
        {sys.executable} -c "$SCRIPT" {mnt}/store > /dev/null
        mount -o remount,ro {mnt}
        {sys.executable} -c "$SCRIPT" {mnt}/store
        {sys.executable} -c "$SCRIPT" {mnt}/new-store
    """
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell],
        capture_output=True,
        text=True,
        env={**os.environ, "SCRIPT": script},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    existing, new = (json.loads(line) for line in proc.stdout.splitlines())
    expect_error(existing, "StoreReadOnlyError", mnt / "store")
    expect_error(new, "StoreReadOnlyError", mnt / "new-store")
    assert "StoreAccessError" in existing["mro"]


def test_newer_format_version_is_refused(store_path: Path) -> None:
    filled_store_in_child(store_path)
    env = lmdb.open(str(store_path), max_dbs=16)
    meta = env.open_db(b"meta", create=False)
    with env.begin(write=True) as txn:
        txn.put(b"format_version", (STORE_FORMAT_VERSION + 1).to_bytes(4, "big"), db=meta)
    env.close()
    result = run_python(
        """
        import json, sys
        from pynenc.errors import StoreFormatError
        from pynenc.store.lmdb import LmdbStore
        try:
            LmdbStore(sys.argv[1])
        except StoreFormatError as e:
            print(json.dumps({"found": e.found, "supported": e.supported, "path": e.path,
                              "message": str(e)}))
        """,
        str(store_path),
    )
    assert result["found"] == STORE_FORMAT_VERSION + 1
    assert result["supported"] == STORE_FORMAT_VERSION
    assert result["path"] == str(store_path)
    assert "upgrade" in result["message"]


def test_corrupt_journal_entry_names_invocation_and_position(store_path: Path) -> None:
    inv = bytes(range(16))
    store = LmdbStore(store_path, FAST)
    store._core._append_journal(inv, 0, [(1, i.to_bytes(8, "little")) for i in range(5)])
    store.flush()
    del store
    result = run_python(
        """
        import json, sys, lmdb
        env = lmdb.open(sys.argv[1], max_dbs=16)
        with env.begin(write=True) as txn:  # journal rows: tag 0x01 ‖ id ‖ first position
            key = b"\x01" + bytes(range(16)) + (0).to_bytes(8, "big")
            value = bytearray(txn.get(key))
            value[1 + 15 * 3 + 5] ^= 0x01  # inside the payload of the entry at position 3
            txn.put(key, bytes(value))
        env.close()
        from pynenc.errors import CorruptEntryError
        from pynenc.store.lmdb import LmdbStore
        try:
            LmdbStore(sys.argv[1]).journal_entries(bytes(range(16)))
        except CorruptEntryError as e:
            print(json.dumps({"inv": e.invocation_id, "pos": e.position, "path": e.path}))
        """,
        str(store_path),
    )
    assert result == {
        "inv": "00010203-0405-0607-0809-0a0b0c0d0e0f",
        "pos": 3,
        "path": str(store_path),
    }


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (apt package strace)")
def test_an_fsync_error_fails_the_flush(store_path: Path) -> None:
    LmdbStore(store_path, StoreOptions(sync=True))
    # LMDB syncs data pages with fdatasync (fsync on old ext3/4 kernels, msync with a writable
    # map); the meta page is written through an O_DSYNC descriptor. Inject EIO into all three.
    strace = [
        "strace",
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=fdatasync,fsync,msync",
        "-e",
        "inject=fdatasync,fsync,msync:error=EIO",
    ]
    result = run_python(
        """
        import json, sys
        from pynenc.errors import StoreIOError
        from pynenc.store.lmdb import LmdbStore
        store = LmdbStore(sys.argv[1])
        store.put("data", b"doomed", b"x")
        try:
            store.flush()
            print(json.dumps({"flushed": True}))
        except StoreIOError as e:
            print(json.dumps({"flushed": False, "path": e.path, "message": str(e)}))
        """,
        str(store_path),
        prefix=strace,
    )
    assert result["flushed"] is False, result
    assert result["path"] == str(store_path)
    assert "Input/output error" in result["message"]
    after = run_python(
        """
        import json, sys
        from pynenc.store.lmdb import LmdbStore
        print(json.dumps({"value": LmdbStore(sys.argv[1]).get("data", b"doomed")}))
        """,
        str(store_path),
    )
    assert after == {"value": None}


def test_readers_killed_mid_transaction_do_not_exhaust_slots(store_path: Path) -> None:
    max_readers = 4
    # Kept open: the lock file keeps the reader table of its first opener.
    store = LmdbStore(store_path, StoreOptions(sync=False, max_readers=max_readers))
    store.put("data", b"k", b"v")
    store.flush()
    holder = textwrap.dedent(
        """
        import sys
        from pynenc.store.lmdb import LmdbStore, StoreOptions
        store = LmdbStore(sys.argv[1], StoreOptions(sync=False, max_readers=int(sys.argv[2])))
        print("ready", flush=True)
        store._core._hold_read_txn(60.0)
        """
    )
    for _ in range(3):  # 3 * max_readers > max_readers slots taken and abandoned
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", holder, str(store_path), str(max_readers)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(max_readers)
        ]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # let each begin its read transaction
        # Every slot is taken by a live reader: one more reader gets a clean error.
        full = run_python(
            """
            import json, sys
            from pynenc.errors import StoreError
            from pynenc.store.lmdb import LmdbStore, StoreOptions
            try:
                LmdbStore(sys.argv[1], StoreOptions(sync=False, max_readers=4)).get("data", b"k")
                print(json.dumps({"error": None}))
            except StoreError as e:
                print(json.dumps({"error": type(e).__name__, "message": str(e)}))
            """,
            str(store_path),
        )
        assert full["error"] == "StoreIOError" and "MDB_READERS_FULL" in full["message"], full
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
            assert p.stdout is not None
            p.stdout.close()
    result = run_python(
        """
        import json, sys, threading
        from pynenc.store.lmdb import LmdbStore, StoreOptions
        store = LmdbStore(sys.argv[1], StoreOptions(sync=False, max_readers=4))
        seen = []
        # More threads than slots: slots belong to transactions, not threads.
        threads = [threading.Thread(target=lambda: seen.append(store.get("data", b"k")))
                   for _ in range(12)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(json.dumps({"seen": [s.decode() for s in seen]}))
        """,
        str(store_path),
    )
    assert result == {"seen": ["v"] * 12}
