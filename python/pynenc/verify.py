"""Verification of a store: every page and every record checked, in child processes.

`verify_store(path)` runs two walks (docs/operations.md, "Verifying a store"):

1. The page walk reads `data.mdb` page by page with plain reads, never through LMDB: page
   headers, node offsets and lengths, key order, tree depths and page counts, every page used
   once or listed free, and every record's checksum and layout.
2. The table walk reads each table through LMDB, as the engine's own reads do.

Both run in a child process, a fresh one after each crash: damage that would crash a reader
(a signal, a hang) is reported as a finding naming the table being walked, never a crash of
the caller. Nothing is written to the store, and no user code is imported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pynenc.errors import InvalidArgumentError

__all__ = ["TABLES", "Finding", "VerifyReport", "verify_store"]

#: The tables of a store, in the order they are walked.
TABLES = ("journal", "invocations", "data", "queue", "queued", "leases", "counters")

#: Seconds one walk may go without finishing before it is taken as hung.
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Finding:
    """One damaged thing: the table (or `pages`), the key or page, and what is wrong."""

    table: str
    key: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.table}, {self.key}" if self.key else self.table
        return f"{where}: {self.detail}"


@dataclass
class VerifyReport:
    """What `verify_store` found; `ok` when nothing."""

    path: Path
    findings: list[Finding] = field(default_factory=list)
    #: Records the page walk checked.
    records: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_store(path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> VerifyReport:
    """Check every page and record of the store in directory `path` (see the module docs).

    Raises:
        InvalidArgumentError: `path` holds no store (no `data.mdb`).
    """
    path = Path(path)
    if not (path / "data.mdb").is_file():
        raise InvalidArgumentError(
            f"no store at {path}: expected {path / 'data.mdb'} (give --store lmdb://PATH)"
        )
    report = VerifyReport(path)
    stages = ["pages", *TABLES]
    while stages:
        done, crash = _run_child(path, stages, timeout, report)
        stages = stages[done:]
        if crash is not None:
            report.findings.append(crash)
            stages = stages[1:]  # the stage that crashed is reported; go on with the rest
    return report


def _run_child(
    path: Path, stages: list[str], timeout: float, report: VerifyReport
) -> tuple[int, Finding | None]:
    """Run `stages` in one child; how many finished, and the crash of the next, if any."""
    cmd = [sys.executable, "-m", "pynenc.verify", str(path), *stages]
    hung = False
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        hung = True
        stdout = _text(exc.stdout)
        stderr = _text(exc.stderr)
        code = -signal.SIGKILL
    done = 0
    for line in stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "finding" in message:
            finding = Finding(*message["finding"])
            if finding not in report.findings:  # both walks check every record
                report.findings.append(finding)
        elif "records" in message:
            report.records += int(message["records"])
        elif "done" in message:
            done += 1
    if done == len(stages) and code == 0:
        return done, None
    stage = stages[done] if done < len(stages) else stages[-1]
    walking = "the data file's pages" if stage == "pages" else f"table {stage}"
    table = "pages" if stage == "pages" else stage
    if hung:
        detail = f"reader hung walking {walking} (killed after {timeout:g} s)"
    elif code < 0:
        detail = f"reader crashed with {_signal_name(-code)} walking {walking}"
    else:
        last = stderr.strip().splitlines()[-1:] or [f"exit status {code}"]
        detail = f"reader failed walking {walking}: {last[0]}"
    return done, Finding(table, "", detail)


def _text(out: bytes | str | None) -> str:
    if out is None:
        return ""
    return out if isinstance(out, str) else out.decode(errors="replace")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _child(path: str, stages: list[str]) -> None:
    """The walks, one JSON line per finding and per finished stage (run by `_run_child`)."""
    from pynenc._core import verify_file, verify_table

    def emit(message: object) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    for stage in stages:
        if stage == "pages":
            findings, records = verify_file(path)
            emit({"records": records})
        else:
            findings = verify_table(path, stage)
        for finding in findings:
            emit({"finding": list(finding)})
        emit({"done": stage})


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2:])
