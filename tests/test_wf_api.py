"""The `wf` API details: rng(), the journal view, workflow identity and membership."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pynenc import InvalidArgumentError, Pynenc


def test_rng_methods_replay_identically(app: Pynenc) -> None:
    @app.task(name="test_wf_api.draw")
    def draw() -> dict[str, Any]:
        rng = draw.wf.rng()
        deck = list(range(10))
        rng.shuffle(deck)
        return {
            "randint": rng.randint(1, 6),
            "choice": rng.choice("abcdef"),
            "deck": deck,
            "gauss": rng.gauss(0, 1),
            "uniform": rng.uniform(5, 6),
            "bits": rng.getrandbits(100),
        }

    inv = draw()
    result = inv.result
    assert 1 <= result["randint"] <= 6 and 5 <= result["uniform"] < 6
    assert sorted(result["deck"]) == list(range(10)) and 0 <= result["bits"] < 2**100
    assert app.replay(inv.invocation_id) == result
    assert draw().result != result  # another invocation, other draws


def test_rng_cannot_be_reseeded(app: Pynenc) -> None:
    @app.task(name="test_wf_api.reseed")
    def reseed() -> str:
        try:
            reseed.wf.rng().seed(42)
        except InvalidArgumentError as exc:
            return str(exc)
        return "reseeded"

    assert "cannot be re-seeded" in reseed().result


def test_rng_refuses_a_negative_bit_count_with_the_projects_error(app: Pynenc) -> None:
    @app.task(name="test_wf_api.bits")
    def bits() -> str:
        try:
            bits.wf.rng().getrandbits(-1)
        except InvalidArgumentError as exc:  # also a ValueError, as random.Random raises
            return str(exc)
        return "drawn"

    assert bits().result == "number of bits must be non-negative"


def test_journal_shows_what_was_recorded(app: Pynenc) -> None:
    @app.task(name="test_wf_api.child")
    def child() -> int:
        return 1

    @app.task(name="test_wf_api.job")
    def job() -> dict[str, Any]:
        return {
            "r": job.wf.random(),
            "u": job.wf.uuid(),
            "t": job.wf.utc_now(),
            "s": job.wf.side_effect("pick", lambda: [1, 2]),
            "c": job.wf.execute_task(child).invocation_id,
            "w": job.wf.set_data("k", "v"),
            "g": job.wf.get_data("k"),
        }

    inv = job()
    result = inv.result
    entries = app.journal(inv.invocation_id)
    assert [e.operation for e in entries] == [
        "random",
        "uuid",
        "utc_now",
        "side_effect",
        "execute_task",
        "set_data",
        "get_data",
    ]
    assert [e.position for e in entries] == list(range(7))
    assert entries[0].value == result["r"] and entries[1].value == result["u"]
    assert entries[2].value == result["t"] and entries[2].value.tzinfo is UTC
    assert (entries[3].name, entries[3].value) == ("pick", [1, 2])
    assert entries[4].value == result["c"] and entries[4].name.endswith("child")
    assert (entries[5].name, entries[6].name, entries[6].value) == ("k", "k", "v")


def test_time_is_real_and_strictly_increasing(app: Pynenc) -> None:
    @app.task(name="test_wf_api.clock")
    def clock() -> list[datetime]:
        return [clock.wf.utc_now() for _ in range(200)]

    before = datetime.now(UTC)
    times = clock().result
    after = datetime.now(UTC)
    assert before <= times[0] and times[-1] <= after
    assert all(a < b for a, b in itertools.pairwise(times))


def test_membership_and_identity(app: Pynenc) -> None:
    @app.task(name="test_wf_api.sub", force_new_workflow=True)
    def sub() -> dict[str, Any]:
        return {
            "wf": sub.workflow.workflow_id,
            "parent": sub.workflow.parent_workflow_id,
            "type": sub.workflow.workflow_type,
        }

    @app.task(name="test_wf_api.joiner")
    def joiner() -> str:
        return joiner.workflow.workflow_id

    @app.task(name="test_wf_api.top")
    def top() -> dict[str, Any]:
        direct = joiner()  # a direct call inside a task behaves like execute_task
        return {
            "me": top.workflow.workflow_id,
            "joined": direct.result,
            "sub": sub().result,
            "direct_id": direct.invocation_id,
        }

    inv = top()
    result = inv.result
    assert result["me"] == inv.invocation_id == result["joined"]
    assert result["sub"]["parent"] == result["me"] and result["sub"]["wf"] != result["me"]
    assert result["sub"]["type"].endswith(".sub")
    # The direct call was recorded: a replay finds the same child.
    assert app.replay(inv.invocation_id) == result
    assert uuid.UUID(result["direct_id"]).version == 8  # derived from (parent, attempt, position)


def test_unknown_ids_are_clear_errors(app: Pynenc) -> None:
    with pytest.raises(InvalidArgumentError, match="not an invocation"):
        app.get_invocation("nope")
    assert app.get_invocation(str(uuid.uuid4())) is None
    with pytest.raises(InvalidArgumentError, match="no invocation"):
        app.replay(str(uuid.uuid4()))


DATA_WRITER = """
import sys, time
from pathlib import Path
from pynenc import Pynenc

app = Pynenc("writer", store=sys.argv[1], sync=False)
release = Path(sys.argv[2])

@app.task
def long_task() -> None:
    long_task.wf.set_data("progress", 50)
    print(long_task.workflow.workflow_id, flush=True)
    # Runs on with no effect boundary until the test has seen the value from outside.
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("released" if release.exists() else "timed out", flush=True)

long_task()
"""


def test_data_reaches_other_processes_while_its_writer_runs_on(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`set_data` is committed within a few ms even while the task runs on without flushing;
    with the background flush turned off, only at the task's next flush (here: its end)."""
    release = tmp_path / "release"
    reader = Pynenc("reader", store=store_url, sync=False)

    def run_writer(interval_ms: str) -> tuple[str, subprocess.Popen[str]]:
        monkeypatch.setenv("PYNENC_FLUSH_INTERVAL_MS", interval_ms)
        release.unlink(missing_ok=True)
        writer = subprocess.Popen(
            [sys.executable, "-c", DATA_WRITER, store_url, str(release)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        return writer.stdout.readline().strip(), writer

    def finish(writer: subprocess.Popen[str]) -> None:
        release.touch()
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "released"
        assert writer.wait(30) == 0
        writer.stdout.close()

    workflow_id, writer = run_writer("5")
    try:
        deadline = time.monotonic() + 10
        while reader.get_workflow_data(workflow_id, "progress") != 50:
            assert time.monotonic() < deadline, "the value never left the writing process"
            time.sleep(0.005)
        assert writer.poll() is None, "seen while the task still runs"
    finally:
        finish(writer)

    workflow_id, writer = run_writer("0")
    try:
        time.sleep(0.3)  # 60 intervals of the default
        assert reader.get_workflow_data(workflow_id, "progress") is None
        assert writer.poll() is None
    finally:
        finish(writer)
    assert reader.get_workflow_data(workflow_id, "progress") == 50
