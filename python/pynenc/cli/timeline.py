"""`pynenc timeline WORKFLOW_ID`: a workflow drawn against time, as one self-contained HTML
page (`--html FILE`) and as Chrome trace-event JSON (`--trace FILE`, for Perfetto and
chrome://tracing).

Both are built from the same model, `timeline(app, workflow_id)`: one bar per invocation of
the workflow (child workflows included), in the order of `pynenc tree`, each with its
attempts and its decoded journal as `pynenc show` gives them. Nothing imports user code.
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pynenc.app import Pynenc
from pynenc.cli import read
from pynenc.cli.command import Command
from pynenc.cli.target import Target, UsageError
from pynenc.cli.timeline_page import PAGE
from pynenc.errors import InvalidArgumentError
from pynenc.invocation import InvocationRecord

__all__ = ["COMMANDS", "compress", "render_html", "timeline", "trace_events"]

#: A stretch with no event (a start, an end, an attempt's start or end) is drawn shortened when
#: it is longer than this share of the whole run, and at least `MIN_GAP_S` seconds.
GAP_SHARE = 0.1
MIN_GAP_S = 0.5
#: What a shortened stretch is drawn as: this share of the time outside shortened stretches.
GAP_WIDTH_SHARE = 0.08


def _record(app: Pynenc, invocation_id: str) -> InvocationRecord:
    inv = app.get_invocation(invocation_id)
    assert inv is not None  # every node of `read.tree` is a stored invocation
    return inv._record


def _span(record: InvocationRecord, now: float) -> tuple[float, float]:
    """When an invocation ran, from its first attempt's start (its creation when it never
    started) to its end (now, while it has not finished)."""
    starts = [a["started"] for a in record.attempts if a.get("started") is not None]
    if record.started_at is not None:
        starts.append(record.started_at)
    start = min(starts) if starts else record.created_at
    end = record.updated_at if record.status.finished else now
    return start, max(start, end)


def _attempt_spans(record: InvocationRecord, end: float) -> list[dict[str, Any]]:
    """The attempts with their start and end in seconds (the latest ends with the bar)."""
    out = []
    for shown, raw in zip(read._attempts(record), [*record.attempts, None], strict=True):
        started: float | None
        ended: float | None
        if raw is None:
            started, ended = record.started_at, end
        else:
            started, ended = raw.get("started"), raw.get("ended")
        out.append({**shown, "t0": started, "t1": ended})
    return out


def _diverged_at(record: InvocationRecord) -> int | None:
    """The position of the latest attempt's journal where its last resumption diverged."""
    d = record.divergence
    return None if d is None or d.attempt != record.attempt else d.position


def compress(points: list[float]) -> list[dict[str, float]]:
    """The idle stretches to shorten: between consecutive event times, each longer than
    `GAP_SHARE` of the whole run and `MIN_GAP_S`; as `{"t0", "t1", "drawn"}` (real seconds,
    and the length drawn instead: `GAP_WIDTH_SHARE` of the time the run was not idle)."""
    if len(points) < 2:
        return []
    ordered = sorted(set(points))
    total = ordered[-1] - ordered[0]
    threshold = max(MIN_GAP_S, GAP_SHARE * total)
    idle = [(a, b) for a, b in itertools.pairwise(ordered) if b - a > threshold]
    busy = max(total - sum(b - a for a, b in idle), 0.01 * total)
    return [{"t0": a, "t1": b, "drawn": GAP_WIDTH_SHARE * busy} for a, b in idle]


def _axis(gaps: list[dict[str, float]], origin: float) -> Callable[[float], float]:
    """The map from a real time to its position on the drawn (shortened) axis, in seconds."""

    def at(t: float) -> float:
        x = t - origin
        for gap in gaps:
            if t >= gap["t1"]:
                x -= gap["t1"] - gap["t0"] - gap["drawn"]
            elif t > gap["t0"]:
                x -= (t - gap["t0"]) * (1 - gap["drawn"] / (gap["t1"] - gap["t0"]))
        return round(x, 6)

    return at


def timeline(app: Pynenc, workflow_id: str, now: float | None = None) -> dict[str, Any]:
    """The model of the page and of the trace: the workflow's bars, the shortened axis, and
    each bar's attempts and decoded journal (keys documented in docs/operations.md)."""
    now = time.time() if now is None else now
    try:
        root = read.tree(app, workflow_id)
    except InvalidArgumentError:
        raise InvalidArgumentError(
            f"no workflow {workflow_id} in {app.config.store}: give the id of an invocation "
            "(pynenc list --workflows lists workflows)"
        ) from None
    flat: list[tuple[dict[str, Any], int, str | None]] = []

    def walk(node: dict[str, Any], depth: int, parent: str | None) -> None:
        flat.append((node, depth, parent))
        for child in node["children"]:
            walk(child, depth + 1, node["invocation_id"])

    walk(root, 0, None)
    records = {node["invocation_id"]: _record(app, node["invocation_id"]) for node, _, _ in flat}
    spans = {key: _span(record, now) for key, record in records.items()}
    attempts = {key: _attempt_spans(records[key], spans[key][1]) for key in records}
    points = [t for span in spans.values() for t in span]
    points += [a[k] for spans_ in attempts.values() for a in spans_ for k in ("t0", "t1") if a[k]]
    points += [r.created_at for r in records.values()]
    origin = min(points)
    gaps = compress(points)
    at = _axis(gaps, origin)
    bars = []
    for row, (node, depth, parent) in enumerate(flat):
        key = node["invocation_id"]
        record = records[key]
        start, end = spans[key]
        bars.append(
            {
                "invocation_id": key,
                "task": node["task"],
                "status": node["status"],
                "workflow_id": node["workflow_id"],
                "new_workflow": node["new_workflow"],
                "parent_invocation_id": parent,
                "depth": depth,
                "row": row,
                "start": read.iso(start),
                "end": read.iso(end) if record.status.finished else None,
                "duration_s": round(end - start, 6),
                "start_s": round(start - origin, 6),
                "end_s": round(end - origin, 6),
                "x0": at(start),
                "x1": at(end),
                "recoveries": record.recoveries,
                "attempts": [
                    {
                        **{k: v for k, v in a.items() if k not in ("t0", "t1")},
                        "x0": None if a["t0"] is None else at(a["t0"]),
                        "x1": None if a["t1"] is None else at(a["t1"]),
                    }
                    for a in attempts[key]
                ],
                "error": None
                if record.error is None
                else f"{record.error.type_name}: {record.error.message}",
                "divergence": read.divergence(record),
                "diverged_at": _diverged_at(record),
                "journal": read.journal(app, record),
            }
        )
    return {
        "workflow_id": root["workflow_id"],
        "invocation_id": root["invocation_id"],
        "task": root["task"],
        "store": app.config.store,
        "generated": read.iso(now),
        "origin": read.iso(origin),
        "length": at(max(points)),
        "gaps": [
            {
                "x": at(g["t0"]),
                "width": round(g["drawn"], 6),
                "idle_s": round(g["t1"] - g["t0"], 6),
            }
            for g in gaps
        ],
        "gap_rule": {"share": GAP_SHARE, "min_s": MIN_GAP_S},
        "bars": bars,
    }


def render_html(model: dict[str, Any]) -> str:
    """The page: the model inline as JSON, drawn by inline script; nothing is fetched."""
    # `<` only occurs inside JSON strings, where `\u003c` is the same character: no value can
    # end the script element (`</script>`) or open a comment in it (`<!--`).
    data = json.dumps(model, ensure_ascii=True).replace("<", "\\u003c")
    title = html.escape(f"{model['task']} {model['workflow_id']}")
    return PAGE.replace("__TITLE__", title).replace("__DATA__", data)


def trace_events(model: dict[str, Any]) -> dict[str, Any]:
    """The model as Chrome trace-event JSON: a process per workflow, a thread per invocation,
    one complete ("X") event per invocation, times in microseconds from
    the run's start (real time: nothing is shortened)."""
    pids: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    for tid, bar in enumerate(model["bars"], start=1):
        if bar["workflow_id"] not in pids:
            pids[bar["workflow_id"]] = len(pids) + 1
            events.append(
                {
                    "name": "process_name",
                    "ph": "M",
                    "pid": pids[bar["workflow_id"]],
                    "tid": 0,
                    "args": {"name": f"workflow {bar['task']} {bar['workflow_id']}"},
                }
            )
        pid = pids[bar["workflow_id"]]
        indent = "  " * bar["depth"]
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": pid,
                "tid": tid,
                "args": {"name": f"{indent}{bar['task']} {bar['invocation_id'][:8]}"},
            }
        )
        events.append(
            {
                "name": "thread_sort_index",
                "ph": "M",
                "pid": pid,
                "tid": tid,
                "args": {"sort_index": tid},
            }
        )
        events.append(
            {
                "name": bar["task"],
                "cat": "invocation",
                "ph": "X",
                "pid": pid,
                "tid": tid,
                "ts": round(bar["start_s"] * 1e6),
                "dur": max(0, round((bar["end_s"] - bar["start_s"]) * 1e6)),
                "args": {
                    "invocation_id": bar["invocation_id"],
                    "status": bar["status"],
                    "workflow_id": bar["workflow_id"],
                    "parent_invocation_id": bar["parent_invocation_id"],
                    "recoveries": bar["recoveries"],
                    "divergence": bar["divergence"],
                    "journal": [
                        f"{e['position']} {e['operation']} {e['name'] or ''}".rstrip()
                        for e in bar["journal"]
                    ],
                },
            }
        )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "workflow_id": model["workflow_id"],
            "origin": model["origin"],
            "store": model["store"],
        },
    }


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workflow_id",
        metavar="WORKFLOW_ID",
        help="the workflow's id (the id of the invocation that started it; any invocation id "
        "draws the part below that invocation)",
    )
    parser.add_argument(
        "--html",
        metavar="FILE",
        type=Path,
        help="write the timeline as one self-contained HTML page (default: none)",
    )
    parser.add_argument(
        "--trace",
        metavar="FILE",
        type=Path,
        help="write the timeline as Chrome trace-event JSON, for Perfetto or chrome://tracing "
        "(default: none)",
    )


def _check_parent(path: Path | None, what: str) -> None:
    if path is not None and not path.parent.is_dir():
        raise InvalidArgumentError(
            f"--{what} {path}: no directory {path.parent}; create it or name another file"
        )


def _run(target: Target, opts: argparse.Namespace) -> int:
    if opts.html is None and opts.trace is None:
        raise UsageError(
            "pynenc timeline writes files only: give --html FILE, --trace FILE or both"
        )
    _check_parent(opts.html, "html")
    _check_parent(opts.trace, "trace")
    model = timeline(target.read_app(), opts.workflow_id)
    written = []
    if opts.html is not None:
        opts.html.write_text(render_html(model), encoding="utf-8")
        written.append(str(opts.html))
    if opts.trace is not None:
        opts.trace.write_text(json.dumps(trace_events(model)), encoding="utf-8")
        written.append(str(opts.trace))
    if opts.json:
        summary = {"workflow_id": model["workflow_id"], "bars": len(model["bars"])}
        print(json.dumps({**summary, "written": written}))
    else:
        wrote = ", ".join(f"wrote {w}" for w in written)
        print(f"{len(model['bars'])} invocations of workflow {model['workflow_id']}: {wrote}")
    return 0


COMMANDS = [
    Command(
        "timeline",
        "a workflow against time: an HTML page (--html) or a trace (--trace)",
        _arguments,
        _run,
        description="Draw a workflow against time: a bar per invocation from its first start "
        "to its end, child workflows nested under their parents, coloured by status, long "
        "idle stretches shortened; an invocation whose last resumption diverged is outlined, "
        "the journal entry where it diverged marked. --html writes one self-contained page "
        "(click a bar for its attempts and journal); --trace writes Chrome trace-event JSON "
        "for Perfetto or chrome://tracing. Prints how many invocations were drawn and what "
        "was written.",
    ),
]
