"""One function, one task id; stored data never names code to run.

Most checks run real programs: a script run as `python flow.py`, a separate program that
imports it, worker processes started by the command line, and programs reading records that
name modules nobody registered.
"""

from __future__ import annotations

import importlib
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

from pynenc import InvalidArgumentError, Pynenc

ZEN = "Beautiful is better"


def write(directory: Path, name: str, code: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(code))
    return path


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC_")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**clean, "PYNENC_SYNC": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line[:1] in "[{"]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1])


# -- one function, one task id -------------------------------------------------------------


def test_lambdas_duplicates_and_redefinitions_are_refused_naming_file_and_line(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        "clash.py",
        """
        import json
        from pynenc import Pynenc, InvalidArgumentError

        app = Pynenc("clash", store="lmdb://./store")
        refused = {}

        def attempt(label, register):
            try:
                register()
            except InvalidArgumentError as exc:
                refused[label] = str(exc)

        attempt("lambda", lambda: app.task(lambda: 1))

        def make(n):
            def job():
                return n
            return job

        attempt("nested", lambda: app.task(make(1)))

        @app.task
        def f():
            return "first"

        def other():
            return "other"

        attempt("taken", lambda: app.task(name="clash.f")(other))

        def f():  # the name redefined: its own line, so another definition
            return "second"

        attempt("redefined", lambda: app.task(f))

        # Named explicitly, lambdas and nested functions are tasks of their own.
        one = app.task(name="one")(lambda: 1)
        two = app.task(name="two")(lambda: 2)
        made = [app.task(name=f"made-{n}")(make(n)) for n in (1, 2)]
        # The same function object registered again is the same task.
        same = app.task(other) is app.task(other)
        if __name__ == "__main__":
            print(json.dumps({
                "refused": refused,
                "values": [one().result, two().result] + [t().result for t in made],
                "same": same,
            }))
        """,
    )
    out = last_json(run(tmp_path, "clash.py"))
    refused = out["refused"]
    lines = (tmp_path / "clash.py").read_text().splitlines()

    def at(snippet: str, nth: int = 0) -> str:
        numbers = [n for n, line in enumerate(lines, 1) if snippet in line]
        return f"{tmp_path / 'clash.py'}:{numbers[nth]}"

    assert set(refused) == {"lambda", "nested", "taken", "redefined"}
    assert f"a lambda ({at('lambda: app.task(lambda')})" in refused["lambda"]
    assert "name=" in refused["lambda"]
    assert f"make.<locals>.job ({at('def job')})" in refused["nested"]
    # Both definitions are named, by file and line.
    assert at("@app.task") in refused["taken"] and at("def other") in refused["taken"]
    assert "'clash.f'" in refused["taken"]
    assert at("@app.task") in refused["redefined"]
    assert at("def f():", 1) in refused["redefined"]
    assert out["values"] == [1, 2, 1, 2]
    assert out["same"] is True


def test_a_reloaded_module_keeps_its_task_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    monkeypatch.setenv("PYNENC_STORE", store_url)
    monkeypatch.syspath_prepend(str(tmp_path))
    write(
        tmp_path,
        "reloaded.py",
        """
        from pynenc import Pynenc
        try:
            app  # kept by importlib.reload, which runs the module again in its namespace
        except NameError:
            app = Pynenc("reloaded")

        @app.task
        def job():
            return 1
        """,
    )
    module = importlib.import_module("reloaded")
    try:
        app, first = module.app, module.job
        importlib.reload(module)  # the same definition again: it takes the id over
        assert module.app is app and module.job is not first
        assert app.get_task("reloaded.job") is module.job
        assert first().result == 1
    finally:
        sys.modules.pop("reloaded", None)


def test_a_bad_task_name_is_refused(app: Pynenc) -> None:
    for bad in ("", " x", "a\nb", 3, "x" * 201):
        with pytest.raises(InvalidArgumentError, match="task name"):
            app.task(name=bad)(len)  # type: ignore[arg-type]


def test_a_script_task_is_found_by_a_program_that_imports_the_script(tmp_path: Path) -> None:
    write(
        tmp_path,
        "flow.py",
        """
        import json, os, signal, sys
        from pynenc import Pynenc

        app = Pynenc("flow", store="lmdb://./store")

        @app.task
        def charge(order):
            return {"order": order, "id": charge.wf.uuid()}

        @app.task
        def ship(order):
            if not os.path.exists("killed"):
                open("killed", "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return f"shipped {order}"

        @app.task
        def main_flow(order):
            paid = main_flow.wf.execute_task(charge, order).result
            return {"paid": paid, "shipped": main_flow.wf.execute_task(ship, order).result}

        if __name__ == "__main__" and sys.argv[1:2] == ["replay"]:
            print(json.dumps(app.replay(sys.argv[2])))
        elif __name__ == "__main__":
            print(json.dumps({"id": main_flow.task_id}), flush=True)
            main_flow("ORD-1")
        """,
    )
    crashed = run(tmp_path, "flow.py")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert json.loads(crashed.stdout) == {"id": "flow.main_flow"}
    recovered = last_json(
        run(
            tmp_path,
            "-c",
            "import json, flow\n"
            "print(json.dumps([[i.invocation_id, i.task_id, i.result] for i in "
            "flow.app.recover()]))",
        )
    )
    [[invocation_id, task_id, result]] = recovered
    assert task_id == "flow.main_flow"
    assert result["shipped"] == "shipped ORD-1" and result["paid"]["order"] == "ORD-1"
    replayed = last_json(
        run(
            tmp_path,
            "-c",
            f"import json, flow\nprint(json.dumps(flow.app.replay({invocation_id!r})))",
        )
    )
    assert replayed == result
    # And by the script itself, run again as __main__.
    assert last_json(run(tmp_path, "flow.py", "replay", invocation_id)) == result
    # And by a program that runs the file with runpy.
    by_path = (
        f"import json, runpy\nflow = runpy.run_path('flow.py')\n"
        f"print(json.dumps(flow['app'].replay({invocation_id!r})))"
    )
    assert last_json(run(tmp_path, "-c", by_path)) == result


def test_an_id_stored_as_main_by_earlier_versions_is_still_found(tmp_path: Path) -> None:
    write(
        tmp_path,
        "legacy.py",
        """
        import json, sys
        from pynenc import Pynenc
        from pynenc.runner import records

        app = Pynenc("legacy", store="lmdb://./store")

        @app.task
        def job():
            return job.wf.random()

        if sys.argv[1] == "start":
            inv = job()
            inv._record.task_id = "__main__.job"  # as stored before ids were derived
            records.store_record(app, inv._record)
            app.store.flush()
            print(json.dumps([inv.invocation_id, inv.result]))
        else:
            print(json.dumps([app.replay(sys.argv[2])]))
        """,
    )
    invocation_id, value = last_json(run(tmp_path, "legacy.py", "start"))
    assert last_json(run(tmp_path, "legacy.py", "replay", invocation_id)) == [value]


def test_a_task_of_a_program_without_a_file_is_refused_at_its_first_queued_call(
    tmp_path: Path,
) -> None:
    proc = run(
        tmp_path,
        "-c",
        textwrap.dedent(
            """
            from pynenc import Pynenc, InvalidArgumentError
            app = Pynenc("c", store="lmdb://./store", execution="queued")

            @app.task
            def job():
                return 1

            try:
                job()
            except InvalidArgumentError as exc:
                print(exc)
            inline = Pynenc("c2", store="lmdb://./store2")
            print(inline.task(job.func)().result)
            """
        ),
    )
    assert proc.returncode == 0, proc.stderr
    refused, inline = proc.stdout.strip().splitlines()
    assert "task '__main__.job' (<string>:5)" in refused
    assert "cannot be imported" in refused and "module file" in refused
    assert inline == "1"  # inline, the program itself runs it


# -- workers and the registry --------------------------------------------------------------

APP_MODULE = """
from pynenc import Pynenc
app = Pynenc("split", execution="queued", lease_seconds=5)
"""

SCRIPT = """
import json
from myapp import app

@app.task
def step(n):
    return n * 2

if __name__ == "__main__":
    print(json.dumps({"id": step(21).invocation_id, "task": step.task_id}))
"""


def start_worker(cwd: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC_")}
    with open(cwd / "worker.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pynenc", "--app", "myapp:app", *extra, "worker"],
            cwd=cwd,
            env={**clean, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def split_app(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    write(tmp_path, "myapp.py", APP_MODULE)
    write(tmp_path, "script.py", SCRIPT)
    env = {"PYNENC_STORE": f"lmdb://{tmp_path / 'store'}", "PYNENC_SYNC": "0"}
    return env, last_json(run(tmp_path, "script.py", env=env))


def test_a_worker_that_does_not_know_a_task_logs_one_line_per_claim_then_parks_it(
    tmp_path: Path,
) -> None:
    env, queued = split_app(tmp_path)
    assert queued["task"] == "script.step"  # the script's importable name, not __main__
    worker = start_worker(tmp_path, {**env, "PYNENC_MAX_RECOVERIES": "2"})
    try:
        time.sleep(10)
    finally:
        stop(worker)
    log = (tmp_path / "worker.log").read_text()
    about = [line for line in log.splitlines() if queued["id"] in line]
    assert "Traceback" not in log and "engine failure" not in log
    # Claimed at 0 s, 1 s and 3 s (one line each), then parked: nothing more in 10 s.
    assert len(about) == 3, log
    assert all("'script.step' is not registered" in line for line in about), log
    assert all("module 'script'" in line and "--include" in line for line in about), log
    assert "tried again in 1 s" in about[0] and "tried again in 2 s" in about[1]
    assert "parked after 3 claims" in about[2]
    assert len(log.splitlines()) < 10, log
    state = last_json(
        run(
            tmp_path,
            "-c",
            "import json, myapp\n"
            "from pynenc import InvocationParkedError\n"
            f"inv = myapp.app.get_invocation({queued['id']!r})\n"
            "try:\n"
            "    inv.result\n"
            "except InvocationParkedError as exc:\n"
            "    print(json.dumps({'status': inv.status.value, 'error': str(exc),\n"
            "                      'queued': len(myapp.app.store.queued())}))\n",
            env=env,
        )
    )
    assert state["status"] == "failed" and state["queued"] == 0
    assert "no process that claimed it knew task 'script.step'" in state["error"]


def test_a_worker_told_to_include_the_script_runs_its_task(tmp_path: Path) -> None:
    env, queued = split_app(tmp_path)
    worker = start_worker(tmp_path, env, "--include", "script")
    try:
        result = last_json(
            run(
                tmp_path,
                "-c",
                "import json, myapp\n"
                f"inv = myapp.app.get_invocation({queued['id']!r})\n"
                "print(json.dumps([inv.wait(timeout=30).result]))",
                env=env,
            )
        )
    finally:
        stop(worker)
    assert result == [42]


def test_an_unimportable_include_stops_the_command_at_once(tmp_path: Path) -> None:
    env, _ = split_app(tmp_path)
    proc = run(
        tmp_path, "-m", "pynenc", "--app", "myapp:app", "--include", "nosuch", "status", env=env
    )
    assert proc.returncode == 1
    assert "cannot import module 'nosuch'" in proc.stderr
    proc = run(
        tmp_path, "-m", "pynenc", "--app", "myapp:app", "--include", "no such", "status", env=env
    )
    assert proc.returncode == 1 and "'no such'" in proc.stderr


def test_include_modules_are_imported_at_the_first_unknown_id(tmp_path: Path) -> None:
    write(
        tmp_path,
        "lazyapp.py",
        """
        from pynenc import Pynenc
        app = Pynenc("lazy", store="lmdb://./store", include=["lazyjobs"])
        """,
    )
    write(
        tmp_path,
        "lazyjobs.py",
        """
        from lazyapp import app

        @app.task
        def work(x):
            return {"x": x, "r": work.wf.random()}
        """,
    )
    first = last_json(
        run(
            tmp_path,
            "-c",
            "import json, lazyjobs\ninv = lazyjobs.work(3)\n"
            "print(json.dumps([inv.invocation_id, inv.result]))",
        )
    )
    invocation_id, result = first
    later = last_json(
        run(
            tmp_path,
            "-c",
            "import json, sys, lazyapp\n"
            "before = 'lazyjobs' in sys.modules\n"
            f"value = lazyapp.app.replay({invocation_id!r})\n"
            "print(json.dumps([before, 'lazyjobs' in sys.modules, value]))",
        )
    )
    assert later == [False, True, result]


def test_bad_include_values_are_refused_when_the_app_is_made() -> None:
    for bad in ("jobs", ["jobs", 3], ["no such"], 5):
        with pytest.raises(InvalidArgumentError, match="include="):
            Pynenc(include=bad)  # type: ignore[arg-type]


def test_an_include_that_fails_to_import_is_named(store_url: str) -> None:
    app = Pynenc(store=store_url, include=["pynenc_no_such_module"])
    with pytest.raises(InvalidArgumentError, match="cannot import module 'pynenc_no_such_module'"):
        app.get_task("x.y")


# -- stored data names no code -------------------------------------------------------------

FORGE = """
import json, os, signal, sys
from pynenc import Pynenc
from pynenc.invocation import ErrorInfo, InvocationRecord, InvocationStatus
from pynenc.runner import records

app = Pynenc("forged", store="lmdb://./store")

@app.task
def boom():
    boom.wf.random()
    os.kill(os.getpid(), signal.SIGKILL)

@app.task
def fine():
    return 1

@app.task
def fails():
    raise ValueError("v")

def save(record):
    records.store_record(app, record)
    app.store.flush()

if sys.argv[1] == "finished":
    ids = {}
    done = fine()
    done._record.task_id = "this.fine"
    save(done._record)
    ids["named_this"] = done.invocation_id
    for label, exc in [("exit", SystemExit(42)), ("interrupt", KeyboardInterrupt()),
                       ("zen", None), ("unloaded", None), ("value", ValueError("v", 2))]:
        inv = fails()
        record = inv._record
        if exc is not None:
            record.error = ErrorInfo.capture(exc)
        elif label == "zen":
            record.error = ErrorInfo("Zen", "this", "m", None, "tb")
        else:  # an Exception class of a module the reader has not imported
            record.error = ErrorInfo("Error", "wave", "bad wave", b"\\x81\\x63bad", "tb")
        save(record)
        ids[label] = inv.invocation_id
    print(json.dumps(ids))
else:
    boom()
"""

READ = """
import json, sys
from pynenc import Pynenc, TaskError
from pynenc.invocation import ErrorInfo

app = Pynenc("forged", store="lmdb://./store")
ids = json.loads(sys.argv[1])
out = {}

def attempt(label, action):
    try:
        out[label] = ["ok", repr(action())]
    except BaseException as exc:
        fields = [getattr(exc, a, None) for a in ("type_name", "message", "traceback_text")]
        out[label] = [type(exc).__name__, str(exc), fields]

attempt("recover", app.recover)
attempt("replay", lambda: app.replay(ids["named_this"]))
attempt("task", lambda: app.get_invocation(ids["named_this"]).task)
for label in ("exit", "interrupt", "zen", "unloaded", "value"):
    attempt(label, lambda: app.get_invocation(ids[label]).result)
attempt("side_effect_error", lambda: ErrorInfo("Zen", "this", "m", None, "tb").to_exception())
out["imported"] = [m for m in ("this", "wave") if m in sys.modules]
print(json.dumps(out))
"""


def test_records_naming_modules_import_nothing_and_exits_come_back_as_task_errors(
    tmp_path: Path,
) -> None:
    write(tmp_path, "forge.py", FORGE)
    write(tmp_path, "read.py", READ)
    crashed = run(tmp_path, "forge.py", "crash")
    assert crashed.returncode == -signal.SIGKILL
    ids = last_json(run(tmp_path, "forge.py", "finished"))
    # The crashed invocation's record now names a task of the module `this`.
    rename = run(
        tmp_path,
        "-c",
        textwrap.dedent(
            """
            from pynenc import Pynenc
            from pynenc.runner import records
            app = Pynenc("forged", store="lmdb://./store")
            [inv] = app.list_invocations(task_id="boom")
            inv._record.task_id = "this.boom"
            records.store_record(app, inv._record)
            app.store.flush()
            """
        ),
    )
    assert rename.returncode == 0, rename.stderr
    proc = run(tmp_path, "read.py", json.dumps(ids))
    assert ZEN not in proc.stdout + proc.stderr
    out = last_json(proc)
    assert out.pop("imported") == []
    for label in ("recover", "replay", "task"):
        kind, message, _ = out[label]
        assert kind == "InvalidArgumentError", out[label]
        assert "'this." in message and "include" in message and "never imported" in message
    for label, name, message in [
        ("exit", "builtins.SystemExit", "42"),
        ("interrupt", "builtins.KeyboardInterrupt", ""),
        ("zen", "this.Zen", "m"),
        ("unloaded", "wave.Error", "bad wave"),
    ]:
        kind, _, (type_name, text, traceback_text) = out[label]
        assert (kind, type_name, text) == ("TaskError", name, message), out[label]
        assert traceback_text
    assert "SystemExit: 42" in out["exit"][2][2]  # the original traceback
    assert out["value"][:2] == ["ValueError", "('v', 2)"]  # imported and an Exception: itself
    assert out["side_effect_error"][0] == "ok" and "TaskError" in out["side_effect_error"][1]
