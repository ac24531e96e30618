"""`[tool.pynenc.lint]` in the nearest `pyproject.toml` above the linted paths."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynenc.errors import InvalidArgumentError
from pynenc.lint.rules import RULES_BY_CODE

__all__ = ["LintConfig", "find_pyproject", "load_config"]

_KEYS = ("ignore", "allow", "exclude")


@dataclass(frozen=True)
class LintConfig:
    """The linter's settings.

    Attributes:
        ignore: rule codes never reported.
        allow: qualified names never flagged or followed (`mymod.safe_clock`, `time.monotonic`);
            an entry also allows everything below it (`mymod` allows `mymod.f`).
        exclude: glob patterns of files not read (`"migrations/*"`).
        source: the `pyproject.toml` the settings came from, or None.
    """

    ignore: frozenset[str] = frozenset()
    allow: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    source: Path | None = None


def find_pyproject(paths: list[Path]) -> Path | None:
    """The nearest `pyproject.toml` in the paths' common directory or above it."""
    if not paths:
        return None
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([str(p) for p in resolved]))
    directory = common if common.is_dir() else common.parent
    for candidate in (directory, *directory.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate / "pyproject.toml"
    return None


def load_config(pyproject: Path | None) -> LintConfig:
    """Read `[tool.pynenc.lint]`; no file or no table gives the defaults.

    Raises:
        InvalidArgumentError: the file is not valid TOML, or the table has an unknown key,
            a value that is not a list of strings, or an unknown rule code.
    """
    if pyproject is None:
        return LintConfig()
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InvalidArgumentError(f"cannot read {pyproject}: {exc}") from None
    table: Any = document.get("tool", {}).get("pynenc", {}).get("lint")
    if table is None:
        return LintConfig(source=pyproject)
    where = f"[tool.pynenc.lint] in {pyproject}"
    if not isinstance(table, dict):
        raise InvalidArgumentError(f"{where} must be a table")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise InvalidArgumentError(
            f"{where} has unknown key(s) {', '.join(unknown)}; the keys are {', '.join(_KEYS)}"
        )
    values = {key: _strings(table.get(key, []), f"{where}: {key}") for key in _KEYS}
    codes = [c.upper() for c in values["ignore"]]
    bad = [c for c in codes if c not in RULES_BY_CODE]
    if bad:
        raise InvalidArgumentError(
            f"{where}: ignore names unknown rule code(s) {', '.join(bad)}; "
            f"the codes are {', '.join(sorted(RULES_BY_CODE))}"
        )
    return LintConfig(
        ignore=frozenset(codes),
        allow=tuple(values["allow"]),
        exclude=tuple(values["exclude"]),
        source=pyproject,
    )


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidArgumentError(f"{what} must be a list of non-empty strings, got {value!r}")
    return list(value)
