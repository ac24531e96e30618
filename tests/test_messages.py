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

from pynenc import InvalidArgumentError, NonDeterminismError, Pynenc

# --- a queued wait with no worker ---------------------------------------------------------------


@pytest.fixture
def queued(store_url: str) -> Pynenc:
    return Pynenc("queued", store=store_url, sync=False, execution="queued")


def test_a_timed_out_wait_that_no_worker_claimed_says_how_to_start_one(queued: Pynenc) -> None:
    @queued.task(name="test_messages.job")
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
    @queued.task(name="test_messages.job")
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
    @queued.task(name="test_messages.job")
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


# --- an execute_task divergence shows the arguments -----------------------------------------


def diverging_flow(app: Pynenc, first: Any, then: Any, *, swallow: bool = False) -> str:
    """Run a flow dispatching `charge(first, currency="EUR")`, then replay it dispatching
    `charge(then, ...)`; the divergence's message."""
    amount = [first]

    @app.task(name="test_messages.charge")
    def charge(amount: Any, currency: str = "EUR") -> str:
        return currency

    @app.task(name="test_messages.flow")
    def flow() -> str:
        try:
            return flow.wf.execute_task(charge, amount[0], currency="EUR").result
        except NonDeterminismError:
            if not swallow:
                raise
            return "swallowed"

    invocation = flow()
    amount[0] = then
    with pytest.raises(NonDeterminismError) as err:
        app.replay(invocation.invocation_id)
    return str(err.value)


def test_a_child_called_with_other_arguments_shows_both_decoded(app: Pynenc) -> None:
    message = diverging_flow(app, 10, 11)
    assert "the journal recorded execute_task(" in message
    assert ".charge, 10, currency='EUR') but the code now asks for execute_task(" in message
    assert ".charge, 11, currency='EUR')." in message
    assert "digest" not in message


def test_a_swallowed_child_divergence_is_raised_again_in_the_same_words(app: Pynenc) -> None:
    message = diverging_flow(app, {"qty": 2, "sku": "A-1"}, {"qty": 3, "sku": "A-1"}, swallow=True)
    assert "charge, {'qty': 2, 'sku': 'A-1'}, currency='EUR') but the code now asks" in message
    assert "charge, {'qty': 3, 'sku': 'A-1'}, currency='EUR')." in message


def test_long_arguments_are_cut_to_a_readable_length(app: Pynenc) -> None:
    message = diverging_flow(app, "x" * 5000, "y" * 5000)
    recorded = message.split("the journal recorded ", 1)[1].split(" but the code", 1)[0]
    requested = message.split("now asks for ", 1)[1].split(".\n", 1)[0]
    for shown, letter in ((recorded, "x"), (requested, "y")):
        arguments = shown.split(".charge, ", 1)[1]
        assert len(arguments) == 201 and arguments.endswith("...)") and letter * 150 in shown


def test_arguments_that_differ_only_past_the_cut_add_their_digests(app: Pynenc) -> None:
    message = diverging_flow(app, "x" * 5000 + "1", "x" * 5000 + "2")
    assert message.count("...) (args digest ") == 2, message


CRASHING_FLOW = """
import json, os, signal, sys
from pynenc import NonDeterminismError, Pynenc

app = Pynenc("flow", store=sys.argv[1], sync=False)


@app.task
def charge(amount: int) -> int:
    charge.wf.side_effect("debit", lambda: amount)  # makes the parent's dispatch durable
    if os.environ.get("CRASH"):
        os.kill(os.getpid(), signal.SIGKILL)
    return amount


@app.task
def flow() -> int:
    return flow.wf.execute_task(charge, int(os.environ["AMOUNT"])).result


if os.environ.get("CRASH"):
    flow()
try:
    app.recover()
    print(json.dumps({"message": None}))
except NonDeterminismError as exc:
    print(json.dumps({"message": str(exc)}))
"""


def test_a_child_that_was_never_stored_is_compared_by_digest(tmp_path: Path) -> None:
    store = f"lmdb://{tmp_path / 'store'}"
    script = textwrap.dedent(CRASHING_FLOW)
    env = dict(os.environ, AMOUNT="10", CRASH="1")
    crashed = subprocess.run(
        [sys.executable, "-c", script, store], env=env, capture_output=True, timeout=60
    )
    assert crashed.returncode == -9, crashed.stderr
    env = dict(os.environ, AMOUNT="11")
    recovered = subprocess.run(
        [sys.executable, "-c", script, store],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    message = json.loads(recovered.stdout.splitlines()[-1])["message"]
    # The inline child died before its record was stored: its arguments are only a digest.
    assert message is not None and "the journal recorded execute_task(" in message
    assert ".charge, args digest " in message, message
    assert ".charge, 11) (args digest " in message, message
