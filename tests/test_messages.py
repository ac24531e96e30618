"""What pynenc tells a user who is stuck: a queued wait that no worker serves, a child call
that diverged from its journal."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pynenc import InvalidArgumentError, Pynenc

# --- a queued wait with no worker ---------------------------------------------------------------


@pytest.fixture
def queued(store_url: str) -> Pynenc:
    return Pynenc("queued", store=store_url, sync=False, execution="queued")


def test_a_timed_out_wait_that_no_worker_claimed_says_how_to_start_one(queued: Pynenc) -> None:
    @queued.task
    def job() -> int:
        return 1

    invocation = job()
    with pytest.raises(TimeoutError) as err:
        invocation.wait(timeout=0.2)
    message = str(err.value)
    assert message.startswith(f"invocation {invocation.invocation_id} did not finish within 0.2 s")
    assert "nothing has claimed it" in message and queued.config.store in message
    # The app is a local of this test: no module names it, so the command is generic.
    assert "start one with: pynenc --app MODULE:ATTR worker" in message


def test_a_long_wait_that_no_worker_claimed_logs_once_how_to_start_one(
    queued: Pynenc, caplog: pytest.LogCaptureFixture
) -> None:
    @queued.task
    def job() -> int:
        return 1

    invocation = job()
    with caplog.at_level(logging.WARNING, logger="pynenc.invocation"):
        with pytest.raises(TimeoutError):
            invocation.wait(timeout=5.6)
    hints = [r for r in caplog.records if r.name == "pynenc.invocation"]
    assert len(hints) == 1, caplog.text
    message = hints[0].getMessage()
    assert message.startswith(f"invocation {invocation.invocation_id} waited on for 5 s: ")
    assert "nothing has claimed it" in message and "pynenc --app MODULE:ATTR worker" in message


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1.0, "5"])
def test_a_bad_wait_timeout_is_refused_naming_it(queued: Pynenc, timeout: Any) -> None:
    @queued.task
    def job() -> int:
        return 1

    with pytest.raises(InvalidArgumentError, match=r"^timeout must be a finite number"):
        job().wait(timeout=timeout)


SCRIPT = """
import json
from pynenc import Pynenc

app = Pynenc("flow", store=STORE, sync=False, execution="queued")


@app.task
def double(x: int) -> int:
    return 2 * x


if __name__ == "__main__":
    invocation = double(21)
    try:
        invocation.wait(timeout=0.5)
    except TimeoutError as exc:
        print(json.dumps({"id": invocation.invocation_id, "message": str(exc)}))
"""


def script(store_url: str) -> str:
    return textwrap.dedent(SCRIPT).replace("STORE", repr(store_url))


def test_the_hint_of_a_script_names_the_exact_worker_command_and_it_works(
    tmp_path: Path, store_url: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "flow.py").write_text(script(store_url))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [sys.executable, str(project / "flow.py")],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    told = json.loads(run.stdout.splitlines()[-1])
    command = f"PYTHONPATH={project} pynenc --app flow:app worker"
    assert told["message"].endswith(f"start one with: {command}"), told["message"]
    # The command as told, run where the script was run, serves the invocation.
    env = dict(os.environ, PYTHONPATH=str(project))
    pynenc = str(Path(sys.executable).with_name("pynenc"))
    worker = subprocess.Popen(
        [pynenc, "--app", "flow:app", "worker"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        app = Pynenc("reader", store=store_url, sync=False)
        invocation = app.get_invocation(told["id"])
        assert invocation is not None and invocation.wait(timeout=30).result == 42
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_a_script_run_from_its_own_directory_is_told_the_bare_command(
    tmp_path: Path, store_url: str
) -> None:
    (tmp_path / "flow.py").write_text(script(store_url))
    run = subprocess.run(
        [sys.executable, "flow.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    message = json.loads(run.stdout.splitlines()[-1])["message"]
    assert message.endswith("start one with: pynenc --app flow:app worker"), message
