"""How the command line prints: rich tables and trees for people, JSON for machines."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from pynenc.cli.read import age

__all__ = [
    "console",
    "print_json",
    "progress",
    "render_list",
    "render_show",
    "render_status",
    "render_tree",
    "time_text",
]

#: Colour of each status in tables and trees (plain text when the output is not a terminal).
STATUS_STYLE = {"pending": "yellow", "running": "cyan", "success": "green", "failed": "red"}

#: Width of the output when it is not a terminal and COLUMNS is unset: wide enough that ids
#: and task names are never folded when piped to a file or `grep`.
PIPE_WIDTH = 200


class _Stripped(io.TextIOBase):
    """A text stream that drops the spaces tables pad lines with (for files and pipes)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._stream.write(line.rstrip(" ") + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(self._pending)
            self._pending = ""
        self._stream.flush()

    def isatty(self) -> bool:
        return False


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False)
    width = None if "COLUMNS" in os.environ else PIPE_WIDTH
    return Console(
        file=cast(TextIO, _Stripped(stream)), width=width, highlight=False, soft_wrap=False
    )


def print_json(value: Any) -> None:
    """The machine form: one JSON document on standard output."""
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _status(value: str) -> str:
    style = STATUS_STYLE.get(value)
    return value if style is None else f"[{style}]{value}[/{style}]"


def time_text(value: str | None) -> str:
    """An ISO time of the read model, shortened for a table (UTC, to the millisecond)."""
    if value is None:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


_time = time_text


def _duration(row: dict[str, Any]) -> str:
    duration = row.get("duration_s")
    return "-" if duration is None else age(duration)


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def render_list(page: dict[str, Any], command: list[str]) -> None:
    out = console()
    rows = page["invocations"]
    if not rows:
        out.print("no invocations match")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    # Ids, statuses and times are never cut; when narrow, task names fold and workflow ids
    # are cut (in full with --json).
    table.add_column("INVOCATION", no_wrap=True, min_width=36)
    table.add_column("TASK", overflow="fold")
    table.add_column("STATUS", no_wrap=True, min_width=7)
    table.add_column("CREATED (UTC)", no_wrap=True, min_width=23)
    table.add_column("DURATION", no_wrap=True)
    table.add_column("WORKFLOW", overflow="fold")
    for row in rows:
        table.add_row(
            row["invocation_id"],
            row["task"],
            _status(row["status"]),
            _time(row["created"]),
            _duration(row),
            _workflow(row),
        )
    out.print(table)
    if page["next_before"] is not None:
        more = " ".join(["pynenc", *command, "--before", page["next_before"]])
        out.print(f"{len(rows)} shown, more: {more}", markup=False)
    else:
        out.print(f"{len(rows)} shown", markup=False)


def _workflow(row: dict[str, Any]) -> str:
    """The WORKFLOW column: the workflow the invocation belongs to; for the one that starts a
    workflow (whose id is its own), `(root)`, or `(child of ID)` when it starts a child
    workflow of workflow ID."""
    if row["workflow_id"] != row["invocation_id"]:
        return str(row["workflow_id"])
    if row["parent_workflow_id"] is None:
        return "(root)"
    return f"(child of {row['parent_workflow_id']})"


def render_show(shown: dict[str, Any]) -> None:
    out = console()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column()
    fields: list[tuple[str, str]] = [
        ("invocation", shown["invocation_id"]),
        ("task", shown["task"]),
        ("status", _status(shown["status"])),
        ("workflow", f"{shown['workflow_id']} ({shown['workflow_type']})"),
    ]
    if shown["parent_workflow_id"] is not None:
        fields.append(("parent workflow", shown["parent_workflow_id"]))
    if shown["parent_invocation_id"] is not None:
        fields.append(("parent", shown["parent_invocation_id"]))
    args = shown["arguments"]
    fields += [
        ("arguments", _plain(args.get("error") or {k: args[k] for k in ("args", "kwargs")})),
        ("created", _time(shown["created"])),
        ("started", _time(shown["started"])),
        ("ended", _time(shown["ended"])),
        ("duration", _duration(shown)),
        ("owner", shown["owner"] or "-"),
    ]
    lease = shown["lease"]
    if lease is not None:
        fields.append(
            ("lease", f"{lease['owner']} until {_time(lease['expires'])} (token {lease['token']})")
        )
    if shown["recoveries"]:
        fields.append(("recoveries", str(shown["recoveries"])))
    if shown["status"] == "success":
        fields.append(("result", _plain(shown["result"])))
    for name, value in fields:
        head.add_row(name, value if name == "status" else value.replace("[", r"\["))
    out.print(head)
    diverged = shown.get("divergence")
    if diverged is not None:
        out.print(
            f"\ndiverged at position {diverged['position']} of attempt {diverged['attempt']} "
            f"({_time(diverged['at'])} UTC), the last time it was resumed:\n"
            f"  the journal recorded  {diverged['recorded']}\n"
            f"  the code asked for    {diverged['requested']}",
            markup=False,
        )
    if shown["error"] is not None:
        error = shown["error"]
        out.print(f"\nerror: {error['module']}.{error['type']}: {error['message']}", markup=False)
        out.print(error["traceback"].rstrip(), markup=False)
    attempts = Table(title="attempts", title_justify="left", box=None, header_style="bold")
    for name in ("#", "STATUS", "STARTED", "ENDED", "OWNER", "ERROR"):
        attempts.add_column(name)
    for a in shown["attempts"]:
        attempts.add_row(
            str(a["attempt"]),
            _status(a["status"]),
            _time(a["started"]),
            _time(a["ended"]),
            (a["owner"] or "-").replace("[", r"\["),
            (a["error"] or "-").replace("[", r"\["),
        )
    out.print()
    out.print(attempts)
    journal = Table(title="journal", title_justify="left", box=None, header_style="bold")
    for name in ("POS", "OPERATION", "NAME", "VALUE", "CALL SITE"):
        journal.add_column(name)
    marked = None
    if diverged is not None and diverged["attempt"] == shown["attempt"]:
        marked = diverged["position"]
    for e in shown["journal"]:
        journal.add_row(
            f"{e['position']} ≠" if e["position"] == marked else str(e["position"]),
            e["operation"],
            (e["name"] or "-").replace("[", r"\["),
            _plain(e["value"]).replace("[", r"\["),
            _call_site(e.get("site")).replace("[", r"\["),
        )
    out.print()
    if shown["journal"]:
        out.print(journal)
        if marked is not None and marked < len(shown["journal"]):
            out.print(f"≠ marks position {marked}, where the code diverged", markup=False)
    else:
        out.print("journal: empty")
    if shown["children"]:
        kids = Table(title="children", title_justify="left", box=None, header_style="bold")
        for name in ("INVOCATION", "TASK", "STATUS"):
            kids.add_column(name, no_wrap=True)
        for c in shown["children"]:
            kids.add_row(c["invocation_id"], c["task"], _status(c["status"]))
        out.print()
        out.print(kids)


def _label(node: dict[str, Any]) -> str:
    kind = "workflow " if node["new_workflow"] else ""
    return (
        f"{kind}[bold]{node['task']}[/bold] {_status(node['status'])} {_duration(node)} "
        f"[dim]{node['invocation_id']}[/dim]"
    )


def render_tree(root: dict[str, Any]) -> None:
    def grow(branch: Tree, node: dict[str, Any]) -> None:
        for child in node["children"]:
            grow(branch.add(_label(child)), child)

    top = Tree(_label(root))
    grow(top, root)
    console().print(top)


def render_status(state: dict[str, Any]) -> None:
    out = console()
    counts = ", ".join(f"{_status(k)} {v}" for k, v in state["counts"].items()) or "none"
    out.print(f"store {state['store']}", markup=False)
    out.print(f"invocations: {counts}")
    out.print(f"queued: {state['queued']}")
    if state["running"]:
        table = Table(title="running", title_justify="left", box=None, header_style="bold")
        for name in ("INVOCATION", "TASK", "OWNER", "LEASE EXPIRES (UTC)"):
            table.add_column(name, no_wrap=True)
        for r in state["running"]:
            expires = r["lease_expires_ms"]
            table.add_row(
                r["invocation_id"],
                r["task"],
                str(r["owner"] or "-").replace("[", r"\["),
                "-"
                if not expires
                else _time(datetime.fromtimestamp(expires / 1e3, UTC).isoformat()),
            )
        out.print(table)
    else:
        out.print("running: none")
    for damaged in state["damaged"]:
        out.print(f"damaged record {damaged['key']}: {damaged['problem']}", markup=False)


@contextmanager
def progress(what: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """Yields `update(done, total)`; a progress bar on standard error is drawn from the first
    update that counts more than one invocation (never for one, never when not `enabled`)."""
    bar: Progress | None = None
    task: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar, task
        if bar is None:
            if not enabled or total <= 1:
                return
            bar = Progress(
                TextColumn(what),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console(stderr=True),
            )
            task = bar.add_task(what, total=total)
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()


def _call_site(site: dict[str, Any] | None) -> str:
    """`file:line in function()` for a journal entry's call site, `-` when none is recorded;
    a file below the working directory is shown relative to it (`--json` keeps the path)."""
    if site is None:
        return "-"
    where = f"{_relative(site['file'])}:{site['line']}"
    return f"{where} in {site['function']}()" if site["function"] else where


def _relative(path: str) -> str:
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if shown.startswith("..") else shown
