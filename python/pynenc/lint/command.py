"""The `pynenc lint PATH...` command: text for people, `--json` for machines.

Exit status: 0 when nothing is flagged, 1 when anything is, 2 on a usage error (a path that
does not exist, invalid settings) or when a file cannot be parsed (it was not checked).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pynenc.errors import PynencError
from pynenc.lint import LintReport, lint_paths
from pynenc.lint.rules import BLOCKING_CALL, RULES, SET_ITERATION

__all__ = ["main", "report_json"]

EXIT_CLEAN, EXIT_FLAGGED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    rules = "\n".join(
        f"  {r.code}  {r.name}: {r.message}" for r in (*RULES, SET_ITERATION, BLOCKING_CALL)
    )
    parser = argparse.ArgumentParser(
        prog="pynenc lint",
        description="Flag calls in tasks (and the project functions they call) that break "
        "deterministic replay. Reads the files; imports nothing. Settings: [tool.pynenc.lint] "
        "in the nearest pyproject.toml. Suppress one line with `# pynenc: ignore[CODE]`.",
        epilog=f"rules:\n{rules}\n\nexit status: 0 clean, 1 flagged, 2 usage or parse error",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is below it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


def report_json(report: LintReport) -> dict[str, Any]:
    """The report as the `--json` document."""
    return {
        "findings": [
            {
                "path": _shown(f.path),
                "line": f.line,
                "column": f.column,
                "code": f.code,
                "rule": f.rule,
                "message": f.message,
                "fix": f.fix,
                "call": f.call,
                "chain": list(f.chain),
            }
            for f in report.findings
        ],
        "errors": [
            {"path": _shown(e.path), "line": e.line, "column": e.column, "message": e.message}
            for e in report.failures
        ],
        "files": report.files,
        "config": str(report.config.source) if report.config.source else None,
    }


def _print_text(report: LintReport) -> None:
    for f in report.findings:
        print(f"{_shown(f.path)}:{f.line}:{f.column}: {f.code} {f.message}")
        if len(f.chain) > 1:
            print(f"    via {' -> '.join(f.chain)}")
        else:
            print(f"    in task {f.chain[0]}")
        print(f"    fix: {f.fix}")
    for e in report.failures:
        print(f"{_shown(e.path)}:{e.line}:{e.column}: PNR000 {e.message} (file not checked)")
    flagged = {f.path for f in report.findings}
    summary = (
        f"{len(report.findings)} finding(s) in {len(flagged)} file(s)"
        if report.findings
        else "no findings"
    )
    if report.failures:
        summary += f", {len(report.failures)} file(s) not parsed"
    print(f"{summary} ({report.files} file(s) checked)")


def main(argv: list[str] | None = None) -> int:
    """Run `pynenc lint`; returns the exit status."""
    parser = _parser()
    try:
        opts = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error and 0 on --help
        return int(exc.code or 0)
    try:
        report = lint_paths(opts.paths)
    except PynencError as exc:
        print(f"pynenc lint: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if opts.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        _print_text(report)
    if report.failures:
        return EXIT_USAGE
    return EXIT_FLAGGED if report.findings else EXIT_CLEAN
