"""What one function's own body does: flagged uses, project calls, recorded operations.

The body is read once (the walker memoizes it). Nested functions are not read as part of the
body: they are project functions of their own, followed when the body refers to them. A
function handed to `wf.side_effect` (a lambda, or a name) is never read or followed from
there: what it does is recorded.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

from pynenc.lint.modules import Function, Project, Scope, builtin_name, dotted
from pynenc.lint.rules import BLOCKING_CALL, Rule, match_call, match_method, match_reference

__all__ = ["BodyInfo", "Edge", "SetLoop", "Site", "read_body"]

#: `wf` methods that record an operation (by position) in the journal.
RECORDED = frozenset(
    {
        "random",
        "uuid",
        "utc_now",
        "rng",
        "side_effect",
        "execute_task",
        "execute_task_async",
        "set_data",
        "get_data",
        "patched",
        "deprecate_patch",
        "sleep",
        "sleep_until",
        "wait_signal",
        "sleep_async",
        "sleep_until_async",
        "wait_signal_async",
        "set_event",
        "_deterministic_operation",
    }
)
#: `wf` methods that block their thread, and the async twin an async task awaits instead.
BLOCKING = {
    "sleep": "sleep_async",
    "sleep_until": "sleep_until_async",
    "wait_signal": "wait_signal_async",
}
#: Methods whose function argument runs once and is recorded.
SIDE_EFFECTS = frozenset({"side_effect", "_deterministic_operation"})
_SET_BUILTINS = frozenset({"builtins.set", "builtins.frozenset"})
#: Calls that keep their argument's order: `list(set(...))` is still in set order.
_ORDER_KEEPING = frozenset(
    {"builtins.list", "builtins.tuple", "builtins.iter", "builtins.enumerate", "builtins.reversed"}
)
_SET_METHODS = frozenset({"union", "intersection", "difference", "symmetric_difference", "copy"})
_SET_OPERATORS = (ast.BitOr, ast.BitAnd, ast.Sub, ast.BitXor)


@dataclass(frozen=True)
class Site:
    """A flagged use in a function's own body."""

    rule: Rule
    line: int
    column: int
    end_line: int
    written: str
    resolved: str


@dataclass(frozen=True)
class Edge:
    """A reference from a body to another project function (a call, or a callable passed on)."""

    target: Function
    line: int
    end_line: int


@dataclass
class SetLoop:
    """A loop (or comprehension) over a set, with what its body calls and records."""

    line: int
    column: int
    written: str
    records: bool = False
    edges: list[Function] = field(default_factory=list)


@dataclass
class BodyInfo:
    """Everything the walker needs about one function's own body."""

    sites: list[Site] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    records: bool = False
    set_loops: list[SetLoop] = field(default_factory=list)


def read_body(project: Project, function: Function, allowed: tuple[str, ...]) -> BodyInfo:
    """Read one function's body (see the module docstring)."""
    reader = _BodyReader(project, function, allowed)
    for statement in function.node.body:
        reader.visit(statement)
    return reader.info


def is_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    """`name` is on the allow-list, or below an entry of it (`mymod` allows `mymod.f`)."""
    return any(name == a or name.startswith(a + ".") for a in allowed)


class _BodyReader(ast.NodeVisitor):
    def __init__(self, project: Project, function: Function, allowed: tuple[str, ...]) -> None:
        self.project = project
        self.function = function
        self.allowed = allowed
        self.info = BodyInfo()
        self.loops: list[SetLoop] = []
        self.is_async = isinstance(function.node, ast.AsyncFunctionDef)
        self._set_names: frozenset[str] | None = None

    # -- resolution -----------------------------------------------------------------------

    def resolve(self, chain: list[str]) -> Function | str | None:
        """A project function, a qualified name, or None (a local value: unknown)."""
        head, rest = chain[0], chain[1:]
        fn = self.function
        if fn.methods is not None and head == fn.self_name:
            return fn.methods.get(rest[0]) if len(rest) == 1 else None
        scope: Scope | None = fn.scope
        while scope is not None:
            if head in scope.functions:
                return scope.functions[head] if not rest else None
            if head in scope.classes:
                return scope.classes[head].get(rest[0]) if len(rest) == 1 else None
            if head in scope.aliases:
                qualified = ".".join([scope.aliases[head], *rest])
                return self.project.lookup(qualified) or qualified
            if head in scope.shadowed:
                return None
            scope = scope.parent
        builtin = builtin_name(head)
        return ".".join([builtin, *rest]) if builtin else None

    # -- what is recorded -----------------------------------------------------------------

    def flag(self, rule: Rule | None, node: ast.expr, written: str, resolved: str) -> None:
        if rule is None or is_allowed(resolved, self.allowed):
            return
        end = node.end_lineno or node.lineno
        self.info.sites.append(Site(rule, node.lineno, node.col_offset + 1, end, written, resolved))

    def refer(self, target: Function, node: ast.expr, called: bool) -> None:
        if target.is_task:
            if called:
                self.mark_recorded()  # a task called from a task is a recorded child call
            return
        if is_allowed(target.key, self.allowed):
            return
        self.info.edges.append(Edge(target, node.lineno, node.end_lineno or node.lineno))
        for loop in self.loops:
            loop.edges.append(target)

    def mark_recorded(self) -> None:
        self.info.records = True
        for loop in self.loops:
            loop.records = True

    # -- visitors -------------------------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        pass  # a nested function is read when referred to, as a function of its own

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        pass

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        pass

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.chain(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if dotted(node) is None:
            self.generic_visit(node)
        elif isinstance(node.ctx, ast.Load):
            self.chain(node)

    def chain(self, node: ast.Name | ast.Attribute) -> None:
        """A name or dotted chain that is read but not called here."""
        parts = dotted(node)
        assert parts is not None
        target = self.resolve(parts)
        if isinstance(target, Function):
            self.refer(target, node, called=False)
        elif target is not None:
            self.flag(match_reference(target), node, ".".join(parts), target)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        parts = dotted(func)
        target = self.resolve(parts) if parts is not None else None
        # The call's own position is its function's start; its lines run to the `)`.
        if isinstance(target, Function):
            self.refer(target, node, called=True)
        else:
            rule = match_call(target) if target is not None else None
            written = f"{ast.unparse(func)}()"
            if rule is not None:
                self.flag(rule, node, written, target or written)
            elif isinstance(func, ast.Attribute):
                self.flag(match_method(func.attr), node, written, f".{func.attr}")
        if isinstance(func, ast.Attribute):
            dispatch = func.attr in ("execute_task", "execute_task_async")
            if func.attr in RECORDED and (dispatch or _names_wf(func.value)):
                self.mark_recorded()
            if func.attr in BLOCKING and self.is_async and _names_wf(func.value):
                self.flag(BLOCKING_CALL, node, f"{ast.unparse(func)}()", f"wf.{func.attr}")
            if parts is None:
                self.visit(func.value)
        if isinstance(func, ast.Attribute) and func.attr in SIDE_EFFECTS:
            self.side_effect_arguments(node)
            return
        for argument in node.args:
            self.visit(argument)
        for keyword in node.keywords:
            self.visit(keyword.value)

    def side_effect_arguments(self, node: ast.Call) -> None:
        """`wf.side_effect(name, fn)`: `name` is read as usual, `fn` is recorded."""
        fn: ast.expr | None = node.args[1] if len(node.args) > 1 else None
        rest = [a for i, a in enumerate(node.args) if i != 1]
        for keyword in node.keywords:
            if keyword.arg == "fn":
                fn = keyword.value
            else:
                rest.append(keyword.value)
        for argument in rest:
            self.visit(argument)
        if fn is None or isinstance(fn, ast.Lambda) or dotted(fn) is not None:
            return
        if isinstance(fn, ast.Call) and fn.args and dotted(fn.args[0]) is not None:
            # functools.partial(f, ...): f is recorded, the bound arguments are computed here
            for argument in [*fn.args[1:], *(k.value for k in fn.keywords)]:
                self.visit(argument)
            return
        self.visit(fn)

    def visit_For(self, node: ast.For) -> None:
        self.loop_over(node.iter, node, [*node.body], node.target)
        for statement in node.orelse:
            self.visit(statement)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self.loop_over(node.iter, node, [*node.body], node.target)
        for statement in node.orelse:
            self.visit(statement)

    def loop_over(
        self, iterable: ast.expr, at: ast.AST, body: list[ast.AST], target: ast.expr
    ) -> None:
        self.visit(iterable)
        self.visit(target)
        loop = None
        if self.is_set(iterable):
            loop = SetLoop(iterable.lineno, iterable.col_offset + 1, ast.unparse(iterable))
            self.info.set_loops.append(loop)
            self.loops.append(loop)
        for item in body:
            self.visit(item)
        if loop is not None:
            self.loops.pop()

    def visit_comprehension_node(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        elements: list[ast.AST] = (
            [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        )
        self._generators(node.generators, elements)

    def _generators(self, generators: list[ast.comprehension], elements: list[ast.AST]) -> None:
        if not generators:
            for element in elements:
                self.visit(element)
            return
        first, others = generators[0], generators[1:]
        self.visit(first.iter)
        loop = None
        if self.is_set(first.iter):
            it = first.iter
            loop = SetLoop(it.lineno, it.col_offset + 1, ast.unparse(it))
            self.info.set_loops.append(loop)
            self.loops.append(loop)
        for condition in first.ifs:
            self.visit(condition)
        self._generators(others, elements)
        if loop is not None:
            self.loops.pop()

    visit_ListComp = visit_comprehension_node
    visit_SetComp = visit_comprehension_node
    visit_GeneratorExp = visit_comprehension_node
    visit_DictComp = visit_comprehension_node

    def is_set(self, node: ast.expr) -> bool:
        """An expression whose iteration order is a set's."""
        if isinstance(node, ast.Set | ast.SetComp):
            return True
        if isinstance(node, ast.Name):
            if self._set_names is None:  # most bodies never loop over a bare name
                self._set_names = _set_variables(self.function.node)
            return node.id in self._set_names
        if isinstance(node, ast.BinOp) and isinstance(node.op, _SET_OPERATORS):
            return self.is_set(node.left) or self.is_set(node.right)
        if isinstance(node, ast.Call):
            func = node.func
            parts = dotted(func)
            target = self.resolve(parts) if parts is not None else None
            if not isinstance(target, str):
                return isinstance(func, ast.Attribute) and (
                    func.attr in _SET_METHODS and self.is_set(func.value)
                )
            if target in _SET_BUILTINS:
                return True
            if target in _ORDER_KEEPING and node.args:
                return self.is_set(node.args[0])
            if isinstance(func, ast.Attribute) and func.attr in _SET_METHODS:
                return self.is_set(func.value)
        return False


def _names_wf(node: ast.expr) -> bool:
    """The receiver is a workflow context: `task.wf`, `wf`, `task.wf.deterministic`."""
    parts = dotted(node)
    return parts is not None and "wf" in parts


def _set_variables(node: ast.FunctionDef | ast.AsyncFunctionDef) -> frozenset[str]:
    """Local names only ever assigned a set (`seen = set()`, `tags = {a, b}`)."""
    sets: set[str] = set()
    others: set[str] = set()
    for sub in _own_nodes(node):
        if isinstance(sub, ast.Assign) and len(sub.targets) == 1:
            target = sub.targets[0]
            if isinstance(target, ast.Name):
                is_set = isinstance(sub.value, ast.Set | ast.SetComp) or (
                    isinstance(sub.value, ast.Call)
                    and isinstance(sub.value.func, ast.Name)
                    and sub.value.func.id in ("set", "frozenset")
                )
                (sets if is_set else others).add(target.id)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            others.add(sub.id)
    return frozenset(sets - others)


def _own_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's body, not those of nested functions or classes."""
    pending = list(ast.iter_child_nodes(node))
    while pending:
        sub = pending.pop()
        yield sub
        if isinstance(sub, ast.Assign) and len(sub.targets) == 1:
            if isinstance(sub.targets[0], ast.Name):
                pending.append(sub.value)  # its one target is counted above, not as a store
                continue
        if not isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            pending.extend(ast.iter_child_nodes(sub))
