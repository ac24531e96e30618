"""Damage on disk: a seeded damage campaign (tests/campaigns/damage.py), and `pynenc verify`
run as a command on intact and damaged stores, in real subprocesses on real LMDB files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from campaigns.damage import FAILURES, run_campaign

from pynenc._core import Store

#: Runs of the CI campaign: about 0.5 s each on a loaded 2-core machine (a verify and a
#: reader process per run), so the test stays under two minutes.
CI_RUNS = 160

WORKFLOW = bytes(range(16))
MARKER = b"value-marker-0123456789"


@pytest.mark.timeout(240)
def test_a_seeded_damage_campaign_never_returns_a_wrong_value(tmp_path: Path) -> None:
    summary = run_campaign(CI_RUNS, seed=13, timeout=60, workdir=tmp_path)
    counts = summary.counts()["all"]
    print(f"\ndamage campaign, {CI_RUNS} runs, seed 13, {summary.seconds:.0f} s")
    print(summary.table())
    failed = {f: counts[f] for f in FAILURES}
    detail = [
        (r.run, r.kind, r.damage, r.failures, r.reads, r.verify_findings[:2])
        for r in summary.runs
        if r.failures
    ]
    # What holds: no wrong value, no hang, and verify finds every damage a read tripped over.
    assert failed["wrong"] == 0 and failed["hang"] == 0, detail
    assert counts["verify_missed"] == 0, detail
    # Not yet everywhere (docs/operations.md, "What damage is detected where"): a damaged node
    # header that LMDB's own cursor code follows kills a reader (signal), and a damaged
    # branch-page key can send a lookup to the wrong leaf (a record read as absent, and a
    # replay that then diverges). Each such run is one verify reports (asserted above); they
    # are counted and printed, and must stay rare (2000 runs: 3), never assumed absent.
    branch = ("outside the range", "not above", "unreachable", "neither used nor listed")
    residual = []
    for r in summary.runs:
        if not r.failures:
            continue
        lookups = set(r.failures) - {"signal"}
        misrouted = any(any(b in f for b in branch) for f in r.verify_findings)
        assert not lookups or (lookups <= {"vanished_silently", "other_error"} and misrouted), (
            detail
        )
        residual.append(r.run)
    print(f"residual (signal or misrouted lookup): {len(residual)} of {CI_RUNS} runs {detail}")
    assert len(residual) <= CI_RUNS // 50, detail
    assert counts["detected"] > 0 and counts["harmless"] > 0


def verify(store: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pynenc", "verify", "--store", f"lmdb://{store}", *extra]
    env = {k: v for k, v in os.environ.items() if k != "PYNENC_STORE"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)


def a_store(path: Path) -> Path:
    store = Store(str(path), sync=True)
    store.put("data", WORKFLOW + b"total", MARKER)
    store.put("invocations", bytes(16), b"record")
    store.flush()
    del store
    return path


def patch(path: Path, find: bytes, at: int, xor: int) -> None:
    """XOR the byte `at` bytes after the start of `find` in data.mdb with `xor`."""
    data = path / "data.mdb"
    raw = bytearray(data.read_bytes())
    i = raw.index(find)
    raw[i + at] ^= xor
    data.write_bytes(raw)


def test_verify_passes_an_intact_store_and_names_a_damaged_record(tmp_path: Path) -> None:
    store = a_store(tmp_path / "store")
    ok = verify(store)
    assert ok.returncode == 0, ok.stderr
    assert "no damage found" in ok.stdout
    patch(store, MARKER, 3, 0x01)  # one bit of the value
    bad = verify(store)
    assert bad.returncode == 1
    assert 'damaged: data, workflow 00010203-0405-0607-0809-0a0b0c0d0e0f, data key "total"' in (
        bad.stdout
    )
    assert "checksum mismatch" in bad.stdout
    assert verify(tmp_path / "nothing-here").returncode == 1


def test_verify_reports_a_page_that_crashes_lmdb_and_does_not_crash(tmp_path: Path) -> None:
    store = a_store(tmp_path / "store")
    tagged = b"\x03" + WORKFLOW + b"total"
    # The node's flags (2 bytes at node + 4, the key at node + 8) get F_DUPDATA, which sends
    # LMDB's cursor code into a sub-database this store does not have.
    patch(store, tagged + MARKER, -8 + 4, 0x04)
    out = verify(store, "--json")
    assert out.returncode == 1, out.stderr
    assert "which no record of this store has" in out.stdout  # the page walk saw it
    assert "reader crashed with SIGSEGV walking table data" in out.stdout
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from pynenc._core import Store; Store({str(store)!r}).scan('data', b'')",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    # The class of damage docs/operations.md names as not yet safe in process.
    assert read.returncode == -signal.SIGSEGV


def test_a_value_length_past_its_page_is_an_error_and_stops_writes(tmp_path: Path) -> None:
    store = a_store(tmp_path / "store")
    tagged = b"\x03" + WORKFLOW + b"total"
    patch(store, tagged + MARKER, -8 + 2, 0x10)  # the high half of the value's length
    script = f"""
import json
from pynenc._core import Store
from pynenc.errors import StoreCorruptError
store = Store({str(store)!r})
out = {{}}
for name, op in (("get", lambda: store.get("data", {WORKFLOW!r} + b"total")),
                 ("write", lambda: (store.put("data", {WORKFLOW!r} + b"x", b"1"), store.flush()))):
    try:
        op()
        out[name] = "ok"
    except StoreCorruptError as e:
        out[name] = [e.table, e.key, e.detail]
print(json.dumps(out))
"""
    from conftest import run_python

    out = run_python(script)
    assert out["get"][0] == "data" and "total" in out["get"][1]
    assert "runs past the end of its page" in out["get"][2]
    assert "writes to this store are refused" in out["write"][2]
