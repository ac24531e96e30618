"""Dicts keep their key order through every payload: results, arguments, workflow data and
side-effect values, nested too, inline and queued, across a crash and recovery. Digests ignore
key order, so code that builds the same dicts in another order replays its journal, and a
store written with sorted keys (as earlier versions wrote every payload) still reads."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import cbor2
import pytest
from conftest import WorkerPool

from pynenc import codec
from pynenc.store import open_store

PROGRAMS = Path(__file__).parent / "programs"


def show(value: Any) -> str:
    """JSON keeps key order, so equal JSON text means equal values in the same key order."""
    return json.dumps(value, default=str)


def expected(ko: ModuleType) -> dict[str, Any]:
    """What `flow` returns, in the key order its code builds."""
    doc = ko.doc
    data = {"plain": doc("data"), "rich": doc("data", rich=True)}
    return {
        "before": data,
        "fx": doc("fx"),
        "fx_rich": doc("fx", rich=True),
        "kid": {"payload": doc("arg"), "kwargs": list(ko._reorder({"zz": 1, "a": 2}))},
        "after": data,
        "made": doc("result", rich=True),
    }


def without_workflow(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "workflow"}


@pytest.fixture
def ko(
    execution: str, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """The program imported in this process; with queued execution, a worker serves it."""
    env = {"PYNENC_STORE": store_url, "PYNENC_SYNC": "0", "PYNENC_EXECUTION": execution}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KEY_ORDER", raising=False)
    monkeypatch.syspath_prepend(str(PROGRAMS))
    sys.modules.pop("key_order", None)
    pool = WorkerPool("key_order:app", tmp_path, pythonpath=PROGRAMS, env=env)
    if execution == "queued":
        pool.start(1)
    try:
        yield importlib.import_module("key_order")
    finally:
        pool.stop()
        sys.modules.pop("key_order", None)


def test_result_data_side_effects_arguments_and_replay_keep_key_order(ko: ModuleType) -> None:
    inv = ko.flow()
    result = inv.wait(timeout=60).result
    want = show(expected(ko))
    assert list(result["made"]) == ["zebra", "apple", "id", "when"]  # not sorted
    assert show(without_workflow(result)) == want
    wf_id = result["workflow"]
    assert show(ko.app.get_workflow_data(wf_id, "plain")) == show(ko.doc("data"))
    assert show(ko.app.get_workflow_data(wf_id, "rich")) == show(ko.doc("data", rich=True))
    assert show(without_workflow(ko.app.replay(inv.invocation_id))) == want
    [child] = [i for i in ko.app.list_invocations() if i.task_id == "key_order.pair"]
    assert show(child.arguments) == show({"payload": ko.doc("arg"), "kwargs": {"zz": 1, "a": 2}})


def run(
    store_url: str, tmp_path: Path, *args: str, order: str = ""
) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PYNENC_STORE=store_url,
        PYNENC_SYNC="1",
        PYTHONPATH=os.pathsep.join([str(PROGRAMS), os.environ.get("PYTHONPATH", "")]),
        KEY_ORDER=order,
        KEY_ORDER_CRASH=str(tmp_path / "killed"),
    )
    return subprocess.run(
        [sys.executable, "-c", "import sys, key_order; key_order.main(sys.argv[1:])", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def output(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture
def program(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The program imported here only for `doc` and `expected` (its app is never used)."""
    monkeypatch.delenv("KEY_ORDER", raising=False)
    monkeypatch.syspath_prepend(str(PROGRAMS))
    sys.modules.pop("key_order", None)
    yield importlib.import_module("key_order")
    sys.modules.pop("key_order", None)


def test_key_order_survives_sigkill_and_recovery_in_new_processes(
    program: ModuleType, store_url: str, tmp_path: Path
) -> None:
    crashed = run(store_url, tmp_path, "start")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    # The new process replays the recorded reads and side-effect values, finds the finished
    # child's stored result, and reads the workflow data live.
    [result] = output(run(store_url, tmp_path, "recover"))
    want = show(expected(program))
    assert show(without_workflow(result)) == want
    # A third process reads `.result`, replays and reads the data from outside.
    seen = output(run(store_url, tmp_path, "read", result["workflow"]))
    assert show(without_workflow(seen["result"])) == want
    assert show(without_workflow(seen["replay"])) == want
    assert show(seen["plain"]) == show(program.doc("data"))
    assert show(seen["rich"]) == show(program.doc("data", rich=True))


@pytest.mark.parametrize("when", ["recovery", "replay"])
def test_code_building_the_same_dicts_in_another_order_replays_its_journal(
    program: ModuleType, store_url: str, tmp_path: Path, when: str
) -> None:
    # Arguments, set_data values and keyword arguments are compared by a digest of their
    # canonical form: the same values in another key order are the same call, not a divergence.
    if when == "recovery":
        assert run(store_url, tmp_path, "start").returncode == -signal.SIGKILL
        [result] = output(run(store_url, tmp_path, "recover", order="reversed"))
    else:
        (tmp_path / "killed").touch()
        inv = output(run(store_url, tmp_path, "start"))["invocation"]
        result = output(run(store_url, tmp_path, "read", inv, order="reversed"))["replay"]
    recorded = expected(program)
    # What was recorded (reads, side-effect values, the child's result) comes back as it was;
    # data written before is not written again; only what the code builds now is reversed.
    for key in ("before", "fx", "fx_rich", "kid", "after"):
        assert show(result[key]) == show(recorded[key]), key
    assert list(result["made"]) == ["when", "id", "apple", "zebra"]


def test_a_store_written_with_sorted_keys_still_reads_and_replays(
    program: ModuleType, store_url: str, tmp_path: Path
) -> None:
    # Earlier versions wrote every payload as canonical CBOR (maps sorted by key). Code that
    # builds its dicts in that order writes exactly those bytes, which is checked below; the
    # store is then read and replayed by code that builds the same dicts in another order.
    (tmp_path / "killed").touch()
    inv = output(run(store_url, tmp_path, "start", order="canonical"))["invocation"]
    os.environ["KEY_ORDER"] = "canonical"
    try:
        sorted_data = program.doc("data", rich=True)
        sorted_result = expected(program)
    finally:
        del os.environ["KEY_ORDER"]
    old_encoders = {kind: fn for kind, fn in codec._ENCODERS.items() if kind is not dict}
    canonical = cbor2.dumps(sorted_data, canonical=True, encoders=old_encoders)
    store = open_store(store_url)
    assert store.get("data", uuid.UUID(inv).bytes + b"rich") == canonical

    seen = output(run(store_url, tmp_path, "read", inv))
    # Everything reads back in the stored (sorted) order, and the replay does not diverge.
    assert show(seen["rich"]) == show(sorted_data)
    assert show(without_workflow(seen["result"])) == show(sorted_result)
    for key in ("before", "fx", "fx_rich", "kid", "after"):
        assert show(seen["replay"][key]) == show(sorted_result[key]), key
    assert show(seen["replay"]["made"]) == show(program.doc("result", rich=True))
