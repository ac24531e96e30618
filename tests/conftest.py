"""Shared helpers of the store tests: each test gets its own store under `tmp_path`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest


def run_python(
    script: str, *args: str, prefix: list[str] | None = None, timeout: float = 60
) -> Any:
    """Run `script` in a fresh interpreter; return the JSON it prints last.

    A crash (abort, SIGSEGV, SIGBUS) shows as a non-zero exit status and fails the test, so
    "an error, never a crash" is checked for real.
    """
    cmd = [*(prefix or []), sys.executable, "-c", textwrap.dedent(script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    lines = [line for line in proc.stdout.splitlines() if line[:1] in ("{", "[")]
    assert lines, f"no JSON output\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(lines[-1])


# Opens a store in a child and reports the error class (if any) as JSON.
OPEN_SCRIPT = """
import json, sys
from pynenc.errors import PynencError
from pynenc.store.lmdb import LmdbStore, StoreOptions
try:
    store = LmdbStore(sys.argv[1], StoreOptions(sync=False))
    store.put("data", b"k", b"v")
    store.flush()
    print(json.dumps({"ok": True}))
except PynencError as e:
    print(json.dumps({"ok": False, "error": type(e).__name__, "path": getattr(e, "path", None),
                      "message": str(e), "mro": [c.__name__ for c in type(e).__mro__]}))
"""


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"
