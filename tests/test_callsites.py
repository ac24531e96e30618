"""Call sites: every operation records where it was made, and a divergence names, side by
side, the recorded and the requested operation with their source lines and values.

Each case records a workflow from a file in tmp_path in one process, edits the file, and
replays it with `app.replay` in another, as a changed deploy would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_python

# One line per operation kind, in the order the workflow makes them; the last line is the
# one every insertion goes before, so each edit diverges at an operation, not at the end.
OPS = {
    "random": "    drawn = wf.random()",
    "uuid": "    made = wf.uuid()",
    "utc_now": "    now = wf.utc_now()",
    "set_data": '    wf.set_data("k", "one")',
    "get_data": '    got = wf.get_data("k")',
    "side_effect": '    effect = wf.side_effect("fx", lambda: "seven")',
    "execute_task": "    child_run = wf.execute_task(child, 41)",
}
LAST = '    wf.set_data("done", True)'

HEAD = """\
import sys
from pynenc import Pynenc

app = Pynenc("callsites", store=sys.argv[1], sync=False)


@app.task(name="flow.child")
def child(x):
    return x + 1


@app.task(name="flow.main")
def main():
    wf = main.wf
"""

RECORD = """
import json, sys
sys.path.insert(0, sys.argv[2])
import flow
inv = flow.main()
inv.result
print(json.dumps({"id": inv.invocation_id}))
"""

REPLAY = """
import dataclasses, json, sys
sys.path.insert(0, sys.argv[2])
import flow
from pynenc import NonDeterminismError
try:
    flow.app.replay(sys.argv[3])
    print(json.dumps({"diverged": False}))
except NonDeterminismError as e:
    print(json.dumps({
        "diverged": True, "message": str(e), "position": e.position, "matched": e.matched,
        "workflow_id": e.workflow_id, "invocation_id": e.invocation_id,
        "recorded": dataclasses.asdict(e.recorded), "requested": dataclasses.asdict(e.requested),
    }))
"""


def source(lines: list[str]) -> str:
    return HEAD + "\n".join(lines) + "\n    return 0\n"


def line_of(text: str, line: str) -> int:
    """The 1-based line number of `line` in `text` (its first occurrence)."""
    return text.splitlines().index(line) + 1


class Flow:
    """The workflow file in tmp_path, its store, and the id of its recorded run."""

    def __init__(self, tmp_path: Path, lines: list[str]) -> None:
        self.dir = tmp_path / "app"
        self.dir.mkdir()
        self.file = self.dir / "flow.py"
        self.store = f"lmdb://{tmp_path / 'store'}"
        self.old = source(lines)
        self.file.write_text(self.old)
        self.id = run_python(RECORD, self.store, str(self.dir))["id"]

    def edit(self, lines: list[str]) -> str:
        new = source(lines)
        self.file.write_text(new)
        for cached in self.dir.glob("__pycache__/*"):
            cached.unlink()
        return new

    def replay(self) -> dict[str, Any]:
        result: dict[str, Any] = run_python(REPLAY, self.store, str(self.dir), self.id)
        return result


BASE = [*OPS.values(), LAST]


def assert_names_both(got: dict[str, Any], flow: Flow, old_line: int, new_line: int) -> None:
    """The error names the recorded line of the old file and the requested line of the new
    one, each with its function, and the values."""
    assert got["diverged"], got
    rec, req = got["recorded"], got["requested"]
    assert (rec["file"], rec["line"]) == (str(flow.file), old_line), rec
    assert (req["file"], req["line"]) == (str(flow.file), new_line), req
    assert rec["function"] == req["function"] == "main"
    message = got["message"]
    assert f"flow.py:{old_line}" in message and f"flow.py:{new_line}" in message, message
    assert rec["value"] is not None and rec["value"] in message, message
    if req["value"] is not None:
        assert req["value"] in message, message
    assert got["position"] == got["matched"]
    entries = "entry" if got["matched"] == 1 else "entries"
    assert f"position {got['position']} ({got['matched']} {entries} matched" in message
    assert got["invocation_id"] == flow.id and got["workflow_id"] in message
    assert "wf.patched" in message and "app.cancel" in message


@pytest.mark.parametrize("kind", list(OPS))
def test_removing_an_operation_names_both_lines_and_values(tmp_path: Path, kind: str) -> None:
    flow = Flow(tmp_path, BASE)
    at = BASE.index(OPS[kind])
    new = flow.edit(BASE[:at] + BASE[at + 1 :])
    got = flow.replay()
    assert got["recorded"]["kind"] == kind and got["position"] == at
    if kind == "execute_task":  # the recorded child's arguments, decoded
        assert got["recorded"]["value"] == "41"
        assert got["recorded"]["call"] == "execute_task(flow.child, 41)"
    assert_names_both(got, flow, line_of(flow.old, OPS[kind]), line_of(new, BASE[at + 1]))


def test_returning_before_a_recorded_child_names_it_with_its_arguments(tmp_path: Path) -> None:
    flow = Flow(tmp_path, BASE)
    flow.edit(BASE[:-2])
    got = flow.replay()
    rec, req = got["recorded"], got["requested"]
    assert rec["kind"] == "execute_task" and rec["value"] == "41"
    assert rec["line"] == line_of(flow.old, OPS["execute_task"])
    assert req["kind"] == "return" and req["file"] is None
    assert "but the code now asks for the task to return." in got["message"]
    assert "execute_task(flow.child, 41)" in got["message"]


@pytest.mark.parametrize("kind", list(OPS))
def test_inserting_an_operation_names_both_lines_and_values(tmp_path: Path, kind: str) -> None:
    flow = Flow(tmp_path, BASE)
    new = flow.edit([*OPS.values(), OPS[kind], LAST])
    got = flow.replay()
    assert got["recorded"]["kind"] == "set_data" and got["recorded"]["name"] == "done"
    assert got["requested"]["kind"] == kind and got["position"] == len(OPS)
    # The inserted line is the one just before LAST.
    assert_names_both(got, flow, line_of(flow.old, LAST), line_of(new, LAST) - 1)


@pytest.mark.parametrize("kind", list(OPS))
def test_reordering_an_operation_names_both_lines_and_values(tmp_path: Path, kind: str) -> None:
    flow = Flow(tmp_path, BASE)
    at = BASE.index(OPS[kind])
    swapped = list(BASE)
    swapped[at], swapped[at + 1] = swapped[at + 1], swapped[at]
    new = flow.edit(swapped)
    got = flow.replay()
    assert got["recorded"]["kind"] == kind and got["position"] == at
    assert got["requested"]["call"] != got["recorded"]["call"]
    assert_names_both(got, flow, line_of(flow.old, OPS[kind]), line_of(new, BASE[at + 1]))


def test_comments_blank_lines_and_renamed_locals_do_not_diverge(tmp_path: Path) -> None:
    flow = Flow(tmp_path, BASE)
    edited = []
    for line in BASE:
        edited += ["    # a comment added above every operation", "", line]
    edited = [line.replace("drawn =", "renamed =").replace("got =", "read =") for line in edited]
    flow.edit(edited)
    assert flow.replay() == {"diverged": False}


def test_recorded_and_requested_carry_the_report_as_data(tmp_path: Path) -> None:
    flow = Flow(tmp_path, BASE)
    changed = [line.replace('"fx", lambda: "seven"', '"fy", lambda: "eight"') for line in BASE]
    new = flow.edit(changed)
    got = flow.replay()
    line = line_of(flow.old, OPS["side_effect"])
    assert got["recorded"] == {
        "kind": "side_effect",
        "name": "fx",
        "value": "'seven'",
        "file": str(flow.file),
        "line": line,
        "function": "main",
        "call": 'side_effect("fx")',
    }
    assert got["requested"] == {
        "kind": "side_effect",
        "name": "fy",
        "value": None,
        "file": str(flow.file),
        "line": line_of(new, changed[BASE.index(OPS["side_effect"])]),
        "function": "main",
        "call": 'side_effect("fy")',
    }
    assert got["position"] == got["matched"] == 5
    assert "5 entries matched" in got["message"]


def test_a_changed_child_call_shows_both_arguments_decoded_with_their_lines(
    tmp_path: Path,
) -> None:
    flow = Flow(tmp_path, BASE)
    changed = [line.replace("child, 41", "child, 42") for line in BASE]
    new = flow.edit(changed)
    got = flow.replay()
    assert got["recorded"]["value"] == "41" and got["requested"]["value"] == "42"
    assert got["recorded"]["call"] == "execute_task(flow.child, 41)"
    assert got["requested"]["call"] == "execute_task(flow.child, 42)"
    line = line_of(flow.old, OPS["execute_task"])
    assert_names_both(got, flow, line, line_of(new, changed[-2]))


def test_show_prints_the_call_site_of_each_entry(tmp_path: Path) -> None:
    flow = Flow(tmp_path, BASE)
    proc = subprocess.run(
        [sys.executable, "-m", "pynenc", "show", "--store", flow.store, "--json", flow.id],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    journal = json.loads(proc.stdout)["journal"]
    sites = [(e["operation"], e["site"]) for e in journal]
    expected = [
        (kind, {"file": str(flow.file), "line": line_of(flow.old, line), "function": "main"})
        for kind, line in [*OPS.items(), ("set_data", LAST)]
    ]
    assert sites == expected
    text = subprocess.run(
        [sys.executable, "-m", "pynenc", "show", "--store", flow.store, flow.id],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "250"},
    ).stdout
    assert f"flow.py:{line_of(flow.old, OPS['side_effect'])} in main()" in text, text
