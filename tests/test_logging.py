"""Log lines carry the ids of the workflow and invocation they concern: a queued workflow run by
a worker process with `--log-format json`, a replay and a recovery in text, a task's own
logger, and `pynenc.logging` installed on a handler of one's own."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import WorkerPool, run_python

import pynenc.logging
from pynenc import InvalidArgumentError, Pynenc
from pynenc.runner.worker import Worker

PROGRAMS = Path(__file__).parent / "programs"
JSON_KEYS = {
    "time",
    "level",
    "logger",
    "message",
    "workflow_id",
    "invocation_id",
    "task",
    "exception",
}


@pytest.fixture
def env(store_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"PYNENC_STORE": store_url, "PYNENC_SYNC": "0", "PYNENC_EXECUTION": "queued"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("LOGGED_DIVERGE", raising=False)
    return values


@pytest.fixture
def logged(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(PROGRAMS))
    sys.modules.pop("logged_app", None)
    yield importlib.import_module("logged_app")
    sys.modules.pop("logged_app", None)


def stored(app: Pynenc) -> dict[str, tuple[str, str]]:
    """Every invocation of the store: id -> (workflow id, task id)."""
    return {
        inv.invocation_id: (inv.workflow.workflow_id, inv.task.task_id)
        for inv in app.list_invocations()
    }


def user_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "myapp"]


def test_a_worker_writes_json_lines_with_the_ids_of_each_invocation(
    tmp_path: Path, env: dict[str, str], logged: ModuleType
) -> None:
    # One worker thread: the parent runs its queued children itself, nested in its own run.
    pool = WorkerPool(
        "logged_app:app", tmp_path, pythonpath=PROGRAMS, env=env, args=("--log-format", "json")
    )
    pool.start(1)
    try:
        flow = logged.flow(3)
        assert flow.wait(timeout=60).result == {"leaves": [0, 2, 4], "side": 21}
    finally:
        pool.stop()
    text = pool.log_text(0)
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one object
    assert lines and all(set(line) == JSON_KEYS for line in lines)
    invocations = stored(logged.app)
    assert len(invocations) == 6  # flow, 3 leaves, side_flow and its leaf

    # Every line about an invocation names its workflow and task as the store has them.
    about = [line for line in lines if line["invocation_id"] is not None]
    for line in about:
        assert invocations[line["invocation_id"]] == (line["workflow_id"], line["task"]), line
    assert {line["invocation_id"] for line in about} == set(invocations)

    # The task's own logger: each line carries the ids of the invocation that logged it,
    # a child's inside its parent's run, and the parent's again once the child returned.
    mine = user_lines(lines)
    assert [line["message"].split(" in ")[0] for line in mine] == [
        "flow starts",
        "leaf 0",
        "leaf 1",
        "leaf 2",
        "side_flow",
        "leaf 10",
        "flow ends",
    ]
    for line in mine:
        assert line["message"].endswith(f" in {line['invocation_id']}"), line
    assert mine[0]["invocation_id"] == mine[0]["workflow_id"] == flow.invocation_id
    assert mine[-1]["invocation_id"] == flow.invocation_id and mine[-1]["level"] == "WARNING"
    side = mine[4]["invocation_id"]
    assert mine[4]["workflow_id"] == side != flow.invocation_id  # a child workflow
    assert mine[5]["workflow_id"] == side  # its leaf is in it
    assert all(line["workflow_id"] == flow.invocation_id for line in mine[1:4])

    # The worker's own lines: its banner names no invocation; running and finished do.
    started = [line for line in lines if "started: app" in line["message"]]
    assert (
        started and started[0]["invocation_id"] is None and started[0]["logger"] == "pynenc.worker"
    )
    [running] = [line for line in lines if line["message"].startswith("running logged_app.flow")]
    assert (running["workflow_id"], running["invocation_id"]) == (flow.invocation_id,) * 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", running["time"])
    assert running["level"] == "INFO" and running["exception"] is None


def test_replay_and_recovery_lines_carry_the_ids_in_text(tmp_path: Path, store_url: str) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYNENC_", "LOGGED_"))}
    base |= {"PYTHONPATH": str(PROGRAMS), "PYNENC_STORE": store_url, "PYNENC_SYNC": "0"}

    def pynenc(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pynenc", "--app", "logged_app:app", *args],
            env=base | extra,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    # A run killed (SIGKILL) right after its first leaf is durable.
    killed = subprocess.run(
        [sys.executable, "-c", "import logged_app; logged_app.flow(2)"],
        env=base | {"PYNENC_CRASH_AFTER": "leaf"},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Changed code diverges: the recovery's line names the invocation it left.
    diverged = pynenc("recover", "--log-format", "json", LOGGED_DIVERGE="1")
    assert diverged.returncode == 1, diverged.stderr
    [left] = [
        json.loads(line) for line in diverged.stderr.splitlines() if '"pynenc.recovery"' in line
    ]
    flow_id = left["invocation_id"]
    assert left["workflow_id"] == flow_id and left["task"] == "logged_app.flow"
    assert left["message"].startswith(f"cannot resume invocation {flow_id}: ")
    # The recovery that resumes it, in text: every line of the task's logger shows its ids.
    recovered = pynenc("recover")
    assert recovered.returncode == 0, recovered.stderr
    lines = [line for line in recovered.stderr.splitlines() if " myapp " in line]
    assert lines and all(
        re.search(r" (INFO|WARNING) myapp \[wf=(\S+) inv=(\S+)\] .* in \3$", line) for line in lines
    ), lines
    assert f"[wf={flow_id} inv={flow_id}] flow starts in {flow_id}" in lines[0]
    # A replay runs the body again: its lines say so too.
    replayed = pynenc("replay", flow_id)
    assert replayed.returncode == 0, replayed.stderr
    assert f"WARNING myapp [wf={flow_id} inv={flow_id}] flow ends in {flow_id}" in (replayed.stderr)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def handler() -> Iterator[Lines]:
    lines = Lines()
    mine = logging.getLogger("myapp")
    mine.addHandler(lines)
    mine.setLevel(logging.INFO)
    yield lines
    mine.removeHandler(lines)
    mine.setLevel(logging.NOTSET)


def test_install_gives_your_own_handler_the_ids(
    logged: ModuleType, handler: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYNENC_EXECUTION", "inline")
    sys.modules.pop("logged_app", None)
    logged = importlib.import_module("logged_app")
    pynenc.logging.install(handler)
    pynenc.logging.install(handler)  # twice is once
    assert sum(isinstance(f, pynenc.logging.ContextFilter) for f in handler.filters) == 1
    logging.getLogger("myapp").info("before")
    flow = logged.flow(1)
    logging.getLogger("myapp").info("after", extra={"workflow_id": "given"})
    first, *inside, last = handler.records
    assert (first.workflow_id, first.invocation_id, first.task_id) == (None, None, None)  # type: ignore[attr-defined]
    assert last.workflow_id == "given" and last.invocation_id is None  # type: ignore[attr-defined]
    invocations = stored(logged.app)
    for record in inside:
        ids = (record.workflow_id, record.task_id)  # type: ignore[attr-defined]
        assert invocations[record.invocation_id] == ids  # type: ignore[attr-defined]
        assert record.getMessage().endswith(f" in {record.invocation_id}")  # type: ignore[attr-defined]
    assert inside[0].invocation_id == flow.invocation_id  # type: ignore[attr-defined]
    assert pynenc.logging.current_ids() == {
        "workflow_id": None,
        "invocation_id": None,
        "task_id": None,
    }


def test_pynenc_loggers_carry_the_ids_on_any_handler(
    logged: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    # pytest's handler has no filter of ours: the records of pynenc's loggers have the ids.
    flow = logged.flow(1)
    worker = Worker(logged.app)
    thread = threading.Thread(target=worker.run)
    with caplog.at_level(logging.INFO, logger="pynenc"):
        thread.start()
        try:
            assert flow.wait(timeout=30).result == {"leaves": [0], "side": 21}
        finally:
            worker.stop()
            thread.join(30)
        logged.app.cancel(logged.flow(2).invocation_id, "not wanted")
    ids = {
        r.getMessage(): (r.workflow_id, r.invocation_id, r.task_id)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name.startswith("pynenc.")
    }
    assert not hasattr(next(r for r in caplog.records if r.name == "myapp"), "workflow_id")
    whole = (flow.invocation_id, flow.invocation_id, "logged_app.flow")
    assert ids["running logged_app.flow (token 1)"] == whole
    assert ids["finished logged_app.flow"] == whole
    [cancelled] = [ids[m] for m in ids if m.startswith("cancelled workflow")]
    assert cancelled[0] == cancelled[1] != flow.invocation_id
    assert cancelled[2] == "logged_app.flow"
    [banner] = [ids[m] for m in ids if "started: app" in m]
    assert banner == (None, None, None)


def test_install_refuses_what_is_not_a_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArgumentError, match=r"takes a logging\.Handler"):
        pynenc.logging.install("stderr")  # type: ignore[arg-type]
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    with pytest.raises(InvalidArgumentError, match=r"call logging.basicConfig\(\) first"):
        pynenc.logging.install()


def test_dict_config_names_the_filter_and_the_json_formatter(store_url: str) -> None:
    out = run_python(
        """
        import io, json, logging.config, sys
        sys.path.insert(0, sys.argv[2])
        stream = io.StringIO()
        logging.config.dictConfig({
            "version": 1,
            "filters": {"pynenc": {"()": "pynenc.logging.ContextFilter"}},
            "formatters": {"json": {"()": "pynenc.logging.JsonFormatter"}},
            "handlers": {"out": {"class": "logging.StreamHandler", "stream": stream,
                                 "filters": ["pynenc"], "formatter": "json"}},
            "root": {"level": "INFO", "handlers": ["out"]},
        })
        import os
        os.environ["PYNENC_STORE"] = sys.argv[1]
        os.environ["PYNENC_EXECUTION"] = "inline"
        import logged_app
        flow = logged_app.flow(1)
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        print(json.dumps({"flow": flow.invocation_id, "lines": lines}))
        """,
        store_url,
        str(PROGRAMS),
    )
    mine = user_lines(out["lines"])
    assert [line["message"].split(" in ")[0] for line in mine] == [
        "flow starts",
        "leaf 0",
        "side_flow",
        "leaf 10",
        "flow ends",
    ]
    assert mine[0]["invocation_id"] == mine[0]["workflow_id"] == out["flow"]
    assert all(line["message"].endswith(f" in {line['invocation_id']}") for line in mine)
