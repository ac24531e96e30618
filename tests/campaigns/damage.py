"""The damage campaign: damage copies of a store on disk and read everything back.

    python -m tests.campaigns.damage --runs 2000 --seed 1 [--json out.json] [--kinds flip1,...]

A store is built holding finished, failed and stranded workflows (journals, workflow data,
results, children; `damage_app.py`). Each run damages a fresh copy of its `data.mdb` in one of
these ways:

- `flip1`: one byte at a random offset XORed with a random non-zero byte;
- `flipN`: 2 to 8 consecutive bytes at a random offset, each XORed likewise;
- `truncate`: the file cut at a random length;
- `zero_page`: one whole page, chosen at random, zeroed.

then runs `pynenc verify` on the copy and reads everything back in a child process
(`damage_read.py`: `list_invocations`, `get_invocation` with each result, `journal`,
`get_workflow_data`, `replay`, `recover`). Each read's outcome is compared with the same read
on an undamaged copy:

- `pristine`: the same value (or the same task exception);
- `detected`: a StoreError (StoreCorruptError names table and key);
- `vanished`: a value the pristine store has came back missing (None, shorter list), no error;
- `wrong`: another value, no error;
- `other_error`: an exception that is not a StoreError.

A run fails when its reader was killed by a signal (`signal`), ran past the timeout (`hang`),
or a read was `wrong`, `other_error`, or `vanished` with no read of the run reporting a store
error (`vanished_silently`). `verify_missed` counts runs where a read was not pristine but
`pynenc verify` found nothing. The summary is printed as a table; `--json` writes every run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pynenc.verify import verify_store

HERE = Path(__file__).resolve().parent
KINDS = ("flip1", "flipN", "truncate", "zero_page")
PAGE = 4096
#: Orders run inline (3 and 7 fail), and the ones stranded by a SIGKILL mid-way.
FINISHED = (0, 1, 2, 3, 4, 7)
STRANDED = (5, 6)
#: The failures a run can have; the campaign holds when every count is 0.
FAILURES = ("signal", "hang", "wrong", "other_error", "vanished_silently")

BUILD = """
import json, os, sys
from damage_app import app, order
from pynenc.errors import TaskError
strand = os.environ.get("DAMAGE_STRAND")
for n in ([int(strand)] if strand else json.loads(sys.argv[1])):
    try:
        order(n)
    except TaskError:
        pass
"""


def _env(store: Path, side_log: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYNENC_STORE=f"lmdb://{store}",
        DAMAGE_SIDE_LOG=str(side_log),
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
        **extra,
    )
    return env


def build_store(root: Path) -> tuple[Path, Path]:
    """The pristine store (in `root/pristine`) and the JSON file of its ids."""
    store, side_log = root / "pristine", root / "build-side.log"
    cmd = [sys.executable, "-c", BUILD, json.dumps(FINISHED)]
    subprocess.run(cmd, env=_env(store, side_log), check=True, timeout=120)
    for n in STRANDED:
        env = _env(store, side_log, DAMAGE_STRAND=str(n))
        proc = subprocess.run([sys.executable, "-c", BUILD], env=env, timeout=120, check=False)
        assert proc.returncode == -9, f"order {n} should have been killed, exit {proc.returncode}"
    lister = (
        "import json\nfrom damage_app import app\n"
        "invs = app.list_invocations()\n"
        "print(json.dumps({'invocations': [i.invocation_id for i in invs],"
        " 'workflows': sorted({i.workflow.workflow_id for i in invs}),"
        " 'finished': [i.invocation_id for i in invs if i.status.value in ('success', 'failed')"
        " and i.task_id.endswith('.order')]}))"
    )
    listed = subprocess.run(
        [sys.executable, "-c", lister],
        env=_env(store, side_log),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    ids = root / "ids.json"
    ids.write_text(listed.stdout)
    (store / "lock.mdb").unlink(missing_ok=True)
    return store, ids


def read_back(store: Path, ids: Path, side_log: Path, timeout: float) -> tuple[str, Any]:
    """Run the reader on `store`: ("ok", outcomes) | ("signal", name) | ("hang", None) | ..."""
    cmd = [sys.executable, str(HERE / "damage_read.py"), str(store), str(ids)]
    try:
        proc = subprocess.run(
            cmd,
            env=_env(store, side_log),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "hang", None
    if proc.returncode < 0:
        import signal

        return "signal", signal.Signals(-proc.returncode).name
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return "exit", (proc.returncode, proc.stderr[-600:])
    return "ok", json.loads(lines[-1])


def damage(data: Path, kind: str, rng: random.Random) -> str:
    """Damage `data` in place; a description of what was done."""
    raw = bytearray(data.read_bytes())
    size = len(raw)
    if kind == "flip1":
        at = rng.randrange(size)
        raw[at] ^= rng.randrange(1, 256)
        what = f"byte {at} (page {at // PAGE}) flipped"
    elif kind == "flipN":
        n = rng.randrange(2, 9)
        at = rng.randrange(size - n)
        for i in range(n):
            raw[at + i] ^= rng.randrange(1, 256)
        what = f"{n} bytes from {at} (page {at // PAGE}) flipped"
    elif kind == "truncate":
        at = rng.randrange(size)
        del raw[at:]
        what = f"cut at {at} of {size} bytes"
    elif kind == "zero_page":
        page = rng.randrange(size // PAGE)
        raw[page * PAGE : (page + 1) * PAGE] = bytes(PAGE)
        what = f"page {page} zeroed"
    else:
        raise ValueError(f"unknown damage kind {kind!r}")
    data.write_bytes(raw)
    return what


def classify(pristine: dict[str, Any], got: dict[str, Any]) -> dict[str, str]:
    """Each read's outcome class (see the module docs)."""
    classes = {}
    for name, want in pristine.items():
        have = got.get(name)
        if have == want:
            classes[name] = "pristine"
        elif have is None:
            classes[name] = "other_error"  # the reader lost the read: never expected
        elif (
            "exc" in have
            and have["exc"] == "InvalidArgumentError"
            and "no invocation" in have["msg"]
        ):
            classes[name] = "vanished"  # the app's answer for a record it does not find
        elif "exc" in have:
            classes[name] = "detected" if have["store_error"] else "other_error"
        elif _vanished(want.get("ok"), have["ok"]):
            classes[name] = "vanished"
        else:
            classes[name] = "wrong"
    return classes


def _vanished(want: Any, have: Any) -> bool:
    if want is not None and have is None:
        return True
    if isinstance(want, list) and isinstance(have, list) and len(have) < len(want):
        return all(item in want for item in have)
    return False


@dataclass
class Run:
    run: int
    kind: str
    damage: str
    reader: str
    verdict: str
    classes: dict[str, int] = field(default_factory=dict)
    verify_findings: list[str] = field(default_factory=list)
    verify_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    examples: list[Any] = field(default_factory=list)
    #: The reads that were not pristine, and their class.
    reads: dict[str, str] = field(default_factory=dict)


def one_run(
    n: int,
    kind: str,
    rng: random.Random,
    base: Path,
    ids: Path,
    pristine: Any,
    timeout: float,
    keep: Path | None = None,
) -> Run:
    work = Path(tempfile.mkdtemp(prefix=f"run{n}-", dir=base))
    try:
        store = work / "store"
        shutil.copytree(base / "pristine", store)
        what = damage(store / "data.mdb", kind, rng)
        damaged = (store / "data.mdb").read_bytes() if keep else b""
        t0 = time.perf_counter()
        report = verify_store(store, timeout=timeout)
        verify_seconds = time.perf_counter() - t0
        reader, got = read_back(store, ids, work / "side.log", timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    run = Run(n, kind, what, reader, "", verify_seconds=round(verify_seconds, 3))
    run.verify_findings = [str(f) for f in report.findings][:5]
    if reader == "ok":
        classes = classify(pristine, got)
        run.classes = dict(Counter(classes.values()))
        detected = run.classes.get("detected", 0) > 0
        for name, cls in classes.items():
            failed = cls in ("wrong", "other_error") or (cls == "vanished" and not detected)
            if failed:
                run.failures.append("vanished_silently" if cls == "vanished" else cls)
                if len(run.examples) < 3:
                    run.examples.append(
                        {"read": name, "want": pristine[name], "got": got.get(name)}
                    )
        tripped = any(cls != "pristine" for cls in classes.values())
        run.reads = {name: cls for name, cls in classes.items() if cls != "pristine"}
    else:
        run.failures.append(reader if reader in ("signal", "hang") else "other_error")
        run.examples.append({"reader": reader, "detail": got})
        tripped = True
    run.failures = sorted(set(run.failures))
    if tripped and report.ok:
        run.failures.append("verify_missed")
    if keep is not None and run.failures:
        keep.mkdir(parents=True, exist_ok=True)
        (keep / f"run{n}.mdb").write_bytes(damaged)
        shutil.copy(ids, keep / "ids.json")
    run.verdict = "failed" if run.failures else ("harmless" if not tripped else "detected")
    return run


@dataclass
class Summary:
    seed: int
    runs: list[Run]
    seconds: float

    def counts(self) -> dict[str, Counter[str]]:
        by_kind: dict[str, Counter[str]] = {}
        for r in self.runs:
            for key in (r.kind, "all"):
                c = by_kind.setdefault(key, Counter())
                c["runs"] += 1
                c[r.verdict] += 1
                c["verify_found"] += bool(r.verify_findings)
                for f in r.failures:
                    c[f] += 1
        return by_kind

    def table(self) -> str:
        cols = [
            "runs",
            "harmless",
            "detected",
            "failed",
            *FAILURES,
            "verify_missed",
            "verify_found",
        ]
        rows = [["kind", *cols]]
        for kind, c in self.counts().items():
            rows.append([kind, *(str(c[col]) for col in cols)])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(lines)


def run_campaign(
    runs: int,
    seed: int,
    *,
    kinds: tuple[str, ...] = KINDS,
    timeout: float = 60.0,
    workdir: Path | None = None,
    keep: Path | None = None,
) -> Summary:
    """Build the store, read it back undamaged twice (the reads must be deterministic), then
    do `runs` damaged runs, kinds in turn."""
    started = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="damage-", dir=workdir))
    try:
        _, ids = build_store(base)
        pristine_runs = []
        for i in range(2):
            copy = base / f"clean{i}"
            shutil.copytree(base / "pristine", copy)
            status, got = read_back(copy, ids, base / f"clean{i}.log", timeout)
            assert status == "ok", f"the undamaged store cannot be read back: {status} {got}"
            assert verify_store(copy).ok, "pynenc verify reports damage in the undamaged store"
            pristine_runs.append(got)
        assert pristine_runs[0] == pristine_runs[1], "reads of the undamaged store differ"
        pristine = pristine_runs[0]
        assert all("ok" in v for v in pristine.values()), pristine
        rng = random.Random(seed)
        done = [
            one_run(n, kinds[n % len(kinds)], rng, base, ids, pristine, timeout, keep)
            for n in range(runs)
        ]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return Summary(seed, done, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated damage kinds")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per reader")
    parser.add_argument("--json", type=Path, help="write every run here")
    parser.add_argument("--keep", type=Path, help="keep the damaged data.mdb of failed runs here")
    opts = parser.parse_args(argv)
    kinds = tuple(k for k in opts.kinds.split(",") if k)
    summary = run_campaign(opts.runs, opts.seed, kinds=kinds, timeout=opts.timeout, keep=opts.keep)
    print(f"damage campaign: {opts.runs} runs, seed {opts.seed}, {summary.seconds:.0f} s")
    print(summary.table())
    failed = [r for r in summary.runs if r.failures]
    for r in failed[:20]:
        print(f"run {r.run} ({r.kind}: {r.damage}): {', '.join(r.failures)}: {r.examples[:1]}")
    if opts.json:
        counts = {k: dict(v) for k, v in summary.counts().items()}
        payload = {
            "seed": opts.seed,
            "seconds": summary.seconds,
            "counts": counts,
            "runs": [asdict(r) for r in summary.runs],
        }
        opts.json.write_text(json.dumps(payload, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
