"""`pynenc lint`: find code in tasks that would break deterministic replay, without running it.

```python
from pynenc.lint import lint_paths

report = lint_paths(["myproject/"])
for finding in report.findings:
    print(finding.path, finding.line, finding.code, finding.message, finding.chain)
```

Files are parsed with `ast`; user code is never imported. The rules are in
`pynenc.lint.rules` and documented, each with an example and its fix, in docs/determinism.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pynenc.errors import InvalidArgumentError
from pynenc.lint.config import LintConfig, find_pyproject, load_config
from pynenc.lint.modules import ParseFailure, Project, python_files
from pynenc.lint.rules import BLOCKING_CALL, RULES, SET_ITERATION, Rule
from pynenc.lint.walker import Finding, Walker

__all__ = [
    "BLOCKING_CALL",
    "RULES",
    "SET_ITERATION",
    "Finding",
    "LintConfig",
    "LintReport",
    "ParseFailure",
    "Rule",
    "lint_paths",
]


@dataclass(frozen=True)
class LintReport:
    """What one run of the linter found.

    Attributes:
        findings: every flagged use, in file and line order.
        failures: files that could not be parsed (and so were not checked).
        files: how many files were read.
        config: the settings used.
    """

    findings: tuple[Finding, ...]
    failures: tuple[ParseFailure, ...]
    files: int
    config: LintConfig


def lint_paths(paths: Iterable[str | Path], config: LintConfig | None = None) -> LintReport:
    """Lint the Python files under `paths` (directories are searched recursively).

    Args:
        paths: files and directories; calls are followed across all of them.
        config: the settings; None reads `[tool.pynenc.lint]` from the nearest
            `pyproject.toml` above the paths.

    Raises:
        InvalidArgumentError: a path does not exist, or the settings are invalid.
    """
    given = [Path(p) for p in paths]
    if not given:
        raise InvalidArgumentError("no path to lint: name at least one file or directory")
    missing = [str(p) for p in given if not p.exists()]
    if missing:
        raise InvalidArgumentError(f"no such file or directory: {', '.join(missing)}")
    if config is None:
        config = load_config(find_pyproject(given))
    project = Project()
    files = 0
    seen: set[Path] = set()
    for path in python_files(given, config.exclude):
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        files += 1
        project.add_file(path)
    walker = Walker(project, config.ignore, config.allow)
    return LintReport(tuple(walker.findings()), tuple(project.failures), files, config)
