"""The README as a user follows it: its program saved as order.py, then every command it shows,
run as written through a shell, in the directory of order.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def _commands(block: str) -> list[str]:
    """The block's command lines, their trailing comments cut."""
    lines = (line.split("  #", 1)[0].strip() for line in block.splitlines())
    return [line for line in lines if line]


WORKER, ENQUEUE, STATUS, SHOW = _commands(_blocks("bash")[1])


@pytest.fixture
def here(tmp_path: Path) -> Path:
    (tmp_path / "order.py").write_text(_blocks("python")[0])
    return tmp_path


@pytest.fixture
def env() -> dict[str, str]:
    # A user's shell: no store settings of the test run, and the installed `pynenc` on PATH.
    values = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC_")}
    values["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{values.get('PATH', '')}"
    return values


def _shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, f"{command}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def _order(stdout: str) -> tuple[str, str]:
    """The invocation id and the result that order.py printed."""
    match = re.fullmatch(rf"({UUID}) (\{{.*\}})\n", stdout)
    assert match, stdout
    assert "'tracking': 'TRK-ORD-1-" in match[2] and "'payment_id'" in match[2]
    return match[1], match[2]


def _status(cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = _shell(STATUS, cwd, env)
    status: dict[str, Any] = json.loads(proc.stdout)  # nothing but the status: no order ran
    return status


def test_the_first_screen_has_two_set_up_commands() -> None:
    assert _commands(_blocks("bash")[0]) == ["make demo", "make test"]


def test_the_program_and_its_inspection_commands(here: Path, env: dict[str, str]) -> None:
    first, _ = _order(_shell("python order.py", here, env).stdout)
    # Importing order.py (as `status` and `show` do) starts nothing: the store still holds the
    # one order and its charge, however often it is inspected.
    assert _status(here, env)["counts"] == {"success": 2}
    assert _status(here, env)["counts"] == {"success": 2}
    shown = json.loads(_shell(SHOW.replace("ID", first), here, env).stdout)
    assert shown["workflow_id"] == first and shown["status"] == "success"
    assert [child["status"] for child in shown["children"]] == ["success"]
    assert shown["journal"]
    # A second run is a second order: a new workflow with its own charge.
    second, _ = _order(_shell("python order.py", here, env).stdout)
    assert second != first
    assert _status(here, env)["counts"] == {"success": 4}


def test_the_worker_commands(here: Path, env: dict[str, str]) -> None:
    log_path = here / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            ["bash", "-c", WORKER],
            cwd=here,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            # The worker imports order.py without running it; the enqueued order runs on it.
            order, _ = _order(_shell(ENQUEUE, here, env).stdout)
            assert _status(here, env)["counts"] == {"success": 2}
            shown = json.loads(_shell(SHOW.replace("ID", order), here, env).stdout)
            assert shown["status"] == "success"
        finally:
            os.killpg(worker.pid, signal.SIGINT)  # Ctrl-C: to the command's process group
            returncode = worker.wait(timeout=60)
    assert returncode == 0, log_path.read_text()
    assert f"[wf={order} inv={order}] finished order.process_order" in log_path.read_text()


def _shape(text: str) -> list[str]:
    """The words of command output with what differs from run to run (ids, times, durations,
    owners, drawn numbers) replaced by placeholders, and line wrapping ignored."""
    for pattern, placeholder in (
        (UUID, "ID"),
        (r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\.\d+(\+00:00)?", "TIME"),
        (r"\b\d+(\.\d)? (ms|s)\b", "DURATION"),
        (r"\S+:pid=\d+:start=\S+", "OWNER"),
        (r"\b0\.\d+", "NUMBER"),
        (r"TRK-ORD-1-\d{5}", "TRACKING"),
    ):
        text = re.sub(pattern, placeholder, text)
    return text.split()


def test_the_seeing_inside_example_is_what_the_commands_print(
    here: Path, env: dict[str, str]
) -> None:
    [example] = [b for b in _blocks("text") if b.startswith("$ pynenc list")]
    first, _ = _order(_shell("python order.py", here, env).stdout)
    for chunk in re.split(r"^\$ ", example, flags=re.M)[1:]:
        command, expected = chunk.split("\n", 1)
        command = re.sub(UUID, first, command)  # the workflow order.py just ran
        printed = _shell(command, here, {**env, "COLUMNS": "140"}).stdout
        assert _shape(printed) == _shape(expected), f"{command}\n{printed}"


def test_the_waiting_example(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "approval.py").write_text(_blocks("python")[1])
    worker_cmd, start_cmd, signal_cmd = _commands(_blocks("bash")[2])
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            ["bash", "-c", worker_cmd],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            flow = subprocess.Popen(
                ["bash", "-c", start_cmd],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert flow.stdout is not None
            match = re.fullmatch(rf"({UUID}) awaiting approval\n", flow.stdout.readline())
            assert match, log_path.read_text()
            _shell(signal_cmd.replace("ID", match[1]), tmp_path, env)
            out, _ = flow.communicate(timeout=60)
            assert out == "approved\n"
        finally:
            os.killpg(worker.pid, signal.SIGINT)
            worker.wait(timeout=60)
    assert re.search(r"suspended \S+ until", log_path.read_text())
