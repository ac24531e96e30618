"""Versioning with `wf.patched` and `wf.deprecate_patch`: a changed workflow replays and
resumes runs recorded before the change and takes the new branch in new runs, across crashes.

Each version of the program is the same module (`patchprog`) in its own directory, run in its
own process against one real LMDB store; crashes are real SIGKILLs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pynenc import InvalidArgumentError, NonDeterminismError, Pynenc

HEAD = '''
import os, time
from pathlib import Path
from pynenc import Pynenc

app = Pynenc("patch-test")
DIR = Path(os.environ["PATCH_DIR"])


def touch(name: str) -> str:
    (DIR / name).write_text(name)
    return name


def hold(name: str) -> None:
    """Pacing only (not recorded): wait until the test creates `name`, when asked to, after
    saying so with the mark `at-NAME` (everything before it is durable by then)."""
    if os.environ.get("PATCH_HOLD"):
        (DIR / f"at-{name}").write_text(name)
    while os.environ.get("PATCH_HOLD") and not (DIR / name).exists():
        time.sleep(0.02)


@app.task
def step(name: str) -> str:
    return name
'''

# The code before the change: every run charges the "old" way.
V1 = """
@app.task
def flow() -> list[str]:
    out = [step("a").result]
    flow.wf.side_effect("started", lambda: touch("started"))
    hold("go")
    out.append(step("old").result)
    return out
"""

# The change, guarded: new runs take the new branch, old runs keep the old one.
V2 = """
@app.task
def flow() -> list[str]:
    out = [step("a").result]
    flow.wf.side_effect("started", lambda: touch("started"))
    hold("go")
    if flow.wf.patched("new-step"):
        flow.wf.side_effect("patched", lambda: touch("patched"))
        hold("go-on")
        out.append(step("new").result)
    else:
        out.append(step("old").result)
    return out
"""

# No run recorded before the change is left: the old branch is deleted.
V3 = """
@app.task
def flow() -> list[str]:
    out = [step("a").result]
    flow.wf.side_effect("started", lambda: touch("started"))
    hold("go")
    flow.wf.deprecate_patch("new-step")
    flow.wf.side_effect("patched", lambda: touch("patched"))
    hold("go-on")
    out.append(step("new").result)
    return out
"""


@pytest.fixture
def env(tmp_path: Path, store_url: str) -> dict[str, str]:
    for version, body in (("v1", V1), ("v2", V2), ("v3", V3)):
        (tmp_path / version).mkdir()
        (tmp_path / version / "patchprog.py").write_text(HEAD + body)
    (tmp_path / "marks").mkdir()
    return {
        "PYNENC_STORE": store_url,
        "PYNENC_SYNC": "0",
        "PYNENC_LEASE_SECONDS": "2",
        "PATCH_DIR": str(tmp_path / "marks"),
        "ROOT": str(tmp_path),
    }


def run(env: dict[str, str], version: str, script: str) -> Any:
    """Run `script` with program `version` importable as `patchprog`; return its JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", "import json, patchprog\n" + textwrap.dedent(script)],
        env={**os.environ, **env, "PYTHONPATH": str(Path(env["ROOT"]) / version)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout.splitlines()[-1])


def start(env: dict[str, str], version: str) -> str:
    """Run one workflow to its end with `version`; return its invocation id."""
    return str(
        run(env, version, "print(json.dumps(patchprog.flow().invocation_id))"),
    )


def crash(env: dict[str, str], version: str, after: str) -> None:
    """Start a workflow with `version` and SIGKILL it once it created the mark `after`."""
    marks = Path(env["PATCH_DIR"])
    runner = subprocess.Popen(
        [sys.executable, "-c", "import patchprog; patchprog.flow()"],
        env={
            **os.environ,
            **env,
            "PATCH_HOLD": "1",
            "PYTHONPATH": str(Path(env["ROOT"]) / version),
        },
    )
    try:
        deadline = time.monotonic() + 30
        while not (marks / after).exists():
            assert runner.poll() is None, "the workflow ended before the crash point"
            assert time.monotonic() < deadline, f"timed out waiting for {after}"
            time.sleep(0.02)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
    assert runner.returncode == -signal.SIGKILL
    (marks / after).unlink()


RECOVER = """
print(json.dumps([[i.invocation_id, i.result] for i in patchprog.app.recover()]))
"""


def replay(env: dict[str, str], version: str, invocation_id: str) -> Any:
    return run(
        env,
        version,
        f"""
        from pynenc.errors import NonDeterminismError
        try:
            print(json.dumps({{"result": patchprog.app.replay({invocation_id!r})}}))
        except NonDeterminismError as e:
            print(json.dumps({{"diverged": e.position, "message": str(e)}}))
        """,
    )


def journal(env: dict[str, str], invocation_id: str) -> list[list[Any]]:
    return list(
        run(
            env,
            "v2",
            f"""
            entries = patchprog.app.journal({invocation_id!r})
            print(json.dumps([[e.position, e.operation, e.name] for e in entries]))
            """,
        )
    )


def test_old_runs_replay_on_the_old_branch_and_new_runs_take_the_new_one(
    env: dict[str, str],
) -> None:
    old = start(env, "v1")
    assert replay(env, "v2", old) == {"result": ["a", "old"]}
    assert ["patch", "new-step"] not in [e[1:] for e in journal(env, old)]

    new = start(env, "v2")
    assert run(env, "v2", f"print(json.dumps(patchprog.app.replay({new!r})))") == ["a", "new"]
    # The marker sits where the change is, before the new branch's operations.
    assert journal(env, new) == [
        [0, "execute_task", "patchprog.step"],
        [1, "side_effect", "started"],
        [2, "patch", "new-step"],
        [3, "side_effect", "patched"],
        [4, "execute_task", "patchprog.step"],
    ]
    shown = subprocess.run(
        [sys.executable, "-m", "pynenc", "--store", env["PYNENC_STORE"], "show", new, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    entry = json.loads(shown.stdout)["journal"][2]
    assert (entry["operation"], entry["name"]) == ("patch", "new-step")


def test_a_crash_after_the_marker_resumes_on_the_new_branch(env: dict[str, str]) -> None:
    marks = Path(env["PATCH_DIR"])
    (marks / "go").write_text("go")
    # Killed once the side effect after the marker returned: its outcome is durable then
    # (killed as its mark appears, the side effect may rightly run again on resume).
    crash(env, "v2", after="at-go-on")
    (marks / "patched").unlink()
    (marks / "go-on").write_text("go")
    ((inv_id, result),) = run(env, "v2", RECOVER)
    assert result == ["a", "new"]
    assert not (marks / "patched").exists(), "the recorded side effect did not run again"
    assert [e[1:] for e in journal(env, inv_id)].count(["patch", "new-step"]) == 1
    assert replay(env, "v2", inv_id) == {"result": ["a", "new"]}


def test_an_old_run_that_crashed_before_the_change_resumes_on_the_new_branch(
    env: dict[str, str],
) -> None:
    crash(env, "v1", after="started")
    marks = Path(env["PATCH_DIR"])
    (marks / "go").write_text("go")
    (marks / "go-on").write_text("go")
    ((inv_id, result),) = run(env, "v2", RECOVER)
    # Its journal ended before the patch point: from there on the run is live, new code.
    assert result == ["a", "new"]
    assert journal(env, inv_id)[2] == [2, "patch", "new-step"]
    assert replay(env, "v2", inv_id) == {"result": ["a", "new"]}


def test_deprecate_patch_replays_runs_with_and_without_the_marker(env: dict[str, str]) -> None:
    with_marker = start(env, "v2")
    assert replay(env, "v3", with_marker) == {"result": ["a", "new"]}
    fresh = start(env, "v3")
    assert [e[1] for e in journal(env, fresh)] == [
        "execute_task",
        "side_effect",
        "side_effect",
        "execute_task",
    ], "deprecate_patch records nothing"
    assert replay(env, "v3", fresh) == {"result": ["a", "new"]}
    # A run recorded before the change still needs the old branch: v3 is for when none is left.
    old = start(env, "v1")
    diverged = replay(env, "v3", old)
    assert diverged["diverged"] == 2 and "side_effect('patched')" in diverged["message"].replace(
        '"', "'"
    )


def test_one_answer_per_change_id_and_bad_ids_record_nothing(app: Pynenc) -> None:
    @app.task(name="test_patched.loop")
    def loop() -> list[Any]:
        seen = [loop.wf.patched("v2") for _ in range(3)]
        errors = []
        for bad in ("", 7, None, "x" * 256):
            try:
                loop.wf.patched(bad)  # type: ignore[arg-type]
            except InvalidArgumentError as e:
                errors.append(str(e))
        other = loop.wf.patched("v3")
        try:
            loop.wf.side_effect("nested", lambda: loop.wf.patched("v4"))
        except InvalidArgumentError as e:
            errors.append(str(e))
        return [seen, other, errors]

    inv = loop()
    seen, other, errors = inv.result
    assert seen == [True, True, True] and other is True
    assert len(errors) == 5 and all("change id" in e for e in errors[:4])
    assert "wf.patched() was called inside the function of side effect" in errors[4]
    assert [(e.operation, e.name) for e in app.journal(inv.invocation_id)] == [
        ("patch", "v2"),
        ("patch", "v3"),
        ("side_effect", "nested"),  # its outcome: the refusal, recorded
    ]
    assert app.replay(inv.invocation_id) == inv.result


def test_code_that_no_longer_asks_for_a_recorded_marker_diverges(app: Pynenc) -> None:
    state = {"patched": True}

    @app.task(name="test_patched.gate")
    def gate() -> float:
        if state["patched"]:
            gate.wf.patched("v2")
        return gate.wf.random()

    inv = gate()
    assert isinstance(inv.result, float)
    state["patched"] = False
    with pytest.raises(NonDeterminismError) as caught:
        app.replay(inv.invocation_id)
    assert caught.value.position == 0 and 'patched("v2")' in str(caught.value)


def test_a_format_4_store_opens_and_its_runs_replay_with_patched_code(
    env: dict[str, str], lmdb_url: str
) -> None:
    """Format 5 only adds the patch marker kind: a store of format 4 (which holds none) is the
    same bytes, and opening it just records the new version (an embedded store's format)."""
    env = {**env, "PYNENC_STORE": lmdb_url}
    import lmdb  # the store's documented layout, read and written without this build

    old = start(env, "v1")
    path = env["PYNENC_STORE"].removeprefix("lmdb://")
    db = lmdb.open(path, max_dbs=4, lock=False)
    with db.begin(write=True, db=db.open_db(b"meta", create=False)) as txn:
        txn.put(b"format_version", (4).to_bytes(4, "big"))
    db.close()
    got = run(
        env,
        "v2",
        f"""
        print(json.dumps([patchprog.app.replay({old!r}), patchprog.flow().result,
                          patchprog.app.store.format_version()]))
        """,
    )
    assert got == [["a", "old"], ["a", "new"], 5]
