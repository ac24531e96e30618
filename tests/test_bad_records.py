"""One malformed invocation record never stops the rest.

Records of every kind of damage (wrong types, huge or negative integers, short ids, hostile
CBOR tags, duplicate and NaN keys, truncation) are planted in a real store with its own write
API. Each is reported once, by its key, on the `pynenc.store` logger; every other record is
listed, counted and recovered as if it were not there; reading it directly raises
`CorruptEntryError` naming its key.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import lmdb
import pytest

from pynenc import CorruptEntryError, InvocationStatus, Pynenc, cli, codec
from pynenc._core import Store
from pynenc.record_check import MAX_COUNT, show_key
from pynenc.runner.owner import owner_is_dead
from pynenc.store import open_store
from pynenc.store.lmdb import LmdbStore

Planted = tuple[str, bytes, bytes, str]  # (label, key, value, what the report must say)


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    return bytes([major << 5 | 24, n])


def raw_map(pairs: list[tuple[Any, Any]]) -> bytes:
    """A CBOR map of `pairs` as given: duplicates and NaN keys kept, which no dict can hold."""
    body = b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in pairs)
    return _head(5, len(pairs)) + body


def bad_records(template: dict[str, Any]) -> list[Planted]:
    """One record per kind of damage, each under a fresh key, built from a real record."""
    planted: list[Planted] = []

    def add(label: str, what: str, change: Callable[[dict[str, Any]], Any] | None = None) -> None:
        key = uuid.uuid4().bytes
        record = dict(template, id=key)
        value = change(record) if change is not None else None
        data = value if isinstance(value, bytes) else cbor2.dumps(record)
        planted.append((label, key, data, what))

    def setter(**fields: Any) -> Callable[[dict[str, Any]], None]:
        return lambda record: record.update(fields)

    cyclic: list[Any] = []
    cyclic.append(cyclic)
    add("owner int", "'owner' field is 5, not a str or None", setter(owner=5))
    add("short id", "'id' field is 3 bytes", setter(id=b"abc"))
    add("short parent", "'parent' field is 3 bytes", setter(parent=b"abc"))
    add("huge attempt", "'attempt' field is 1000", setter(attempt=10**30))
    add("negative attempt", "'attempt' field is -1,", setter(attempt=-1))
    add("attempt over 2**31", "'attempt' field is 2147483648", setter(attempt=MAX_COUNT + 1))
    add("bool attempt", "'attempt' field is True", setter(attempt=True))
    add("huge recoveries", "'recoveries' field is", setter(recoveries=2**64))
    add("negative misses", "'misses' field is -5", setter(misses=-5))
    add("unknown status", "'status' field is 'zombie'", setter(status="zombie"))
    add("status int", "'status' field is 2", setter(status=2))
    add("nan time", "'created' field is nan", setter(created=float("nan")))
    add("infinite time", "'updated' field is inf", setter(updated=float("inf")))
    add("time str", "'updated' field is 'now'", setter(updated="now"))
    add("workflow ints", "'wf[0]' field is 1", setter(wf=[1, 2, 3]))
    add("workflow pair", "'wf' field is", setter(wf=template["wf"][:2]))
    add("workflow id junk", "'wf[0]' field is 'x'", setter(wf=["x", "t", None]))
    add("task int", "'task' field is 7", setter(task=7))
    add("args str", "'args' field is 'x'", setter(args="x"))
    add("attempts ints", "'attempts[0]' field is 1", setter(attempts=[1]))
    add("attempts str", "'attempts' field is 'x'", setter(attempts="x"))
    add(
        "attempt entry huge",
        "'attempts[0].attempt' field is",
        setter(attempts=[{"attempt": 10**20, "error": "e"}]),
    )
    add("error list", "'error' field is [1]", setter(error=[1]))
    add(
        "error message int",
        "'error.message' field is 3",
        setter(
            status="failed",
            error={"type": "E", "module": "m", "message": 3, "args": None, "traceback": ""},
        ),
    )
    add(
        "success without result",
        "status is success but it has no result",
        setter(status="success", result=None),
    )
    add("version", "'v' field is 9", setter(v=9))
    add("no owner field", "it has no 'owner' field", lambda r: r.pop("owner"))
    add("not a map", "it is [1, 2], not a map", lambda r: cbor2.dumps([1, 2]))
    add("other id", "not the key it is stored under", setter(id=uuid.uuid4().bytes))
    # Hostile tags: each would build an object no record holds.
    add("regex tag 35", "CBOR tag 35", setter(task=cbor2.CBORTag(35, "a+")))
    add("MIME tag 36", "CBOR tag 36", setter(owner=cbor2.CBORTag(36, "Subject: x\n\nhi")))
    add("fraction tag 30", "CBOR tag 30", setter(attempt=cbor2.CBORTag(30, [1, 3])))
    add(
        "cyclic list 28/29",
        "CBOR tag 28",
        lambda r: cbor2.dumps(dict(r, attempts=cyclic), value_sharing=True),
    )
    add("string reference 256", "CBOR tag 256", setter(task=cbor2.CBORTag(256, "t")))
    add("undefined", "UndefinedType, which pynenc never writes", setter(owner=cbor2.undefined))
    # Keys a dict cannot hold twice, written twice.
    add(
        "duplicate owner key",
        "duplicate map key: 'owner'",
        lambda r: raw_map([*r.items(), ("owner", None)]),
    )
    add(
        "two NaN keys",
        "the key nan twice",
        lambda r: raw_map([*r.items(), (float("nan"), 1), (float("nan"), 2)]),
    )
    add("truncated", "truncated", lambda r: cbor2.dumps(r)[:-3])
    add("trailing bytes", "unexpected bytes after", lambda r: cbor2.dumps(r) + b"\x00")
    add("empty", "truncated", lambda r: b"\x00"[:0])
    # A key that is not an invocation id at all, holding a well-formed record of another id.
    planted.append(("3-byte key", b"abc", cbor2.dumps(template), "not the key it is stored under"))
    return planted


def plant(store: Store, planted: list[Planted]) -> None:
    """Write the bad records straight into the store, as damage or another writer would."""
    for _label, key, value, _what in planted:
        store.put("invocations", key, value)
    store.flush()


def template_of(store: LmdbStore | Any, invocation_id: str) -> dict[str, Any]:
    raw = store.get("invocations", uuid.UUID(invocation_id).bytes)
    assert raw is not None
    record = codec.decode(raw)
    assert isinstance(record, dict)
    return record


def reported(lines: list[str], planted: list[Planted]) -> None:
    """Each planted record is reported on exactly one line naming its key and the problem."""
    for label, key, _value, what in planted:
        shown = show_key(key)
        naming = [line for line in lines if shown in line]
        assert len(naming) == 1, (label, shown, lines)
        assert what.lower() in naming[0].lower(), (label, naming[0])


@pytest.fixture
def filled(store_url: str) -> tuple[Pynenc, list[str], list[Planted]]:
    """A store with finished, failed and child invocations and every bad record."""
    app = Pynenc("bad-records", store=store_url, sync=False)

    @app.task(name="badrec.double")
    def double(n: int) -> int:
        return n * 2

    @app.task(name="badrec.flow")
    def flow(n: int) -> int:
        return double.wf.execute_task(double, n).result + 1

    @app.task(name="badrec.fails")
    def fails() -> None:
        raise ValueError("no")

    good = [flow(3).invocation_id, fails().invocation_id]
    good += [i.invocation_id for i in app.list_invocations(task_id="double")]
    planted = bad_records(template_of(app.store, good[0]))
    plant(app.store, planted)
    return app, good, planted


def store_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pynenc.store"]


def test_listing_reports_each_bad_record_once_and_lists_the_rest(
    filled: tuple[Pynenc, list[str], list[Planted]], caplog: pytest.LogCaptureFixture
) -> None:
    app, good, planted = filled
    with caplog.at_level(logging.ERROR, logger="pynenc.store"):
        listed = app.list_invocations()
        lines = store_lines(caplog)  # one line per bad record and call
        assert [i.result for i in app.list_invocations(task_id="flow")] == [7]
    assert sorted(i.invocation_id for i in listed) == sorted(good)
    assert len(lines) == len(planted)
    reported(lines, planted)
    assert all("\n" not in line for line in lines)
    assert not any(r.exc_info for r in caplog.records), "no tracebacks"
    assert len(store_lines(caplog)) == 2 * len(planted)


def test_status_counts_the_rest_and_names_each_bad_record(
    filled: tuple[Pynenc, list[str], list[Planted]], caplog: pytest.LogCaptureFixture
) -> None:
    app, _good, planted = filled
    with caplog.at_level(logging.ERROR, logger="pynenc.store"):
        state = cli.status(app)
    assert state["counts"] == {"failed": 1, "success": 2}
    assert sorted(d["key"] for d in state["damaged"]) == sorted(
        show_key(k) for _, k, _, _ in planted
    )
    for label, key, _value, what in planted:
        [entry] = [d for d in state["damaged"] if d["key"] == show_key(key)]
        assert what.lower() in entry["problem"].lower(), (label, entry)
    reported(store_lines(caplog), planted)


def test_reading_a_bad_record_directly_raises_corrupt_entry_naming_its_key(
    filled: tuple[Pynenc, list[str], list[Planted]], store_url: str
) -> None:
    app, _good, planted = filled
    for label, key, _value, what in planted:
        if len(key) != 16:
            continue
        invocation_id = str(uuid.UUID(bytes=key))
        readers: list[Callable[[str], object]] = [app.get_invocation, app.journal, app.replay]
        for read in readers:
            with pytest.raises(CorruptEntryError) as caught:
                read(invocation_id)
            message = str(caught.value)
            assert invocation_id in message and what.lower() in message.lower(), (label, message)
            assert store_url in message
            assert caught.value.key == invocation_id  # type: ignore[attr-defined]
            assert caught.value.table == "invocations"  # type: ignore[attr-defined]


def test_huge_attempt_is_a_corrupt_record_not_an_overflow(
    filled: tuple[Pynenc, list[str], list[Planted]],
) -> None:
    app, _good, planted = filled
    [(_, key, _, _)] = [p for p in planted if p[0] == "huge attempt"]
    invocation_id = str(uuid.UUID(bytes=key))
    for read in (app.journal, app.replay, app.get_invocation):
        with pytest.raises(CorruptEntryError, match="'attempt' field is 1000"):
            read(invocation_id)


def test_a_damaged_owner_pid_is_judged_dead_not_an_overflow() -> None:
    # A well-formed record whose owner names a pid no system can have: not a crash of
    # recover(), and never mistaken for a live process.
    assert owner_is_dead(f"{socket.gethostname()}:pid={10**30}:start=?") is True
    assert owner_is_dead(f"{socket.gethostname()}:{10**30}:0") is True


# -- in real processes: recovery, the command line, a worker -----------------------------------

PROGRAM = """
import json, logging, os, signal, sys
from pynenc import Pynenc

app = Pynenc("bad-records-drill")

@app.task(name="drill.step")
def step(n):
    return n * 2

@app.task(name="drill.flow")
def flow(n):
    first = flow.wf.execute_task(step, n).result
    if os.environ.get("DRILL_CRASH") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return first + flow.wf.execute_task(step, first).result

if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, format="%(name)s %(message)s")
    if sys.argv[1] == "finished":
        print(json.dumps(flow(1).invocation_id))
    elif sys.argv[1] == "crash":
        flow(5)
    else:
        try:
            resumed = app.recover()
        except Exception as exc:
            notes = getattr(exc, "__notes__", [])
            mro = [c.__name__ for c in type(exc).__mro__]
            print(json.dumps({"mro": mro, "message": str(exc), "notes": notes}))
        else:
            print(json.dumps([[i.invocation_id, i.result] for i in resumed]))
"""


def drill(
    tmp_path: Path, store_url: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    program = tmp_path / "drill.py"
    program.write_text(textwrap.dedent(PROGRAM))
    return subprocess.run(
        [sys.executable, str(program), *args],
        env=dict(
            os.environ, PYNENC_STORE=store_url, PYNENC_SYNC="0", PYTHONPATH=str(tmp_path), **env
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_recover_resumes_a_stranded_workflow_next_to_bad_records(
    tmp_path: Path, store_url: str
) -> None:
    finished = drill(tmp_path, store_url, "finished")
    assert finished.returncode == 0, finished.stderr
    crashed = drill(tmp_path, store_url, "crash", DRILL_CRASH="1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    store = open_store(store_url)
    [stranded] = [
        codec.decode(v)
        for _k, v in store.scan("invocations", b"")
        if codec.decode(v)["status"] == "running"
    ]
    # Each bad record looks stranded too: running, owned by the process just killed.
    planted = bad_records(dict(stranded, parent=None))
    plant(store, planted)

    recovered = drill(tmp_path, store_url, "recover")
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout) == [[str(uuid.UUID(bytes=stranded["id"])), 30]]
    lines = [line for line in recovered.stderr.splitlines() if line.startswith("pynenc.store ")]
    assert len(lines) == len(planted), recovered.stderr
    reported(lines, planted)
    assert "Traceback" not in recovered.stderr

    # The command line: status lists the rest, names every bad record, and exits 0.
    command = [sys.executable, "-m", "pynenc", "--app", "drill:app"]
    env = dict(os.environ, PYNENC_STORE=store_url, PYTHONPATH=str(tmp_path))
    status = subprocess.run(
        [*command, "status", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["counts"] == {"success": 6}  # two workflows of a parent and two children
    assert sorted(d["key"] for d in state["damaged"]) == sorted(
        show_key(k) for _, k, _, _ in planted
    )
    reported([line for line in status.stderr.splitlines() if "pynenc.store" in line], planted)
    # Nothing is left to recover; the bad records were never written over.
    again = drill(tmp_path, store_url, "recover")
    assert json.loads(again.stdout) == []
    for _label, key, value, _what in planted:
        assert store.get("invocations", key) == value


def test_a_worker_sets_a_bad_record_aside_and_runs_the_next(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "drill.py").write_text(textwrap.dedent(PROGRAM))
    for name, value in (
        ("PYNENC_STORE", store_url),
        ("PYNENC_SYNC", "0"),
        ("PYNENC_EXECUTION", "queued"),
    ):
        monkeypatch.setenv(name, value)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("drill", None)
    module = importlib.import_module("drill")  # the program, as the worker imports it
    try:
        app = module.app
        bad = uuid.uuid4().bytes
        good = module.flow(4)
        template = template_of(app.store, good.invocation_id)
        app.store.put("invocations", bad, cbor2.dumps(dict(template, id=bad, owner=5)), None)
        app.store.enqueue(bad)
        app.store.flush()
        later = module.flow(6)
        log = tmp_path / "worker.log"
        with open(log, "wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "pynenc", "--app", "drill:app", "worker"],
                env=env,
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            assert later.wait(timeout=60).result == 6 * 2 + 6 * 4
            assert good.wait(timeout=5).result == 4 * 2 + 4 * 4
            time.sleep(0.5)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        text = log.read_text()
        [line] = [line for line in text.splitlines() if show_key(bad) in line]
        assert "pynenc.store" in line and "'owner' field is 5" in line, text
        assert "Traceback" not in text
        assert bad in app.store.queued()  # set aside, not dropped
        assert app.get_invocation(good.invocation_id).status is InvocationStatus.SUCCESS
    finally:
        sys.modules.pop("drill", None)


def test_recover_goes_on_past_a_stranded_workflow_it_cannot_read(
    tmp_path: Path, lmdb_url: str, store_path: Path
) -> None:
    store_url = lmdb_url  # damages the file itself
    for _ in range(2):
        crashed = drill(tmp_path, store_url, "crash", DRILL_CRASH="1")
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    # With no pynenc process on the store, damage the journal of the first stranded workflow
    # (its last byte, inside the row's checksum), written by hand the way a disk would.
    with lmdb.open(str(store_path), lock=False, subdir=True, max_dbs=16, map_size=1 << 31) as env:
        with env.begin(write=True) as txn:
            # Each stored value ends with its 4-byte checksum (docs/journal-format.md).
            records = [
                codec.decode(value[:-4])
                for key, value in txn.cursor()
                if key[:1] == b"\x02" and codec.decode(value[:-4])["status"] == "running"
            ]
            # Damage the journal that sorts first: a read of a journal also checks the row
            # just past its own (a damaged key may have moved one of its rows there), so the
            # other workflow stays readable only when the damaged row is not that row.
            first, second = sorted(records, key=lambda r: r["id"])
            journal_key = b"\x01" + first["id"] + bytes(8)
            segment = txn.get(journal_key)
            assert segment is not None
            txn.put(journal_key, segment[:-1] + bytes([segment[-1] ^ 0xFF]))

    recovered = drill(tmp_path, store_url, "recover")
    assert recovered.returncode == 0, recovered.stderr
    outcome = json.loads(recovered.stdout)
    damaged, resumed = (str(uuid.UUID(bytes=r["id"])) for r in (first, second))
    assert "CorruptStoreError" in outcome["mro"] and damaged in outcome["message"], outcome
    assert outcome["notes"] == [
        "recover(): 1 stranded invocation(s) could not be read and were left as they were; "
        "1 other(s) resumed"
    ]
    assert "Traceback" not in recovered.stderr
    app = Pynenc("check", store=store_url)
    assert app.get_invocation(resumed).result == 30  # type: ignore[union-attr]
    left = app.get_invocation(damaged)
    assert left is not None and left.status is InvocationStatus.RUNNING
