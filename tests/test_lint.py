"""`pynenc lint`: what it flags in task code, what it leaves alone, and how it exits.

The fixture package `tests/lint_fixtures/shop` marks every line the linter must flag with
`# expect: CODE`; the tests compare the command's `--json` output with those marks exactly.
Every run is the real command in a subprocess, on a copy of the fixture under tmp_path.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pynenc.errors import InvalidArgumentError
from pynenc.lint import lint_paths

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "lint_fixtures" / "shop"
EXPECT = re.compile(r"# expect: (PNR\d{3}(?:, PNR\d{3})*)")

Key = tuple[str, int, str]


def lint(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`pynenc lint ARGS` in a fresh interpreter, from `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "pynenc", "lint", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def lint_json(*args: str, cwd: Path, status: int) -> dict[str, Any]:
    proc = lint("--json", *args, cwd=cwd)
    assert proc.returncode == status, proc.stdout + proc.stderr
    document: dict[str, Any] = json.loads(proc.stdout)
    return document


def found(document: dict[str, Any]) -> Counter[Key]:
    return Counter((Path(f["path"]).name, f["line"], f["code"]) for f in document["findings"])


def marked(package: Path) -> Counter[Key]:
    """The `# expect: CODE[, CODE]` marks of the fixture files."""
    marks: Counter[Key] = Counter()
    for path in sorted(package.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = EXPECT.search(line)
            if match:
                for code in match.group(1).split(", "):
                    marks[(path.name, number, code)] += 1
    return marks


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the only line of `path` containing `text`."""
    numbers = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(numbers) == 1, (text, numbers)
    return numbers[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the fixture package in a project directory of its own."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root / "shop")
    return root


def test_flags_exactly_the_marked_calls(project: Path) -> None:
    document = lint_json("shop", cwd=project, status=1)
    assert document["errors"] == []
    assert document["files"] == 6
    expected = marked(project / "shop")
    assert sum(expected.values()) == 35
    assert found(document) == expected
    # every rule of the set is exercised by the fixture
    assert {code for _, _, code in expected} == {f"PNR{n:03d}" for n in range(1, 12)}


def test_a_call_two_helpers_deep_in_other_modules_names_the_chain(project: Path) -> None:
    document = lint_json("shop", cwd=project, status=1)
    line = line_of(project / "shop" / "clock.py", "return _time.time()")
    (finding,) = [f for f in document["findings"] if f["path"].endswith("clock.py")]
    assert finding["line"] == line
    assert finding["column"] == 12
    assert finding["code"] == "PNR001"
    assert finding["call"] == "time.time"
    assert finding["chain"] == [
        "shop.tasks.checkout",
        "shop.helpers.stamp",
        "shop.clock.read_clock",
    ]
    assert "wf.utc_now()" in finding["fix"]

    text = lint("shop", cwd=project)
    assert text.returncode == 1
    assert f"shop/clock.py:{line}:12: PNR001 `_time.time()` (time.time) reads the wall clock" in (
        text.stdout
    )
    assert "via shop.tasks.checkout -> shop.helpers.stamp -> shop.clock.read_clock" in text.stdout
    assert text.stdout.rstrip().endswith("35 finding(s) in 4 file(s) (6 file(s) checked)")


def test_a_cycle_of_helpers_is_walked_once(project: Path) -> None:
    document = lint_json("shop", cwd=project, status=1)
    (finding,) = [f for f in document["findings"] if f["code"] == "PNR004"]
    assert finding["chain"] == ["shop.tasks.randomness", "shop.helpers.ping", "shop.helpers.pong"]


def test_side_effect_functions_are_not_flagged_and_would_be_otherwise(project: Path) -> None:
    tasks = project / "shop" / "tasks.py"
    recorded_lines = {
        line_of(tasks, 'side_effect("clock", lambda: now())'),
        line_of(tasks, 'side_effect("token", fn=lambda: secrets.token_hex(8))'),
        line_of(tasks, "return Path(path).read_text()"),
    }
    settings_line = line_of(project / "shop" / "helpers.py", 'with open("settings.toml")')
    flagged = found(lint_json("shop", cwd=project, status=1))
    assert not any(line in recorded_lines for name, line, _ in flagged if name == "tasks.py")
    assert ("helpers.py", settings_line, "PNR008") not in flagged

    # The same calls handed to anything but a side effect are flagged.
    source = tasks.read_text()
    tasks.write_text(source.replace(".side_effect(", ".other(").replace("_deterministic_op", "op"))
    flagged = found(lint_json("shop", cwd=project, status=1))
    assert {(n, line) for n, line, _ in flagged if n == "tasks.py"} >= {
        ("tasks.py", line) for line in recorded_lines
    }
    assert ("helpers.py", settings_line, "PNR008") in flagged


def test_ignore_comments_suppress_their_line_and_the_calls_below_it(project: Path) -> None:
    tasks = project / "shop" / "tasks.py"
    comments = {
        line_of(tasks, "now(),  # pynenc: ignore[PNR001]"): "PNR001",
        line_of(tasks, "uuid.uuid4(),  # pynenc: ignore"): "PNR006",
        line_of(tasks, 'os.getenv("X"),  # pynenc: ignore[PNR007, PNR001]'): "PNR007",
        line_of(tasks, "dt.datetime.now("): "PNR001",  # the comment is on the call's last line
    }
    tick = line_of(project / "shop" / "helpers.py", "return time.monotonic_ns()")
    flagged = found(lint_json("shop", cwd=project, status=1))
    assert not any(("tasks.py", line, code) in flagged for line, code in comments.items())
    assert ("helpers.py", tick, "PNR002") not in flagged
    # an ignore naming another code suppresses nothing
    wrong_code = line_of(tasks, "now(),  # pynenc: ignore[PNR006]")
    assert flagged[("tasks.py", wrong_code, "PNR001")] == 1

    tasks.write_text(tasks.read_text().replace("# pynenc: ignore", "# no longer ignored"))
    document = lint_json("shop", cwd=project, status=1)
    flagged = found(document)
    assert all(flagged[("tasks.py", line, code)] == 1 for line, code in comments.items())
    (tick_finding,) = [
        f for f in document["findings"] if f["line"] == tick and f["path"].endswith("helpers.py")
    ]
    assert tick_finding["chain"] == ["shop.tasks.suppressed", "shop.helpers.tick"]


def test_pyproject_ignore_and_allow_lists(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "shop"\n\n'
        "[tool.pynenc.lint]\n"
        'ignore = ["pnr007"]\n'
        'allow = ["shop.helpers.safe_clock", "socket", "shop.clock"]\n'
    )
    shop = project / "shop"
    allowed = {
        ("helpers.py", line_of(shop / "helpers.py", "return time.perf_counter()"), "PNR002"),
        ("fulfilment.py", line_of(shop / "fulfilment.py", "socket.create_connection("), "PNR009"),
        ("clock.py", line_of(shop / "clock.py", "return _time.time()"), "PNR001"),
    }
    expected = Counter(
        {k: n for k, n in marked(shop).items() if k[2] != "PNR007" and k not in allowed}
    )
    # The settings come from the nearest pyproject.toml above the linted path.
    document = lint_json(str(shop / "fulfilment.py"), str(shop), cwd=shop, status=1)
    assert document["config"] == str((project / "pyproject.toml").resolve())
    assert found(document) == expected


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('ignore = ["PNR999"]', "PNR999"),
        ('ignores = ["PNR001"]', "ignores"),
        ('allow = "shop.helpers"', "allow"),
    ],
)
def test_invalid_settings_are_a_usage_error(project: Path, table: str, named: str) -> None:
    (project / "pyproject.toml").write_text(f"[tool.pynenc.lint]\n{table}\n")
    proc = lint("shop", cwd=project)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert named in proc.stderr and "[tool.pynenc.lint]" in proc.stderr


def test_exit_status_clean_flagged_and_usage(tmp_path: Path) -> None:
    (tmp_path / "clean.py").write_text(
        "from app import app\n\n@app.task\ndef step() -> float:\n    return step.wf.random()\n"
    )
    (tmp_path / "flagged.py").write_text(
        "import time\nfrom app import app\n\n@app.task\ndef step() -> float:\n"
        "    return time.time()\n"
    )
    clean = lint("clean.py", cwd=tmp_path)
    assert (clean.returncode, clean.stdout) == (0, "no findings (1 file(s) checked)\n")
    assert lint("flagged.py", cwd=tmp_path).returncode == 1
    missing = lint("clean.py", "no_such_dir", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no such file or directory: no_such_dir" in missing.stderr
    assert lint(cwd=tmp_path).returncode == 2  # no path at all


def test_a_file_that_does_not_parse_is_reported_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def oops(:\n    pass\n")
    (tmp_path / "flagged.py").write_text(
        "import uuid\nfrom app import app\n\n@app.task\ndef step() -> str:\n"
        "    return str(uuid.uuid4())\n"
    )
    document = lint_json(".", cwd=tmp_path, status=2)
    assert [(e["path"], e["line"], e["column"]) for e in document["errors"]] == [
        ("broken.py", 1, 10)
    ]
    assert document["errors"][0]["message"].startswith("SyntaxError:")
    # the other files are still checked
    assert found(document) == Counter({("flagged.py", 6, "PNR006"): 1})
    text = lint(".", cwd=tmp_path)
    assert text.returncode == 2
    assert "broken.py:1:10: PNR000 SyntaxError:" in text.stdout


def test_user_code_is_never_imported_and_no_app_or_store_is_needed(tmp_path: Path) -> None:
    (tmp_path / "loud.py").write_text(
        "import pathlib, sys, time\n"
        "pathlib.Path('imported.txt').write_text('imported')\n"
        "sys.exit(7)\n\n"
        "@app.task(name='loud.step')\n"
        "def step() -> float:\n"
        "    return time.monotonic()\n"
    )
    document = lint_json("loud.py", cwd=tmp_path, status=1)
    assert found(document) == Counter({("loud.py", 7, "PNR002"): 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loud.py"]  # no store, no marker


def test_names_are_resolved_through_aliases_scopes_and_methods(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(
        "import random as rnd\n"
        "import time\n"
        "from datetime import datetime as DT\n"
        "clock = time.monotonic\n\n"
        "class Meter:\n"
        "    def read(self) -> float:\n"
        "        return self.now()\n"
        "    def now(self) -> float:\n"
        "        return clock()\n\n"
        "def test_inside_a_function() -> None:\n"
        "    @app.task(name='flows.inner')\n"
        "    def inner() -> object:\n"
        "        import uuid as u\n"
        "        return [u.uuid4(), Meter.read(Meter()), DT.today()]\n\n"
        "@app.task\n"
        "def shadowed(rnd: object, time: object) -> object:\n"
        "    return [rnd.random(), time.time(), sorted({1, 2})]\n"
    )
    document = lint_json("flows.py", cwd=tmp_path, status=1)
    assert found(document) == Counter(
        {
            ("flows.py", 10, "PNR002"): 1,
            ("flows.py", 16, "PNR006"): 1,
            ("flows.py", 16, "PNR001"): 1,
        }
    )
    (meter,) = [f for f in document["findings"] if f["code"] == "PNR002"]
    assert meter["chain"] == [
        "flows.test_inside_a_function.<locals>.inner",
        "flows.Meter.read",
        "flows.Meter.now",
    ]
    assert meter["call"] == "time.monotonic"


def test_set_iteration_is_flagged_only_when_it_feeds_a_recorded_operation(project: Path) -> None:
    document = lint_json("shop", cwd=project, status=1)
    fulfilment = project / "shop" / "fulfilment.py"
    set_loops = sorted(f["line"] for f in document["findings"] if f["code"] == "PNR011")
    assert set_loops == sorted(
        line_of(fulfilment, text)
        for text in (
            "for sku in set(skus):",
            'for sku in {"a", "b"}:',
            "for sku in list(pending):",
            "for sku in frozenset(skus):",
            "for s in set(skus)]  # expect",
        )
    )
    # The frozenset loop counts because the helper it calls records: once it no longer
    # does, the loop is not flagged.
    helpers = project / "shop" / "helpers.py"
    helpers.write_text(helpers.read_text().replace("task.wf.set_data(sku, True)", "print(sku)"))
    document = lint_json("shop", cwd=project, status=1)
    after = sorted(f["line"] for f in document["findings"] if f["code"] == "PNR011")
    assert after == [n for n in set_loops if n != line_of(fulfilment, "in frozenset(skus):")]


def test_the_examples_report_nothing_and_are_really_read(tmp_path: Path) -> None:
    # Every call in the examples that is not deterministic is either recorded (the custom
    # operation's random.randint runs inside `_deterministic_operation`) or outside any task
    # (order_processing.py's main() draws uuid4 and crash_run() sets os.environ).
    document = lint_json("examples", cwd=ROOT, status=0)
    assert document["findings"] == []
    assert document["errors"] == []
    assert document["files"] == len(list((ROOT / "examples").glob("*.py")))

    copy = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", copy)
    example = copy / "deterministic_operations.py"
    example.write_text(example.read_text().replace("._deterministic_operation(", ".other("))
    document = lint_json(".", cwd=copy, status=1)
    assert found(document) == Counter(
        {("deterministic_operations.py", line_of(example, "random.randint(1000"), "PNR004"): 1}
    )


def test_the_python_api_refuses_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="no such file or directory"):
        lint_paths([tmp_path / "absent"])
    with pytest.raises(InvalidArgumentError, match="no path to lint"):
        lint_paths([])


def test_the_pre_commit_hook_runs_the_command() -> None:
    hooks = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "- id: pynenc-lint" in hooks
    assert "entry: pynenc lint" in hooks
    assert "pass_filenames: false" in hooks


DOC = (ROOT / "docs" / "determinism.md").read_text()


def rule_sections() -> dict[str, list[str]]:
    """`### PNRnnn name` section of docs/determinism.md -> its python blocks."""
    parts = re.split(r"^### (PNR\d{3}) .*$", DOC, flags=re.M)
    return {
        code: re.findall(r"```python\n(.*?)```", body, re.S)
        for code, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def test_every_rule_is_documented_with_an_example_and_its_fix(tmp_path: Path) -> None:
    from pynenc.lint import BLOCKING_CALL, RULES, SET_ITERATION

    sections = rule_sections()
    assert sorted(sections) == sorted(r.code for r in (*RULES, SET_ITERATION, BLOCKING_CALL))
    for code, blocks in sections.items():
        assert len(blocks) == 2, code
        example, fix = blocks
        for name, source in (("example", example), ("fix", fix)):
            (tmp_path / f"{code}_{name}.py").write_text(source)
        flagged = lint_json(f"{code}_example.py", cwd=tmp_path, status=1)
        assert {f["code"] for f in flagged["findings"]} == {code}, code
        assert lint_json(f"{code}_fix.py", cwd=tmp_path, status=0)["findings"] == [], code
