"""What a caller waiting on a queued invocation is told when no worker runs it: the command
that starts one (`pynenc --app MODULE:ATTR worker`, naming this app when it can be found)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pynenc.app import Pynenc

__all__ = ["HINT_AFTER_SECONDS", "unclaimed_hint", "worker_command"]

#: How long a wait lasts before it says that nothing has claimed the invocation.
HINT_AFTER_SECONDS = 5.0


def unclaimed_hint(app: Pynenc, invocation_id: bytes) -> str | None:
    """What to do when the invocation is queued and no live lease holds it, else None."""
    store = app.store
    if invocation_id not in store.queued():
        return None
    lease = store.lease(invocation_id)
    if lease is not None and lease.owner and lease.expires_ms > store.now_ms():
        return None  # a worker runs it
    return (
        f"nothing has claimed it (queued on {store.location()}: is a worker running on that "
        f"store?); start one with: {worker_command(app)}"
    )


def worker_command(app: Pynenc) -> str:
    """The command that starts a worker for `app`: exact when the module and name it is
    reachable by can be found, else with `MODULE:ATTR` to fill in."""
    found = _locate(app)
    if found is None:
        return (
            "pynenc --app MODULE:ATTR worker (MODULE:ATTR: where this app is defined, e.g. "
            "myproject.tasks:app)"
        )
    module, attr, root = found
    prefix = "" if root is None else f"PYTHONPATH={root} "
    return f"{prefix}pynenc --app {module}:{attr} worker"


def _locate(app: Pynenc) -> tuple[str, str, str | None] | None:
    """(module, attribute, directory to put on the path or None) naming `app`: the module
    `pynenc --app` loaded it from or any other imported module holding it, else the script run
    as `__main__` under the name it would be imported by."""
    for name in [name for name in list(sys.modules) if name != "__main__"]:
        attr = _attribute_of(sys.modules.get(name), app)
        if attr is not None:
            return name, attr, None
    main = sys.modules.get("__main__")
    attr = _attribute_of(main, app)
    if main is None or attr is None:
        return None
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":  # python -m MODULE
        return spec.name, attr, None
    file = getattr(main, "__file__", None)
    if not isinstance(file, str):
        return None
    path = Path(file).resolve()
    for entry in sys.path:
        root = Path(entry or os.getcwd()).resolve()
        if path.is_relative_to(root) and path.suffix == ".py":
            parts = path.relative_to(root).with_suffix("").parts
            if all(p.isidentifier() for p in parts):
                here = root == Path.cwd().resolve()
                return ".".join(parts), attr, None if here else str(root)
    return None


def _attribute_of(module: object, app: Pynenc) -> str | None:
    try:
        names = vars(module)
    except TypeError:
        return None
    for name, value in list(names.items()):
        if value is app and not name.startswith("_"):
            return str(name)
    return None
