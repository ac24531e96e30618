"""Fork a process while its threads commit, many times over, beside CPU-bound neighbours.

Each run is a fresh interpreter on a fresh store (`sync=False`, a 1 MiB map that grows while
children open the store): three threads put, flush and read; the main thread forks 20 children
a few milliseconds apart, each of which writes, commits and reads back. A run passes when the
interpreter exits 0 and every child's record is there; a run killed by a signal (SIGBUS when a
map is cut under a writer, SIGSEGV) or hung counts as a crash.

    python tests/stress_fork.py --runs 200 --neighbours 2

prints one JSON line of counts and exits non-zero if any run failed. `tests/test_store_map.py`
runs a CI-sized variant.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = r"""
import os, signal, sys, threading, time
from pynenc.store.lmdb import LmdbStore, StoreOptions

store = LmdbStore(sys.argv[1], StoreOptions(sync=False, map_size=1 << 20))
stop = threading.Event()

def busy(me):
    n = 0
    while not stop.is_set():
        store.put("data", b"t%d-%06d" % (me, n), b"x" * 64)
        store.flush()
        store.get("data", b"t%d-%06d" % (me, n))
        n += 1

workers = [threading.Thread(target=busy, args=(k,)) for k in range(3)]
for w in workers:
    w.start()
children = []
try:
    for i in range(20):
        time.sleep(0.003)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                store.put("data", b"child-%02d" % i, b"c")
                store.flush()
                code = 0 if store.get("data", b"child-%02d" % i) == b"c" else 2
            finally:
                os._exit(code)
        children.append(pid)
    deadline = time.monotonic() + 30
    for pid in children:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                for p in children:
                    os.kill(p, signal.SIGKILL)
                print("child hung", file=sys.stderr)
                os._exit(3)
            time.sleep(0.01)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            print(f"child exited {code}", file=sys.stderr)
            os._exit(4)
finally:
    stop.set()
    for w in workers:
        w.join()
found = len(store.scan("data", b"child-"))
if found != 20:
    print(f"{found} of 20 child records", file=sys.stderr)
    sys.exit(5)
"""


def run(runs: int, neighbours: int, timeout: float = 90) -> dict[str, object]:
    """Run the scenario `runs` times beside `neighbours` busy-looping processes."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(neighbours)]
    failures: list[dict[str, object]] = []
    started = time.monotonic()
    try:
        for i in range(runs):
            with tempfile.TemporaryDirectory(prefix="pynenc-fork-") as tmp:
                cmd = [sys.executable, "-c", SCENARIO, str(Path(tmp) / "store")]
                try:
                    proc = subprocess.run(
                        cmd, capture_output=True, text=True, timeout=timeout, check=False
                    )
                except subprocess.TimeoutExpired:
                    failures.append({"run": i, "exit": "timeout"})
                    continue
                if proc.returncode != 0:
                    failures.append(
                        {"run": i, "exit": proc.returncode, "stderr": proc.stderr[-2000:]}
                    )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return {
        "runs": runs,
        "neighbours": neighbours,
        "failed": len(failures),
        "killed_by_signal": sum(
            1 for f in failures if isinstance(f["exit"], int) and f["exit"] < 0
        ),
        "seconds": round(time.monotonic() - started, 1),
        "failures": failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--neighbours", type=int, default=2)
    args = parser.parse_args()
    result = run(args.runs, args.neighbours)
    print(json.dumps(result))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
