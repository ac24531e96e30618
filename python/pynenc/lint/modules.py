"""The project as the linter sees it: parsed modules, their names and what each name binds.

Nothing here imports user code. Every file is read and parsed with `ast`; imports, definitions
and simple aliases (`now = time.time`) are collected into scopes, so a name used in a function
can be resolved to a qualified name (`time.time`) or to one of the project's own functions.
"""

from __future__ import annotations

import ast
import builtins
import io
import re
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ALL_CODES",
    "Function",
    "Module",
    "ParseFailure",
    "Project",
    "Scope",
    "dotted",
    "is_task",
]

#: Directories never searched for modules (environments, caches, build output).
SKIP_DIRS = frozenset(
    {".git", ".hg", ".venv", "venv", "__pycache__", "node_modules", "build", "dist", ".tox"}
)

#: An ignore comment that names no code suppresses every rule on its line.
ALL_CODES: frozenset[str] = frozenset({"*"})

_IGNORE = re.compile(r"#\s*pynenc:\s*ignore(?:\[([^\]]*)\])?")
_BUILTINS = frozenset(dir(builtins))

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class Scope:
    """The names one module or function binds, looked up innermost first."""

    parent: Scope | None
    aliases: dict[str, str] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    classes: dict[str, dict[str, Function]] = field(default_factory=dict)
    shadowed: set[str] = field(default_factory=set)


@dataclass
class Function:
    """A function of the project, with the scope its body's names resolve in."""

    key: str
    module: Module
    node: FunctionNode
    scope: Scope
    is_task: bool
    methods: dict[str, Function] | None = None
    self_name: str | None = None


@dataclass
class Module:
    """One parsed file of the project."""

    name: str
    path: Path
    tree: ast.Module
    is_package: bool
    ignores: dict[int, frozenset[str]]
    walrus: bool = True
    scope: Scope = field(default_factory=lambda: Scope(None))


@dataclass(frozen=True)
class ParseFailure:
    """A file that could not be read or parsed: it was not checked."""

    path: Path
    line: int
    column: int
    message: str


def dotted(node: ast.expr) -> list[str] | None:
    """`a.b.c` as `["a", "b", "c"]`; None when the chain does not start at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def is_task(node: FunctionNode) -> bool:
    """Decorated `@X.task` or `@X.task(...)`, whatever `X` is."""
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "task":
            return True
    return False


def module_name(path: Path) -> tuple[str, bool]:
    """The dotted name a file is imported under (its package chain), and whether it is one."""
    is_package = path.stem == "__init__"
    parts = [] if is_package else [path.stem]
    directory = path.parent
    while (directory / "__init__.py").is_file():
        parts.insert(0, directory.name)
        directory = directory.parent
    return ".".join(parts) or path.parent.name, is_package


def python_files(paths: Iterable[Path], excluded: Iterable[str] = ()) -> Iterator[Path]:
    """Every `.py` file under the paths (a file given by name is taken as Python)."""
    patterns = tuple(excluded)
    for path in paths:
        if path.is_file():
            yield path
            continue
        for found in sorted(path.rglob("*.py")):
            relative = found.relative_to(path)
            if any(part in SKIP_DIRS or part.startswith(".") for part in relative.parts[:-1]):
                continue
            if any(found.match(p) or relative.match(p) for p in patterns):
                continue
            yield found


def ignore_comments(source: str) -> dict[int, frozenset[str]]:
    """Line -> codes its `# pynenc: ignore[...]` comment suppresses (`ALL_CODES` for all)."""
    found: dict[int, frozenset[str]] = {}
    if "pynenc" not in source:
        return found  # tokenizing is most of a file's parse time; skip it when it cannot match
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.COMMENT:
                continue
            match = _IGNORE.search(token.string)
            if match is None:
                continue
            codes = match.group(1)
            found[token.start[0]] = (
                frozenset(c.strip().upper() for c in codes.split(",") if c.strip())
                if codes is not None
                else ALL_CODES
            )
    except (tokenize.TokenError, SyntaxError):
        pass  # ast.parse already accepted the file; a tokenizer quirk only loses comments
    return found


class Project:
    """The modules of the paths given to the linter, and their functions."""

    def __init__(self) -> None:
        self.modules: list[Module] = []
        self.by_name: dict[str, Module] = {}
        self.functions: list[Function] = []
        self.failures: list[ParseFailure] = []

    def add_file(self, path: Path) -> None:
        """Parse one file; a failure is kept in `failures`, never raised."""
        try:
            source = path.read_bytes().decode("utf-8")
            tree = ast.parse(source, filename=str(path))
        except SyntaxError as exc:
            self.failures.append(
                ParseFailure(path, exc.lineno or 1, exc.offset or 1, f"SyntaxError: {exc.msg}")
            )
            return
        except (UnicodeDecodeError, ValueError, OSError) as exc:
            self.failures.append(ParseFailure(path, 1, 1, f"{type(exc).__name__}: {exc}"))
            return
        name, is_package = module_name(path)
        module = Module(name, path, tree, is_package, ignore_comments(source), ":=" in source)
        self.modules.append(module)
        self.by_name.setdefault(name, module)
        self._bind(module, module.scope, tree.body, name)

    def tasks(self) -> list[Function]:
        """Every task of the project, in file and line order."""
        return [f for f in self.functions if f.is_task]

    # -- building scopes ------------------------------------------------------------------

    def _bind(self, module: Module, scope: Scope, body: list[ast.stmt], prefix: str) -> None:
        """Collect what the statements bind, then the scopes of the functions they define."""
        defined: list[Function] = []
        for node in _bindings(body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        scope.aliases[alias.asname] = alias.name
                    else:
                        head = alias.name.split(".")[0]
                        scope.aliases[head] = head
            elif isinstance(node, ast.ImportFrom):
                base = self._import_base(module, node)
                for alias in node.names:
                    if alias.name != "*":
                        target = f"{base}.{alias.name}" if base else alias.name
                        scope.aliases[alias.asname or alias.name] = target
            elif isinstance(node, FunctionNode):
                function = self._function(module, scope, node, f"{prefix}.{node.name}")
                scope.functions[node.name] = function
                defined.append(function)
            elif isinstance(node, ast.ClassDef):
                methods: dict[str, Function] = {}
                scope.classes[node.name] = methods
                for item in node.body:
                    if isinstance(item, FunctionNode):
                        key = f"{prefix}.{node.name}.{item.name}"
                        methods[item.name] = self._function(module, scope, item, key, methods)
                        defined.append(methods[item.name])
            elif isinstance(node, ast.Assign | ast.AnnAssign) and scope.parent is None:
                self._module_assignment(scope, node)
            else:
                scope.shadowed.update(_target_names(node, module.walrus))
        for function in defined:
            self._bind(module, function.scope, function.node.body, f"{function.key}.<locals>")

    def _function(
        self,
        module: Module,
        parent: Scope,
        node: FunctionNode,
        key: str,
        methods: dict[str, Function] | None = None,
    ) -> Function:
        scope = Scope(parent)
        arguments = node.args
        params = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        params += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
        scope.shadowed.update(a.arg for a in params)
        self_name = params[0].arg if methods is not None and params else None
        function = Function(key, module, node, scope, is_task(node), methods, self_name)
        self.functions.append(function)
        return function

    def _module_assignment(self, scope: Scope, node: ast.Assign | ast.AnnAssign) -> None:
        """`now = time.time` at module level makes `now` an alias; anything else shadows."""
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        chain = dotted(node.value) if node.value is not None else None
        resolved = None
        if chain is not None and chain[0] in scope.aliases:
            resolved = ".".join([scope.aliases[chain[0]], *chain[1:]])
        for target in targets:
            if isinstance(target, ast.Name) and resolved is not None:
                scope.aliases[target.id] = resolved
            else:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        scope.shadowed.add(sub.id)

    @staticmethod
    def _import_base(module: Module, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = module.name.split(".")
        keep = len(parts) - node.level + (1 if module.is_package else 0)
        base = ".".join(parts[: max(keep, 0)])
        if node.module:
            return f"{base}.{node.module}" if base else node.module
        return base

    # -- looking names up -----------------------------------------------------------------

    def find_module(self, name: str) -> Module | None:
        """The project module imported as `name` (or, failing that, the one ending so)."""
        found = self.by_name.get(name)
        if found is not None:
            return found
        tails = [m for n, m in self.by_name.items() if n.endswith("." + name)]
        return tails[0] if len(tails) == 1 else None

    def lookup(self, qualified: str, depth: int = 0) -> Function | None:
        """The project function a qualified name denotes, following re-exports."""
        parts = qualified.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module = self.find_module(".".join(parts[:cut]))
            if module is None:
                continue
            rest = parts[cut:]
            scope = module.scope
            head = rest[0]
            if head in scope.functions and len(rest) == 1:
                return scope.functions[head]
            if head in scope.classes and len(rest) == 2:
                return scope.classes[head].get(rest[1])
            if head in scope.aliases and depth < 8:
                return self.lookup(".".join([scope.aliases[head], *rest[1:]]), depth + 1)
            return None
        return None


def _bindings(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a body that bind names, nested blocks included, not nested scopes."""
    for node in body:
        yield node
        if isinstance(node, FunctionNode | ast.ClassDef):
            continue
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, name, None)
            if isinstance(children, list):
                nested = [c for c in children if isinstance(c, ast.stmt)]
                nested += [s for c in children if not isinstance(c, ast.stmt) for s in c.body]
                yield from _bindings(nested)


def _target_names(node: ast.stmt, walrus: bool) -> set[str]:
    """Names a statement itself assigns (loop variables, `with ... as`, `except ... as`, walrus).

    Its nested statements are `_bindings`' to visit, and nested scopes bind nothing here.
    `walrus` says whether the file has a `:=` anywhere; without one only targets are read.
    """
    names: set[str] = set()
    if isinstance(node, ast.Try | ast.TryStar):
        names.update(h.name for h in node.handlers if h.name)
    if walrus:
        roots: list[ast.AST] = [
            value
            for _, field_value in ast.iter_fields(node)
            for value in (field_value if isinstance(field_value, list) else [field_value])
            if isinstance(value, ast.AST) and not isinstance(value, ast.stmt | ast.excepthandler)
        ]
    elif isinstance(node, ast.Assign):
        roots = list(node.targets)
    elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.For | ast.AsyncFor):
        roots = [node.target]
    elif isinstance(node, ast.With | ast.AsyncWith):
        roots = [i.optional_vars for i in node.items if i.optional_vars is not None]
    else:
        roots = []
    pending = roots
    while pending:
        sub = pending.pop()
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.add(sub.id)
        elif not isinstance(sub, ast.Lambda | ast.match_case):
            pending.extend(ast.iter_child_nodes(sub))
    return names


def builtin_name(name: str) -> str | None:
    """`builtins.open` for `open`, when `name` is a builtin."""
    return f"builtins.{name}" if name in _BUILTINS else None
