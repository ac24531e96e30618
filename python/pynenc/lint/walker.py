"""The call-graph walk: from every task through the project functions it reaches.

Each function's body is read once (memoized); the walk from a task is breadth-first, so each
flagged use is reported with the shortest chain of calls that reaches it, and a cycle
(`a` calls `b` calls `a`) ends the walk instead of repeating it. A use is reported once, at
its own line, with the chain from the first task (in file order) that reaches it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from pynenc.lint.body import BodyInfo, Site, is_allowed, read_body
from pynenc.lint.modules import ALL_CODES, Function, Module, Project
from pynenc.lint.rules import SET_ITERATION

__all__ = ["Finding", "Walker"]


@dataclass(frozen=True)
class Finding:
    """One flagged use, where it is and how a task reaches it.

    Attributes:
        path: the file.
        line: 1-based line.
        column: 1-based column.
        code: the rule's code (`PNR001`).
        rule: the rule's short name (`wall-clock`).
        message: what the use does, naming it as written.
        fix: the `wf` replacement.
        call: the use, resolved (`datetime.datetime.now`, `.read_text`, `set iteration`).
        chain: the task, then each project function called on the way to the use.
    """

    path: Path
    line: int
    column: int
    code: str
    rule: str
    message: str
    fix: str
    call: str
    chain: tuple[str, ...]


class Walker:
    """Walks the project's call graph from its tasks, honouring ignores and the allow-list."""

    def __init__(self, project: Project, ignored: frozenset[str], allowed: tuple[str, ...]) -> None:
        self.project = project
        self.ignored = ignored
        self.allowed = allowed
        self._bodies: dict[str, BodyInfo] = {}
        self._records: dict[str, bool] = {}

    def body(self, function: Function) -> BodyInfo:
        """The memoized reading of one function's own body."""
        found = self._bodies.get(function.key)
        if found is None:
            found = read_body(self.project, function, self.allowed)
            self._bodies[function.key] = found
        return found

    def records(self, function: Function) -> bool:
        """The function, or a project function it reaches, records a `wf` operation."""
        found = self._records.get(function.key)
        if found is not None:
            return found
        seen = {function.key}
        queue = deque([function])
        result = False
        while queue and not result:
            current = queue.popleft()
            info = self.body(current)
            result = info.records or self._records.get(current.key, False)
            for edge in info.edges:
                if edge.target.key not in seen:
                    seen.add(edge.target.key)
                    queue.append(edge.target)
        self._records[function.key] = result
        return result

    def sites(self, function: Function) -> list[Site]:
        """The function's own flagged uses, set loops that feed recorded operations included."""
        info = self.body(function)
        found = list(info.sites)
        for loop in info.set_loops:
            if loop.records or any(self.records(t) for t in loop.edges):
                found.append(
                    Site(SET_ITERATION, loop.line, loop.column, loop.line, loop.written, "set")
                )
        return found

    def findings(self) -> list[Finding]:
        """Every flagged use reached from a task, in file, line and column order."""
        reported: dict[tuple[Path, int, int, str], Finding] = {}
        for task in self.project.tasks():
            if is_allowed(task.key, self.allowed):
                continue
            start: tuple[Function, tuple[str, ...], frozenset[str]] = (
                task,
                (task.key,),
                frozenset(),
            )
            queue = deque([start])
            visited = {(task.key, frozenset[str]())}
            while queue:
                function, chain, suppressed = queue.popleft()
                for site in self.sites(function):
                    code = site.rule.code
                    where = (function.module.path, site.line, site.column, code)
                    if where in reported or code in suppressed or code in self.ignored:
                        continue
                    if _ignored(function.module, site.line, site.end_line, code):
                        continue
                    reported[where] = _finding(function.module, site, chain)
                for edge in self.body(function).edges:
                    codes = _comment_codes(function.module, edge.line, edge.end_line)
                    if codes is ALL_CODES:
                        continue  # `# pynenc: ignore` on a call: nothing below it is read
                    key = (edge.target.key, suppressed | codes)
                    if key not in visited:
                        visited.add(key)
                        queue.append((edge.target, (*chain, edge.target.key), key[1]))
        return sorted(reported.values(), key=lambda f: (str(f.path), f.line, f.column, f.code))


def _comment_codes(module: Module, line: int, end_line: int) -> frozenset[str]:
    codes: set[str] = set()
    for number in range(line, end_line + 1):
        found = module.ignores.get(number)
        if found is ALL_CODES or (found is not None and "*" in found):
            return ALL_CODES
        if found is not None:
            codes |= found
    return frozenset(codes)


def _ignored(module: Module, line: int, end_line: int, code: str) -> bool:
    codes = _comment_codes(module, line, end_line)
    return codes is ALL_CODES or code in codes


def _finding(module: Module, site: Site, chain: tuple[str, ...]) -> Finding:
    rule = site.rule
    if site.resolved in (site.written.removesuffix("()"), "set") or site.resolved[:1] == ".":
        what = f"`{site.written}`"
    else:
        what = f"`{site.written}` ({site.resolved})"
    return Finding(
        path=module.path,
        line=site.line,
        column=site.column,
        code=rule.code,
        rule=rule.name,
        message=f"{what} {rule.message}",
        fix=rule.fix,
        call=site.resolved if site.resolved != "set" else "set iteration",
        chain=chain,
    )
