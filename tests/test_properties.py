"""Property tests: for random programs of workflow operations, recording then replaying gives
identical values, and a SIGKILL at any position followed by recovery gives identical values."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynenc import Pynenc

KEYS = st.sampled_from(["a", "b"])
OPS = st.one_of(
    st.tuples(st.just("random")),
    st.tuples(st.just("uuid")),
    st.tuples(st.just("time")),
    st.tuples(st.just("rng")),
    st.tuples(st.just("side_effect"), st.sampled_from(["s1", "s2"]), st.integers(0, 9)),
    st.tuples(st.just("set"), KEYS, st.integers(0, 99)),
    st.tuples(st.just("get"), KEYS),
    st.tuples(st.just("child"), st.integers(0, 9)),
)
PROGRAMS = st.lists(OPS, min_size=1, max_size=12)


@contextmanager
def fresh_app() -> Iterator[tuple[Pynenc, Any, list[int]]]:
    """An app on a new store with a program-interpreting task; yields (app, task, child runs)."""
    path = tempfile.mkdtemp(prefix="pynenc-prop-")
    app = Pynenc("prop", store=f"lmdb://{path}/store", sync=False)
    child_runs: list[int] = []
    crash = {"at": -1, "fd": -1, "inside_side_effect": False}

    @app.task(name="test_properties.child")
    def child(x: int) -> dict[str, Any]:
        child_runs.append(x)
        return {"x": x, "r": child.wf.random()}

    def report(value: Any) -> None:
        if crash["fd"] >= 0:
            os.write(crash["fd"], (json.dumps(value) + "\n").encode())

    @app.task(name="test_properties.program")
    def program(ops: list[list[Any]]) -> list[Any]:
        wf = program.wf
        out: list[Any] = []
        for i, op in enumerate(ops):
            if i == crash["at"]:
                if crash["inside_side_effect"]:
                    wf.side_effect("crash", lambda: os.kill(os.getpid(), signal.SIGKILL))
                os.kill(os.getpid(), signal.SIGKILL)
            kind = op[0]
            if kind == "random":
                v: Any = wf.random()
            elif kind == "uuid":
                v = wf.uuid()
            elif kind == "time":
                v = wf.utc_now().isoformat()
            elif kind == "rng":
                v = wf.rng().randint(0, 10**6)
            elif kind == "side_effect":
                v = wf.side_effect(op[1], lambda value=op[2]: value * 10)
            elif kind == "set":
                wf.set_data(op[1], op[2])
                v = None
            elif kind == "get":
                v = wf.get_data(op[1], "missing")
            else:
                v = wf.execute_task(child, op[1]).result
            out.append(v)
            report(v)
        return out

    program.crash = crash  # type: ignore[attr-defined]
    try:
        yield app, program, child_runs
    finally:
        shutil.rmtree(path, ignore_errors=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PROGRAMS)
def test_record_then_replay_is_identical(ops: list[tuple[Any, ...]]) -> None:
    with fresh_app() as (app, program, child_runs):
        inv = program([list(op) for op in ops])
        first = inv.result
        runs = list(child_runs)
        assert app.replay(inv.invocation_id) == first
        assert child_runs == runs  # replay ran no child


def crash_then_recover(ops: list[tuple[Any, ...]], at: int, inside_side_effect: bool) -> None:
    with fresh_app() as (app, program, child_runs):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the doomed process
            os.close(read_fd)
            program.crash.update(at=at, fd=write_fd, inside_side_effect=inside_side_effect)
            try:
                program([list(op) for op in ops])
            finally:
                os._exit(3)  # only reached if the kill did not happen
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            seen = [json.loads(line) for line in pipe]
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert len(seen) == at

        [resumed] = app.recover()
        result = resumed.result
        assert len(result) == len(ops)
        for i in range(at):
            if ops[i][0] == "time" and not inside_side_effect:
                continue  # a clock reading never flushed was never durable: read afresh
            assert result[i] == seen[i], (i, ops[i])
        # Children finished before the crash never ran again.
        assert child_runs == [op[1] for op in ops[at:] if op[0] == "child"]
        assert app.recover() == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PROGRAMS, st.data())
def test_sigkill_anywhere_then_recover_is_identical(
    ops: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(ops) - 1))
    crash_then_recover(ops, at, inside_side_effect=False)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PROGRAMS, st.data())
def test_sigkill_inside_a_side_effect_keeps_every_value(
    ops: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(ops) - 1))
    crash_then_recover(ops, at, inside_side_effect=True)
