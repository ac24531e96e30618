"""Shared fixtures: every test gets its own store under tmp_path."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pynenc import Pynenc

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
