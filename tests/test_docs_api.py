"""docs/api.md names every public name of the package and every public member of its classes."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pynenc
from pynenc import Invocation, Pynenc, Task, WorkflowContext

API = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()


def public_members(cls: type) -> set[str]:
    names = {n for n in vars(cls) if not n.startswith("_")}
    names |= {n for n in getattr(cls, "__slots__", ()) if not n.startswith("_")}
    return names


def test_every_exported_name_is_documented() -> None:
    missing = [name for name in pynenc.__all__ if f"`{name}" not in API]
    assert missing == []


def test_every_public_member_is_documented() -> None:
    prefixes = {Pynenc: "app", Task: "task", Invocation: "invocation", WorkflowContext: "wf"}
    missing = []
    for cls, prefix in prefixes.items():
        for name in sorted(public_members(cls)):
            if not re.search(rf"`{prefix}\.{name}\b", API):
                missing.append(f"{prefix}.{name}")
    assert missing == []


def test_the_documented_app_signature_is_the_real_one() -> None:
    parameters = list(inspect.signature(Pynenc).parameters)
    documented = re.search(r"Pynenc\((.*?)\)\n", API, re.S)
    assert documented is not None
    names = [p.split("=")[0].strip() for p in documented.group(1).replace("*,", "").split(",")]
    assert [n for n in names if n] == parameters
