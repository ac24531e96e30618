"""The task registry of an app: task ids, their definitions, and the modules that fill it.

A stored task id is only ever looked up here, never imported: the registry is filled by the
modules that define tasks, which are the app's own module, the modules the app names in
`include=` and those given to `pynenc --include`.
"""

from __future__ import annotations

import importlib
import inspect
import keyword
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pynenc.errors import InvalidArgumentError

if TYPE_CHECKING:
    from pynenc.task import Task

__all__ = [
    "TaskRegistry",
    "check_modules",
    "check_name",
    "definition_site",
    "derive_task_id",
    "is_script",
    "script_module",
]

TaskT = TypeVar("TaskT", bound="Task[..., Any]")

#: The longest explicit task name accepted (`@app.task(name=...)`).
MAX_NAME_LEN = 200


def definition_site(func: Callable[..., Any]) -> str:
    """Where `func` is defined, as `file:line` (the function a decorator wraps, if any)."""
    code = getattr(inspect.unwrap(func), "__code__", None)
    if code is None:
        return "<unknown place>"
    return f"{code.co_filename}:{code.co_firstlineno}"


def _is_module_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and all(part.isidentifier() and not keyword.iskeyword(part) for part in name.split("."))
    )


def script_module(func: Callable[..., Any]) -> str | None:
    """The name the module defining `func` would have when imported, for a function of a
    script (`__main__`, or a file run by `runpy.run_path`); None when it has none.

    Run with `python -m NAME`, that name; run as `python path/flow.py`, its path relative to
    the first `sys.path` entry that holds it (`flow`, `pkg.flow`); None for `python -c`, the
    interactive prompt, or a file that no `sys.path` entry holds under an importable name.
    """
    namespace = getattr(inspect.unwrap(func), "__globals__", None)
    if not isinstance(namespace, dict):
        return None
    name = getattr(namespace.get("__spec__"), "name", None)
    if _is_module_name(name) and name != "__main__":
        return str(name)
    file = namespace.get("__file__")
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    try:
        path = Path(file).resolve()
    except OSError:
        return None
    for entry in sys.path:
        try:
            relative = path.relative_to(Path(entry or ".").resolve())
        except (OSError, ValueError):
            continue
        parts = [*relative.parts[:-1], relative.name.removesuffix(".py")]
        if parts[-1] == "__init__":
            parts.pop()
        candidate = ".".join(parts)
        if _is_module_name(candidate):
            return candidate
    return None


def is_script(func: Callable[..., Any]) -> bool:
    """Whether `func` belongs to a script rather than to an imported module."""
    module = func.__module__
    return module == "__main__" or not _is_module_name(module)


def derive_task_id(func: Callable[..., Any]) -> str:
    """The id of a task made from `func` without an explicit name: `module.qualname`, where a
    function of a script gets the name its module would have when imported
    (see `script_module`).

    Raises:
        InvalidArgumentError: `func` is a lambda or a nested function (its id could be shared
            or never found again).
    """
    qualname: str = func.__qualname__
    if "<" in qualname:  # <lambda>, <locals>
        what = "a lambda" if func.__name__ == "<lambda>" else f"the nested function {qualname}"
        raise InvalidArgumentError(
            f"@app.task cannot give {what} ({definition_site(func)}) a stable task id: another "
            "such function would get the same one, and a recovering process could not find "
            "it; define it with def at module level, or name it with "
            "@app.task(name='...') (app.task(name='...')(func))"
        )
    module: str = func.__module__
    if is_script(func):
        module = script_module(func) or module
    return f"{module}.{qualname}"


def check_name(name: object) -> str:
    """An explicit task name: a non-empty printable `str` of at most `MAX_NAME_LEN` characters,
    not surrounded by spaces."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_NAME_LEN
        or not name.isprintable()
        or name != name.strip()
    ):
        raise InvalidArgumentError(
            "a task name (@app.task(name=...)) is a non-empty printable str of at most "
            f"{MAX_NAME_LEN} characters, without leading or trailing spaces, got {name!r}"
        )
    return name


def check_modules(what: str, modules: object) -> tuple[str, ...]:
    """Module names given to `what` (e.g. `include=`): a list or tuple of dotted names."""
    if modules is None:
        return ()
    if isinstance(modules, str) or not isinstance(modules, list | tuple | set | frozenset):
        raise InvalidArgumentError(
            f"{what} takes a list of module names (e.g. {what}['myproject.tasks']), got {modules!r}"
        )
    for name in modules:
        if not _is_module_name(name):
            raise InvalidArgumentError(
                f"{what} takes importable module names (dotted identifiers such as "
                f"'myproject.tasks'), got {name!r}"
            )
    return tuple(dict.fromkeys(modules))


class TaskRegistry:
    """The tasks of one app by id, and the modules to import to find more."""

    def __init__(self, app_id: str, include: tuple[str, ...]) -> None:
        self.app_id = app_id
        self.include = list(include)
        self.tasks: dict[str, Task[..., Any]] = {}
        #: Ids earlier versions gave tasks of a script (`__main__.NAME`) -> the id now.
        self.aliases: dict[str, str] = {}
        #: The module `pynenc --app` loaded the app from (ids `__main__.X` stored by earlier
        #: versions are looked up there as `MODULE.X`).
        self.app_module: str | None = None
        self._imported: set[str] = set()
        self._lock = threading.Lock()

    def add(self, task: TaskT) -> TaskT:
        """Register `task` under its id and return the task now registered there.

        The very same function registered again gets its existing task back. A function of
        the same definition (file, line and qualified name, at module level: its module run
        again by `importlib.reload`, or a script imported under its own name as well) replaces
        the earlier one. Any other function under a taken id is refused.
        """
        with self._lock:
            taken = self.tasks.get(task.task_id)
            if taken is not None:
                if taken.func is task.func:
                    return cast(TaskT, taken)
                if not _same_definition(taken.func, task.func):
                    raise InvalidArgumentError(
                        f"task id {task.task_id!r} is taken by {_describe(taken.func)}; "
                        f"cannot register {_describe(task.func)} under it too: give one of "
                        "them another id with @app.task(name='...')"
                    )
            self.tasks[task.task_id] = task
            if task.func.__module__ == "__main__" and "<" not in task.func.__qualname__:
                legacy = f"__main__.{task.func.__qualname__}"
                if legacy != task.task_id:
                    self.aliases[legacy] = task.task_id
            return task

    def find(self, task_id: str) -> Task[..., Any] | None:
        """The task registered under `task_id`, or None (without importing anything)."""
        found = self.tasks.get(task_id)
        if found is None and task_id.startswith("__main__."):
            alias = self.aliases.get(task_id)
            if alias is None and self.app_module is not None:
                alias = f"{self.app_module}.{task_id.removeprefix('__main__.')}"
            found = None if alias is None else self.tasks.get(alias)
        return found

    def get(self, task_id: str) -> Task[..., Any]:
        """The task registered under `task_id`; imports the `include` modules not yet imported
        the first time an id is missing.

        Raises:
            InvalidArgumentError: No such task, or an `include` module cannot be imported.
        """
        found = self.find(task_id)
        if found is not None:
            return found
        if self.import_included():
            found = self.find(task_id)
            if found is not None:
                return found
        raise InvalidArgumentError(self.unknown(task_id))

    def import_included(self, extra: Iterable[str] = ()) -> bool:
        """Import the `include` modules (and `extra`, added to them) not imported yet; returns
        whether any was imported now.

        Raises:
            InvalidArgumentError: A module cannot be imported (it is tried again next time).
        """
        with self._lock:
            for name in extra:
                if name not in self.include:
                    self.include.append(name)
            pending = [m for m in self.include if m not in self._imported]
        # Imported outside the lock: a module's tasks register (under the lock) as it runs,
        # and importlib itself keeps two threads from running one module twice.
        for name in pending:
            try:
                importlib.import_module(name)
            except Exception as exc:
                raise InvalidArgumentError(
                    f"cannot import module {name!r}, which app {self.app_id!r} includes "
                    f"to find its tasks: {type(exc).__name__}: {exc}"
                ) from exc
            with self._lock:
                self._imported.add(name)
        return bool(pending)

    def unknown(self, task_id: str) -> str:
        """Why `task_id` cannot be found, and how to register it."""
        module = task_id.rsplit(".", 1)[0] if "." in task_id else None
        hint = (
            f" (a function's id is MODULE.NAME: here probably module {module!r})"
            if _is_module_name(module) and module != "__main__"
            else ""
        )
        included = ", ".join(repr(m) for m in self.include) or "none"
        return (
            f"task {task_id!r} is not registered with app {self.app_id!r}: import the module "
            f"that defines it{hint} first, or name that module in Pynenc(include=[...]) or "
            f"with `pynenc --include MODULE` (included now: {included}); stored task ids are "
            "never imported"
        )


def _describe(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__} ({definition_site(func)})"


def _same_definition(old: Callable[..., Any], new: Callable[..., Any]) -> bool:
    """Both functions come from one module-level definition, run twice."""
    return (
        "<locals>" not in new.__qualname__
        and old.__qualname__ == new.__qualname__
        and definition_site(old) == definition_site(new)
    )
