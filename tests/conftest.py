"""Shared fixtures: every test gets its own store under tmp_path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pynenc import Pynenc


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

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"lmdb://{tmp_path / 'store'}"


@pytest.fixture
def app(store_url: str) -> Pynenc:
    return Pynenc("test", store=store_url, sync=False)


@pytest.fixture
def load_example(
    monkeypatch: pytest.MonkeyPatch, store_url: str
) -> Iterator[Callable[[str], ModuleType]]:
    """Import `examples/NAME.py` afresh, its app on this test's store."""
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        monkeypatch.setenv("PYNENC_STORE", store_url)
        monkeypatch.setenv("PYNENC_SYNC", "0")
        module_name = f"example_{name}"
        spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        loaded.append(module_name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
