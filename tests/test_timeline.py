"""`pynenc timeline`: the HTML page, opened by headless Chromium and checked from the rendered
page, and the Chrome trace-event JSON; on a real store holding a workflow with tasks, a child
workflow, a task that failed twice (a retry), and a crash (SIGKILL) that `pynenc recover`
resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

PROGRAM = """
import os
import signal
import sys
import time

from pynenc import Pynenc

app = Pynenc()


@app.task(name="tlflow.step")
def step(n: int) -> int:
    time.sleep(0.05)
    return n * 2


@app.task(name="tlflow.doomed", max_retries=1, retry_backoff=0.0)
def doomed(n: int) -> int:
    raise ValueError(f"doomed {n}")


@app.task(name="tlflow.report", force_new_workflow=True)
def report(n: int) -> dict:
    doubled = report.wf.execute_task(step, n).result
    report.wf.set_data("note", "</script><!-- <b>not markup</b>")
    return {"n": n, "doubled": doubled, "draw": report.wf.random()}


@app.task(name="tlflow.pipeline", force_new_workflow=True)
def pipeline(n: int) -> dict:
    first = pipeline.wf.execute_task(step, n).result
    if os.environ.get("TLFLOW_CRASH") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    second = pipeline.wf.execute_task(step, first).result
    try:
        pipeline.wf.execute_task(doomed, second).result
    except ValueError:
        pass
    child = pipeline.wf.execute_task(report, second).result
    return {"first": first, "second": second, "child": child}


if __name__ == "__main__":
    print(pipeline(int(sys.argv[1])).invocation_id)
"""


class Run:
    """The filled store, the drawn files and how to run commands on them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"lmdb://{root / 'store'}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC_")}
        self.env["PYTHONPATH"] = str(root)
        self.html = root / "timeline.html"
        self.trace = root / "trace.json"
        self.workflow = ""
        self.tree: dict[str, Any] = {}

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            cwd=self.root,
            env={**self.env, "PYNENC_STORE": self.url, **env},
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def pynenc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "pynenc", "--store", self.url, *args)


def nodes(node: dict[str, Any], parent: str | None = None) -> list[tuple[dict[str, Any], Any]]:
    out = [(node, parent)]
    for child in node["children"]:
        out += nodes(child, node["invocation_id"])
    return out


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> Run:
    r = Run(tmp_path_factory.mktemp("timeline"))
    (r.root / "tlflow.py").write_text(PROGRAM)
    killed = r.run("tlflow.py", "3", TLFLOW_CRASH="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    time.sleep(1.2)  # an idle stretch the page shortens: nothing runs until the recovery
    recovered = r.run("-m", "pynenc", "--app", "tlflow:app", "recover")
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.splitlines()[-1] == "recovered 1, diverged 0, unreadable 0"
    listed = r.pynenc("list", "--workflows", "--task", "tlflow.pipeline", "--json")
    (row,) = json.loads(listed.stdout)["invocations"]
    r.workflow = row["invocation_id"]
    r.tree = json.loads(r.pynenc("tree", r.workflow, "--json").stdout)
    done = r.pynenc("timeline", r.workflow, "--html", str(r.html), "--trace", str(r.trace))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"6 invocations of workflow {r.workflow}: wrote {r.html}, wrote {r.trace}"
    )
    return r


class Dom(HTMLParser):
    """The rendered page's bars, idle stretches and side panel."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: list[dict[str, str | None]] = []
        self.gaps: list[dict[str, str | None]] = []
        self.panel: dict[str, str | None] | None = None
        self.panel_text: list[str] = []
        self.diverged_rows: list[str] = []  # the position cell of each row marked diverged
        self._in_panel = 0
        self._marked_row = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "rect" and "bar" in classes:
            self.bars.append(a)
        if tag == "rect" and "gap" in classes:
            self.gaps.append(a)
        if tag == "tr" and "diverged" in classes:
            self._marked_row = True
        if tag == "aside":
            self.panel = a
            self._in_panel = 1
        elif self._in_panel:
            self._in_panel += tag not in ("br", "img", "input", "meta")

    def handle_endtag(self, tag: str) -> None:
        if self._in_panel:
            self._in_panel -= 1

    def handle_data(self, data: str) -> None:
        if self._in_panel:
            self.panel_text.append(data)
        if self._marked_row:
            self._marked_row = False
            self.diverged_rows.append(data.removeprefix("≠ "))


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium; .ci/run does)")
    return found


def browse(page: Path, hash_: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1400,520",
            "--virtual-time-budget=2000",
            # Nothing may be fetched: every host resolves to nowhere.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            *args,
            f"{page.as_uri()}{hash_}",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_rendered_page_draws_a_bar_per_invocation_nested_under_its_parent(
    drawn: Run, tmp_path: Path
) -> None:
    # `#open=ID` clicks that bar once the page is drawn (a click event on the bar's rect).
    dumped = browse(drawn.html, f"#open={drawn.workflow}", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr
    dom = Dom()
    dom.feed(dumped.stdout)
    expected = nodes(drawn.tree)
    assert len(dom.bars) == len(expected) == 6
    by_id = {bar["data-id"]: bar for bar in dom.bars}
    assert set(by_id) == {node["invocation_id"] for node, _ in expected}
    for node, parent in expected:
        bar = by_id[node["invocation_id"]]
        assert bar["data-status"] == ("failed" if node["task"] == "tlflow.doomed" else "success")
        assert bar["fill"] == {"success": "#1a7f37", "failed": "#cf222e"}[node["status"]]
        assert bar["data-workflow"] == node["workflow_id"]
        if parent is None:
            assert bar["data-depth"] == "0" and bar["data-parent"] == ""
            continue
        above = by_id[parent]
        assert bar["data-parent"] == parent
        assert int(bar["data-depth"] or 0) == int(above["data-depth"] or 0) + 1
        assert float(bar["y"] or 0) > float(above["y"] or 0)  # drawn below its parent
        # ... and within its parent's span on the time axis.
        assert float(bar["x"] or 0) >= float(above["x"] or 0)
        assert (
            float(bar["x"] or 0) + float(bar["width"] or 0)
            <= float(above["x"] or 0) + float(above["width"] or 0) + 0.5
        )
    child_workflows = {b["data-workflow"] for b in dom.bars if b["data-depth"] != "0"}
    assert len(child_workflows) == 2  # the root's tasks and the child workflow's
    # The crash left nothing running until the recovery: that stretch is drawn shortened.
    assert dom.gaps and float(dom.gaps[0]["data-idle"] or 0) >= 1.0
    # The click opened the root's journal, decoded, with its recovery.
    assert dom.panel is not None and dom.panel.get("data-id") == drawn.workflow
    text = " ".join(t.strip() for t in dom.panel_text if t.strip())
    assert "tlflow.pipeline" in text and "recoveries 1" in text
    assert "journal (4 entries)" in text
    assert text.count("execute_task") == 4 and "tlflow.report" in text
    # A value that looks like markup is shown as the text it is.
    (report,) = [n for n, _ in expected if n["task"] == "tlflow.report"]
    dumped = browse(drawn.html, f"#open={report['invocation_id']}", "--dump-dom")
    dom = Dom()
    dom.feed(dumped.stdout)
    assert len(dom.bars) == 6
    text = " ".join(t.strip() for t in dom.panel_text if t.strip())
    assert "set_data note </script><!-- <b>not markup</b>" in text
    # The failed task's panel: both attempts, each with its error.
    (doomed,) = [n for n, _ in expected if n["task"] == "tlflow.doomed"]
    dumped = browse(drawn.html, f"#open={doomed['invocation_id']}", "--dump-dom")
    dom = Dom()
    dom.feed(dumped.stdout)
    assert dom.panel is not None and dom.panel.get("data-id") == doomed["invocation_id"]
    text = " ".join(t.strip() for t in dom.panel_text if t.strip())
    assert text.count("ValueError: doomed 12") == 3  # the record's error, and each attempt's
    assert "0 failed" in text and "1 failed" in text

    shot = tmp_path / "timeline.png"
    taken = browse(drawn.html, f"#open={drawn.workflow}", f"--screenshot={shot}")
    assert taken.returncode == 0, taken.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_page_without_a_click_shows_no_journal(drawn: Run) -> None:
    dumped = browse(drawn.html, "", "--dump-dom")
    dom = Dom()
    dom.feed(dumped.stdout)
    assert len(dom.bars) == 6
    assert dom.panel is not None and "data-id" not in dom.panel
    assert "journal (" not in " ".join(dom.panel_text)


def test_page_is_self_contained(drawn: Run) -> None:
    text = drawn.html.read_text()
    for fetching in ("<link", " src=", "url(http", "@import", "fetch(", "XMLHttpRequest"):
        assert fetching not in text
    assert "default-src 'none'" in text  # and the page's policy forbids any fetch


def test_trace_is_chrome_trace_event_json(drawn: Run) -> None:
    trace = json.loads(drawn.trace.read_text())
    events = trace["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == 6
    for event in events:
        assert {"name", "ph", "pid", "tid"} <= set(event)
    for event in complete:
        assert isinstance(event["ts"], int) and isinstance(event["dur"], int)
        assert event["ts"] >= 0 and event["dur"] >= 0
    by_id = {e["args"]["invocation_id"]: e for e in complete}
    for node, parent in nodes(drawn.tree):
        event = by_id[node["invocation_id"]]
        assert event["name"] == node["task"] and event["args"]["status"] == node["status"]
        if parent is not None:
            up = by_id[parent]
            assert up["ts"] <= event["ts"] and event["ts"] + event["dur"] <= up["ts"] + up["dur"]
    # A process per workflow (named), a thread per invocation.
    assert len({e["pid"] for e in complete}) == 2
    assert len({(e["pid"], e["tid"]) for e in complete}) == 6
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert names[by_id[drawn.workflow]["pid"]] == f"workflow tlflow.pipeline {drawn.workflow}"
    # The crash and the recovery are inside the root's span: it lasts over the idle second.
    assert by_id[drawn.workflow]["dur"] >= 1_000_000


PROGRAMS = Path(__file__).parent / "programs"


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A workflow killed mid-way whose recovery met changed code (`tests/programs/drift.py`):
    it diverged at position 1 and was left running."""
    r = Run(tmp_path_factory.mktemp("drifted"))
    r.env["PYTHONPATH"] = str(PROGRAMS)
    killed = r.run(str(PROGRAMS / "drift.py"), "5", DRIFT_CRASH="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    recovered = r.run("-m", "pynenc", "--app", "drift:app", "recover", DRIFT_CHANGED="1")
    assert recovered.stdout.splitlines()[-1] == "recovered 0, diverged 1, unreadable 0"
    listed = r.pynenc("list", "--task", "drift.order", "--json")
    (row,) = json.loads(listed.stdout)["invocations"]
    r.workflow = row["invocation_id"]
    done = r.pynenc("timeline", r.workflow, "--html", str(r.html), "--trace", str(r.trace))
    assert done.returncode == 0, done.stderr
    return r


def test_rendered_page_marks_where_a_recovery_diverged(drifted: Run, tmp_path: Path) -> None:
    dumped = browse(drifted.html, f"#open={drifted.workflow}", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr
    dom = Dom()
    dom.feed(dumped.stdout)
    by_id = {bar["data-id"]: bar for bar in dom.bars}
    order, charge = (
        by_id[drifted.workflow],
        next(b for b in dom.bars if b is not by_id[drifted.workflow]),
    )
    # The bar that diverged is outlined and names the position; the others are not.
    assert (order["class"] or "").split() == ["bar", "diverged", "selected"]
    assert order["data-diverged"] == "1" and order["data-status"] == "running"
    assert "diverged" not in (charge["class"] or "") and "data-diverged" not in charge
    # Its panel says where and what, and marks that journal entry.
    text = " ".join(t.strip() for t in dom.panel_text if t.strip())
    assert "diverged at position 1 of attempt 0" in text
    assert "recorded random() at " in text and "code asked uuid() at " in text
    assert "≠ 1 random" in text and text.count("≠") == 1
    assert dom.diverged_rows == ["1"]
    # The legend says what the outline means.
    assert "diverged: its last resumption (a recovery or a worker)" in dumped.stdout
    trace = json.loads(drifted.trace.read_text())
    (event,) = [
        e
        for e in trace["traceEvents"]
        if e.get("args", {}).get("invocation_id") == drifted.workflow
    ]
    assert event["args"]["divergence"]["position"] == 1
    shot = tmp_path / "diverged.png"
    taken = browse(drifted.html, f"#open={drifted.workflow}", f"--screenshot={shot}")
    assert taken.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeline_errors_write_nothing(drawn: Run, tmp_path: Path) -> None:
    out = tmp_path / "never.html"
    missing = drawn.pynenc("timeline", "00000000-0000-0000-0000-000000000000", "--html", str(out))
    assert missing.returncode == 1
    assert "no workflow 00000000-0000-0000-0000-000000000000" in missing.stderr
    nothing = drawn.pynenc("timeline", drawn.workflow)
    assert nothing.returncode == 2 and "--html FILE, --trace FILE" in nothing.stderr
    nowhere = drawn.pynenc("timeline", drawn.workflow, "--html", str(tmp_path / "no" / "x.html"))
    assert nowhere.returncode == 1 and f"no directory {tmp_path / 'no'}" in nowhere.stderr
    assert not out.exists() and not (tmp_path / "no").exists()
