"""Bad input gets a clear error of the project's own types and writes nothing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from pynenc import (
    InvalidArgumentError,
    PayloadDecodeError,
    PayloadTooLargeError,
    Pynenc,
    WorkflowMembershipError,
    cli,
)
from pynenc.runner.worker import Worker


def stored_invocations(app: Pynenc) -> int:
    return len(app.list_invocations())


@pytest.mark.parametrize(
    "bad", [object(), lambda: 1, io.BytesIO(b"x")], ids=["object", "lambda", "file"]
)
def test_unencodable_arguments_are_refused_before_any_write(app: Pynenc, bad: Any) -> None:
    ran: list[int] = []

    @app.task
    def job(order: Any, qty: int = 1) -> int:
        ran.append(qty)
        return qty

    with pytest.raises(TypeError) as err:
        job(bad, qty=2)
    assert "'order'" in str(err.value) and type(bad).__name__ in str(err.value)
    assert ran == [] and stored_invocations(app) == 0


def test_an_open_file_in_a_child_call_is_refused_before_any_write(
    app: Pynenc, tmp_path: Path
) -> None:
    @app.task
    def child(handle: Any) -> None:
        return None

    @app.task
    def parent() -> str:
        with open(tmp_path / "f.txt", "w") as handle:
            try:
                parent.wf.execute_task(child, handle)
            except TypeError as exc:
                return str(exc)
        return "not refused"

    message = parent().result
    assert "'handle'" in message and "TextIOWrapper" in message
    assert [inv.task_id.rsplit(".", 1)[1] for inv in app.list_invocations()] == ["parent"]


def test_wf_outside_a_task_is_a_membership_error(app: Pynenc) -> None:
    @app.task
    def job() -> float:
        return job.wf.random()

    for use in (lambda: job.wf.random(), lambda: job.wf.uuid(), lambda: job.workflow):
        with pytest.raises(WorkflowMembershipError, match="inside its body"):
            use()


def test_payload_over_the_limit_is_refused_and_one_under_round_trips(store_url: str) -> None:
    app = Pynenc(store=store_url, sync=False, max_payload_bytes=1 << 20)

    @app.task
    def echo(blob: bytes) -> bytes:
        return blob

    with pytest.raises(PayloadTooLargeError, match="max_payload_bytes"):
        echo(b"x" * (1 << 20))
    assert stored_invocations(app) == 0
    blob = bytes(range(256)) * ((1 << 20) // 256 - 64)
    assert echo(blob).result == blob


def test_default_limit_is_16_mib(app: Pynenc) -> None:
    @app.task
    def size(blob: bytes) -> int:
        return len(blob)

    with pytest.raises(PayloadTooLargeError):
        size(b"\0" * (16 << 20))
    assert size(b"\0" * ((16 << 20) - 1024)).result == (16 << 20) - 1024


def test_oversized_result_fails_the_task_not_the_store(store_url: str) -> None:
    app = Pynenc(store=store_url, sync=False, max_payload_bytes=1024)

    @app.task
    def big() -> bytes:
        return b"y" * 4096

    with pytest.raises(PayloadTooLargeError):
        big().result


def test_unencodable_data_and_side_effect_values_name_the_key(app: Pynenc) -> None:
    @app.task
    def job() -> list[str]:
        errors = []
        for action in (
            lambda: job.wf.set_data("conn", object()),
            lambda: job.wf.side_effect("fetch", lambda: object()),
        ):
            try:
                action()
            except TypeError as exc:
                errors.append(str(exc))
        return errors

    errors = job().result
    assert "'conn'" in errors[0] and "'fetch'" in errors[1]


def test_a_data_key_too_long_for_the_store_is_refused_and_not_written(app: Pynenc) -> None:
    longest = "k" * 494  # the store's 510-byte keys, less the 16-byte workflow id

    @app.task
    def job() -> str:
        job.wf.set_data(longest, 1)
        with pytest.raises(InvalidArgumentError, match="longest accepted is 494"):
            job.wf.set_data(longest + "k", 2)
        return job.workflow.workflow_id

    wf_id = job().result
    assert app.get_workflow_data(wf_id, longest) == 1
    assert app.get_workflow_data(wf_id, longest + "k") is None


def test_foreign_cbor_tags_in_the_store_are_refused(app: Pynenc) -> None:
    @app.task
    def job() -> str:
        job.wf.set_data("k", "v")
        return job.workflow.workflow_id

    wf_id = job().result
    import uuid

    # A value written by someone else with a tag outside the codec's set (28: shared reference).
    app.store.put("data", uuid.UUID(wf_id).bytes + b"k", bytes([0xD8, 0x1C, 0x01]), None)
    app.store.flush()
    with pytest.raises(PayloadDecodeError):
        app.get_workflow_data(wf_id, "k")


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="inline"):
        Pynenc(execution="threads")
    with pytest.raises(InvalidArgumentError, match="lmdb://"):
        Pynenc(store="redis-ish").store
    with pytest.raises(TypeError, match="retries"):
        Pynenc().task(retries=3)  # type: ignore[call-overload]
    with pytest.raises(InvalidArgumentError, match="max_retries"):
        Pynenc().task(max_retries=-1)
    with pytest.raises(InvalidArgumentError, match="flush_interval_ms must be >= 0"):
        Pynenc(flush_interval_ms=-1)


def test_async_functions_are_refused_at_decoration(app: Pynenc) -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(InvalidArgumentError, match=r"asyncio\.run"):
        app.task(fetch)


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("concurrency", 0, "concurrency"),
        ("concurrency", 2.5, "concurrency"),
        ("grace_seconds", -1.0, "grace_seconds"),
        ("grace_seconds", float("nan"), "grace_seconds"),
        ("idle_poll_seconds", 0, "idle_poll_seconds"),
    ],
)
def test_bad_worker_options_are_refused_before_it_starts(
    app: Pynenc, option: str, value: Any, named: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=named):
        Worker(app, **{option: value})


def test_the_command_line_reports_bad_options_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "badworkerapp.py").write_text(
        f"from pynenc import Pynenc\napp = Pynenc('w', store='lmdb://{tmp_path / 'store'}')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = cli.main(["--app", "badworkerapp:app", "worker", "--concurrency", "0"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("pynenc: concurrency must be"), err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--log-level", "loud", "--app", "badworkerapp:app", "status"])
    assert exit_.value.code == 2 and "invalid choice: 'LOUD'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="module 'badworkerapp' has no attribute 'ap'"):
        cli.main(["--app", "badworkerapp:ap", "status"])
    assert not (tmp_path / "store").exists()
