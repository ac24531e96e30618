"""Bad input gets a clear error of the project's own types and writes nothing."""

from __future__ import annotations

import functools
import io
import sys
import uuid
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
from pynenc.store import LmdbStore, StoreOptions


def stored_invocations(app: Pynenc) -> int:
    return len(app.list_invocations())


@pytest.mark.parametrize(
    "bad", [object(), lambda: 1, io.BytesIO(b"x")], ids=["object", "lambda", "file"]
)
def test_unencodable_arguments_are_refused_before_any_write(app: Pynenc, bad: Any) -> None:
    ran: list[int] = []

    @app.task(name="test_bad_input.job")
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
    @app.task(name="test_bad_input.child")
    def child(handle: Any) -> None:
        return None

    @app.task(name="test_bad_input.parent")
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
    @app.task(name="test_bad_input.job")
    def job() -> float:
        return job.wf.random()

    for use in (lambda: job.wf.random(), lambda: job.wf.uuid(), lambda: job.workflow):
        with pytest.raises(WorkflowMembershipError, match="inside its body"):
            use()


def test_payload_over_the_limit_is_refused_and_one_under_round_trips(store_url: str) -> None:
    app = Pynenc(store=store_url, sync=False, max_payload_bytes=1 << 20)

    @app.task(name="test_bad_input.echo")
    def echo(blob: bytes) -> bytes:
        return blob

    with pytest.raises(PayloadTooLargeError, match="max_payload_bytes"):
        echo(b"x" * (1 << 20))
    assert stored_invocations(app) == 0
    blob = bytes(range(256)) * ((1 << 20) // 256 - 64)
    assert echo(blob).result == blob


def test_default_limit_is_16_mib(app: Pynenc) -> None:
    @app.task(name="test_bad_input.size")
    def size(blob: bytes) -> int:
        return len(blob)

    with pytest.raises(PayloadTooLargeError):
        size(b"\0" * (16 << 20))
    assert size(b"\0" * ((16 << 20) - 1024)).result == (16 << 20) - 1024


def test_oversized_result_fails_the_task_not_the_store(store_url: str) -> None:
    app = Pynenc(store=store_url, sync=False, max_payload_bytes=1024)

    @app.task(name="test_bad_input.big")
    def big() -> bytes:
        return b"y" * 4096

    with pytest.raises(PayloadTooLargeError):
        big().result


def test_unencodable_data_and_side_effect_values_name_the_key(app: Pynenc) -> None:
    @app.task(name="test_bad_input.job")
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

    @app.task(name="test_bad_input.job")
    def job() -> str:
        job.wf.set_data(longest, 1)
        with pytest.raises(InvalidArgumentError, match="longest accepted is 494"):
            job.wf.set_data(longest + "k", 2)
        return job.workflow.workflow_id

    wf_id = job().result
    assert app.get_workflow_data(wf_id, longest) == 1
    with pytest.raises(InvalidArgumentError, match="longest accepted is 494"):
        app.get_workflow_data(wf_id, longest + "k")


def test_foreign_cbor_tags_in_the_store_are_refused(app: Pynenc) -> None:
    @app.task(name="test_bad_input.job")
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
    with pytest.raises(InvalidArgumentError, match="flush_interval_ms must be a whole number"):
        Pynenc(flush_interval_ms=-1)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_payload_bytes": "10"}, "max_payload_bytes"),
        ({"max_payload_bytes": 1.5}, "max_payload_bytes"),
        ({"flush_interval_ms": 2.5}, "flush_interval_ms"),
        ({"max_recoveries": 1.5}, "max_recoveries"),
        ({"lease_seconds": "x"}, "lease_seconds"),
        ({"lease_seconds": float("nan")}, "lease_seconds"),
        ({"sync": "no"}, "sync"),
        ({"store": 123}, "store"),
    ],
)
def test_settings_of_the_wrong_type_are_refused_when_the_app_is_made(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=named):
        Pynenc(**options)


@pytest.mark.parametrize(
    ("variable", "text"),
    [("PYNENC_SYNC", "maybe"), ("PYNENC_LEASE_SECONDS", "nan"), ("PYNENC_EXECUTION", "bogus")],
)
def test_bad_environment_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, text: str
) -> None:
    monkeypatch.setenv(variable, text)
    with pytest.raises(InvalidArgumentError, match=variable):
        Pynenc()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"retry_for": ("TimeoutError",), "max_retries": 2}, "retry_for"),
        ({"retry_for": (TimeoutError, 3)}, "retry_for"),
        ({"max_retries": "3"}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"retry_backoff": "0.5"}, "retry_backoff"),
        ({"force_new_workflow": "yes"}, "force_new_workflow"),
    ],
)
def test_bad_task_options_are_refused_at_decoration(
    app: Pynenc, options: dict[str, Any], named: str
) -> None:
    def job() -> None:
        return None

    with pytest.raises(InvalidArgumentError, match=named):
        app.task(**options)(job)
    assert stored_invocations(app) == 0


def test_one_exception_class_is_a_retry_for_of_one(app: Pynenc) -> None:
    attempts: list[int] = []

    @app.task(name="test_bad_input.flaky", retry_for=TimeoutError, max_retries=1)
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise TimeoutError("slow")
        return len(attempts)

    assert flaky.options.retry_for == (TimeoutError,)
    assert flaky().result == 2


def test_async_generators_are_refused_at_decoration(app: Pynenc) -> None:
    async def fetch() -> Any:
        yield 1

    with pytest.raises(InvalidArgumentError, match="async generator"):
        app.task(name="t.fetch")(fetch)


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
    # Reading commands never create a store where none is: a mistyped path is reported.
    for command in (["status"], ["recover"], ["show", "00112233-4455-6677-8899-aabbccddeeff"]):
        assert cli.main(["--app", "badworkerapp:app", *command]) == 1
        assert capsys.readouterr().err.startswith("pynenc: no store at ")
    monkeypatch.setenv("PYNENC_EXECUTION", "bogus")  # read when the module makes its app
    monkeypatch.delitem(sys.modules, "badworkerapp")
    assert cli.main(["--app", "badworkerapp:app", "status"]) == 1
    assert capsys.readouterr().err.startswith("pynenc: execution must be 'inline' or 'queued'")
    assert not (tmp_path / "store").exists()


def test_wrong_kinds_of_input_to_the_app_and_wf_are_refused_with_what_to_do(app: Pynenc) -> None:
    def plain() -> int:
        return 1

    @app.task(name="test_bad_input.parent")
    def parent() -> str:
        try:
            parent.wf.execute_task(plain)  # type: ignore[arg-type]
        except InvalidArgumentError as exc:
            return str(exc)
        return "ran"

    assert "decorated with @app.task" in parent().result

    @app.task(name="test_bad_input.effects")
    def effects() -> list[str]:
        refused = []
        for name, fn in ((5, plain), ("charge", 5)):
            try:
                effects.wf.side_effect(name, fn)  # type: ignore[arg-type]
            except InvalidArgumentError as exc:
                refused.append(str(exc))
        return refused

    invocation = effects()
    assert invocation.result == [
        "a side effect's name is a str, got 5",
        "side effect 'charge' needs a function to call, got 5",
    ]
    assert app.journal(invocation.invocation_id) == [], "nothing recorded"
    with pytest.raises(InvalidArgumentError, match="decorates a function"):
        app.task(42)  # type: ignore[call-overload]
    with pytest.raises(InvalidArgumentError, match="status must be one of pending, running"):
        app.list_invocations(status="done")
    workflow_id = app.list_invocations()[0].invocation_id
    with pytest.raises(InvalidArgumentError, match="key is a str"):
        app.get_workflow_data(workflow_id, 5)  # type: ignore[arg-type]
    assert app.get_workflow_data(workflow_id, "k", "absent") == "absent"
    assert stored_invocations(app) == 2


@pytest.mark.parametrize(
    "options",
    [{"flush_interval_ms": -1}, {"map_size": 0}, {"sync": "no"}, {"max_readers": 2.0}],
)
def test_bad_store_options_are_refused_before_anything_is_opened(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgumentError, match=next(iter(options))):
        LmdbStore(tmp_path / "store", StoreOptions(**options))
    assert not (tmp_path / "store").exists()


class Index:
    """An integer type of another library (as numpy's are): usable wherever an int is."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def test_settings_take_any_integer_type_and_an_empty_variable_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYNENC_SYNC", " ")
    app = Pynenc(store=f"lmdb://{tmp_path / 'a'}", max_recoveries=Index(3), lease_seconds=Index(9))  # type: ignore[arg-type]
    assert (app.config.max_recoveries, app.config.lease_seconds, app.config.sync) == (3, 9.0, True)
    options = StoreOptions(map_size=Index(1 << 20), sync=0)  # type: ignore[arg-type]
    assert (options.map_size, options.sync) == (1 << 20, False)
    assert Worker(app, concurrency=Index(2)).concurrency == 2  # type: ignore[arg-type]

    @app.task(name="test_bad_input.job", max_retries=Index(2))  # type: ignore[call-overload]
    def job() -> int:
        return 1

    assert job.options.max_retries == 2 and type(job.options.max_retries) is int


def test_a_function_wrapped_by_a_decorator_can_be_a_task_and_others_cannot(app: Pynenc) -> None:
    def logged(func: Any) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any) -> Any:
            return func(*args)

        return wrapper

    @app.task(name="test_bad_input.square")
    @logged
    def square(x: int) -> int:
        return x * x

    assert square(4).result == 16

    def triple(x: int) -> int:
        return 3 * x

    # Taken too, though its replays diverge once the cache skips the body (semantics.md).
    cached = app.task(name="test_bad_input.triple")(functools.cache(triple))
    assert cached.task_id == "test_bad_input.triple"

    class Counter:
        def bump(self) -> int:
            return 1

    for bad in (Counter().bump, len, square, Counter):
        with pytest.raises(InvalidArgumentError, match="decorates a function"):
            app.task(bad)


@pytest.mark.parametrize("message", ["x" * 20000, "é" * 20000, "😀" * 20000])
def test_a_side_effect_error_of_any_text_is_recorded_within_the_limit(
    store_url: str, message: str
) -> None:
    app = Pynenc("cut", store=store_url, sync=False, max_payload_bytes=4096)

    def fail() -> None:
        raise ValueError(message)

    @app.task(name="test_bad_input.job")
    def job() -> str:
        try:
            job.wf.side_effect("call", fail)
        except ValueError as exc:
            return str(exc)
        return ""

    invocation = job()
    kept = invocation.result
    assert kept and message.startswith(kept)
    assert app.replay(invocation.invocation_id) == kept


def test_switches_take_only_booleans_and_whole_zero_or_one(tmp_path: Path) -> None:
    for value in (0.0, 1.0, "1", 2):
        with pytest.raises(InvalidArgumentError, match="sync must be True or False"):
            StoreOptions(sync=value)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="lease_seconds"):
        Pynenc(store=f"lmdb://{tmp_path}", lease_seconds=10**400)


# --- every setting against its documented range (docs/operations.md) -------------------------

DAY = 86400.0


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"lease_seconds": 1e308}, "lease_seconds"),
        ({"lease_seconds": 7 * DAY + 1}, "lease_seconds"),
        ({"lease_seconds": 0.05}, "lease_seconds"),
        ({"lease_seconds": 10**400}, "lease_seconds"),
        ({"max_payload_bytes": 2**70}, "max_payload_bytes"),
        ({"max_payload_bytes": (1 << 30) + 1}, "max_payload_bytes"),
        ({"max_payload_bytes": 0}, "max_payload_bytes"),
        ({"max_recoveries": 10_001}, "max_recoveries"),
        ({"max_recoveries": -1}, "max_recoveries"),
        ({"flush_interval_ms": 2**70}, "flush_interval_ms"),
        ({"flush_interval_ms": 3_600_001}, "flush_interval_ms"),
    ],
)
def test_app_settings_out_of_range_are_refused_naming_them(
    store_url: str, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"^{named} must be .*got ") as err:
        Pynenc(store=store_url, **options)
    assert type(err.value) is InvalidArgumentError


def test_app_settings_at_the_ends_of_their_ranges_are_taken(store_url: str) -> None:
    low = Pynenc(store=store_url, lease_seconds=0.1, max_payload_bytes=1, max_recoveries=0)
    high = Pynenc(
        store=store_url,
        lease_seconds=7 * DAY,
        max_payload_bytes=1 << 30,
        max_recoveries=10_000,
        flush_interval_ms=3_600_000,
    )
    assert (low.config.lease_seconds, low.config.max_payload_bytes) == (0.1, 1)
    assert (high.config.lease_seconds, high.config.flush_interval_ms) == (7 * DAY, 3_600_000)


@pytest.mark.parametrize(
    ("variable", "text", "named"),
    [
        ("PYNENC_LEASE_SECONDS", "1e308", "lease_seconds"),
        ("PYNENC_LEASE_SECONDS", "inf", "PYNENC_LEASE_SECONDS"),
        ("PYNENC_LEASE_SECONDS", "0", "lease_seconds"),
        ("PYNENC_MAX_PAYLOAD_BYTES", str(2**70), "max_payload_bytes"),
        ("PYNENC_MAX_PAYLOAD_BYTES", "1.5", "PYNENC_MAX_PAYLOAD_BYTES"),
        ("PYNENC_MAX_RECOVERIES", "-1", "max_recoveries"),
        ("PYNENC_FLUSH_INTERVAL_MS", str(2**64), "flush_interval_ms"),
        ("PYNENC_STORE", "/var/lib/app", "PYNENC_STORE"),
        ("PYNENC_STORE", "redis://localhost", "PYNENC_STORE"),
    ],
)
def test_environment_settings_out_of_range_are_refused_naming_setting_and_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, text: str, named: str
) -> None:
    monkeypatch.setenv(variable, text)
    with pytest.raises(InvalidArgumentError) as err:
        Pynenc()
    assert named in str(err.value) and variable in str(err.value), err.value


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_retries": 10_001}, "max_retries"),
        ({"max_retries": 2**70}, "max_retries"),
        ({"retry_backoff": 1e308}, "retry_backoff"),
        ({"retry_backoff": DAY + 1}, "retry_backoff"),
        ({"retry_backoff": -0.5}, "retry_backoff"),
    ],
)
def test_task_options_out_of_range_are_refused_at_decoration(
    app: Pynenc, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"^{named} must be"):
        app.task(**options)(lambda_free_function)


def lambda_free_function() -> None:
    return None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("concurrency", 1025),
        ("concurrency", 2**70),
        ("grace_seconds", 1e308),
        ("grace_seconds", DAY + 1),
        ("idle_poll_seconds", 1e308),
        ("idle_poll_seconds", 61),
    ],
)
def test_worker_options_out_of_range_are_refused_before_it_starts(
    app: Pynenc, option: str, value: Any
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"^{option} must be"):
        Worker(app, **{option: value})


@pytest.mark.parametrize(
    "options",
    [
        {"map_size": 2**70},
        {"map_size": (1 << 44) + 1},
        {"max_readers": 2**40},
        {"max_readers": 65_537},
        {"flush_interval_ms": 2**63},
    ],
)
def test_store_options_out_of_range_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError, match=f"^{next(iter(options))} must be"):
        LmdbStore(tmp_path / "store", StoreOptions(**options))
    assert not (tmp_path / "store").exists()


def test_the_longest_retry_backoff_with_the_most_retries_waits_at_most_a_day(app: Pynenc) -> None:
    from pynenc.runner.execute import retry_delay
    from pynenc.runner.records import new_record

    @app.task(name="test_bad_input.flaky", max_retries=10_000, retry_backoff=DAY)
    def flaky() -> None:
        return None

    record = new_record(flaky, bytes(16), b"", None)
    delays = []
    for attempt in (1, 2, 10_000):
        record.attempt = attempt
        delays.append(retry_delay(flaky, record))
    assert DAY / 2 <= delays[0] <= DAY and delays[1:] == [DAY, DAY]


def test_the_command_line_refuses_a_grace_too_long_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "graceapp.py").write_text(
        f"from pynenc import Pynenc\napp = Pynenc('w', store='lmdb://{tmp_path / 'store'}')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["--app", "graceapp:app", "worker", "--grace", "1e308"]) == 1
    assert capsys.readouterr().err.startswith("pynenc: grace_seconds must be a finite number")


@pytest.mark.parametrize(
    "url", ["/var/lib/app", "store", "lmdb://", "redis://localhost/0", "lmdb://a\0b"]
)
def test_a_bad_store_url_is_refused_when_the_app_is_made(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidArgumentError, match=r"store URL .*\(from Pynenc\(store=\.\.\.\)\)"):
        Pynenc(store=url)
    assert list(tmp_path.iterdir()) == []


# --- workflow data keys: a str of valid UTF-8 --------------------------------------------------

BAD_KEYS = [5, None, b"order", "\ud800", "order:\udc80"]
BAD_KEY_IDS = ["int", "None", "bytes", "lone-surrogate", "surrogate-inside"]


@pytest.mark.parametrize("key", BAD_KEYS, ids=BAD_KEY_IDS)
@pytest.mark.parametrize("operation", ["set_data", "get_data"])
def test_a_bad_data_key_is_refused_naming_it_and_nothing_is_written(
    app: Pynenc, key: Any, operation: str
) -> None:
    @app.task(name="test_bad_input.job")
    def job() -> str:
        op = getattr(job.wf, operation)
        with pytest.raises(InvalidArgumentError) as err:
            op(key, "value") if operation == "set_data" else op(key)
        job.wf.set_data("after", 1)  # the task goes on as if the call had not happened
        return str(err.value)

    invocation = job()
    message = invocation.result
    assert message.startswith("a workflow data key is a str of valid UTF-8, got ")
    assert repr(key) in message, message
    if isinstance(key, str):
        assert "lone surrogate" in message
    assert [(e.operation, e.name) for e in app.journal(invocation.invocation_id)] == [
        ("set_data", "after")
    ]
    workflow = uuid.UUID(invocation.workflow.workflow_id).bytes
    assert [k[16:] for k, _ in app.store.scan("data", workflow)] == [b"after"]
    assert app.replay(invocation.invocation_id) == message


@pytest.mark.parametrize("key", BAD_KEYS, ids=BAD_KEY_IDS)
def test_a_bad_key_is_refused_when_read_from_outside(app: Pynenc, key: Any) -> None:
    @app.task(name="test_bad_input.job")
    def job() -> str:
        job.wf.set_data("k", 1)
        return job.workflow.workflow_id

    workflow_id = job().result
    with pytest.raises(InvalidArgumentError) as err:
        app.get_workflow_data(workflow_id, key)
    assert str(err.value).startswith("a workflow data key is a str of valid UTF-8, got ")
    assert repr(key) in str(err.value)


def test_a_side_effect_name_with_a_lone_surrogate_is_refused_naming_it(app: Pynenc) -> None:
    calls: list[int] = []

    @app.task(name="test_bad_input.job")
    def job() -> str:
        try:
            job.wf.side_effect("charge\ud800", lambda: calls.append(1))
        except InvalidArgumentError as exc:
            return str(exc)
        return "ran"

    invocation = job()
    assert invocation.result == (
        "a side effect's name is a str of valid UTF-8, got 'charge\\ud800' (it holds a lone "
        "surrogate, which UTF-8 cannot encode)"
    )
    assert calls == [] and app.journal(invocation.invocation_id) == []
