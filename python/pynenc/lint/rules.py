"""The lint rules: what each code flags, and the `wf` operation that replaces it.

A rule matches qualified names (after import aliases are resolved): a pattern `a.b` matches the
name `a.b` itself and every attribute below it (`a.b.c`); a pattern ending in `.*` matches only
what is below it. Method names (`read_text`) match a call on any receiver, because the linter
never knows a value's type.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BLOCKING_CALL",
    "RULES",
    "RULES_BY_CODE",
    "SET_ITERATION",
    "SYNTAX_ERROR",
    "Rule",
    "match_call",
    "match_method",
    "match_reference",
]


@dataclass(frozen=True)
class Rule:
    """One lint rule.

    Attributes:
        code: the stable code (`PNR001`), used by `# pynenc: ignore[CODE]` and `ignore = [...]`.
        name: a short slug for people.
        message: what the flagged call does, in a few words.
        fix: the `wf` operation (or pattern) that replaces it.
        names: qualified names this rule flags when called (see the module docstring).
        methods: method names flagged when called on any receiver.
        references: qualified names flagged wherever they are read, called or not.
    """

    code: str
    name: str
    message: str
    fix: str
    names: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    references: tuple[str, ...] = ()


RULES: tuple[Rule, ...] = (
    Rule(
        "PNR001",
        "wall-clock",
        "reads the wall clock, which differs on replay",
        "use `task.wf.utc_now()` (recorded once, the same on replay)",
        names=(
            "time.time",
            "time.time_ns",
            "datetime.datetime.now",
            "datetime.datetime.utcnow",
            "datetime.datetime.today",
            "datetime.date.today",
        ),
    ),
    Rule(
        "PNR002",
        "monotonic-clock",
        "reads a process clock, which differs on replay",
        "measure with `task.wf.utc_now()` differences, or record the reading with "
        "`task.wf.side_effect(name, fn)`",
        names=(
            "time.monotonic",
            "time.monotonic_ns",
            "time.perf_counter",
            "time.perf_counter_ns",
            "time.process_time",
            "time.process_time_ns",
            "time.thread_time",
            "time.thread_time_ns",
        ),
    ),
    Rule(
        "PNR003",
        "sleep",
        "sleeps again on every replay",
        "use `task.wf.sleep(s)` (`await task.wf.sleep_async(s)` in an async task): its "
        "deadline is recorded, so a replay waits only for what is left, and in a worker the "
        "workflow is suspended, holding no worker slot",
        names=("time.sleep", "asyncio.sleep"),
    ),
    Rule(
        "PNR004",
        "random",
        "draws from an unrecorded random generator",
        "use `task.wf.random()`, or `task.wf.rng()` for `randint`, `choice`, `shuffle`, ...",
        names=("random.*", "numpy.random.*"),
    ),
    Rule(
        "PNR005",
        "secret-random",
        "draws operating-system randomness, which differs on replay",
        "record it: `task.wf.side_effect(name, lambda: secrets.token_hex(16))` (the "
        "`wf.random` stream is reproducible, so never use it for secrets)",
        names=("secrets.*", "os.urandom", "os.getrandom"),
    ),
    Rule(
        "PNR006",
        "uuid",
        "makes a new UUID on every run",
        "use `task.wf.uuid()` (a version-4 UUID, the same on replay)",
        names=("uuid.uuid1", "uuid.uuid4"),
    ),
    Rule(
        "PNR007",
        "environment",
        "reads the process environment, which can change between runs",
        "pass the value as a task argument, or record it with "
        '`task.wf.side_effect("env", lambda: os.environ[...])`',
        names=("os.getenv", "os.getenvb"),
        references=("os.environ", "os.environb"),
    ),
    Rule(
        "PNR008",
        "file-read",
        "reads a file, whose content can change between runs",
        "pass the content as a task argument, or record it with "
        "`task.wf.side_effect(name, lambda: path.read_text())`",
        names=("builtins.open", "io.open", "codecs.open", "os.open", "os.read"),
        methods=("read_text", "read_bytes"),
    ),
    Rule(
        "PNR009",
        "network",
        "talks to the network again on every replay",
        "make the call a child task (`task.wf.execute_task`) or record its answer with "
        "`task.wf.side_effect(name, fn)`",
        names=(
            "requests",
            "httpx",
            "urllib.request",
            "urllib3",
            "http.client",
            "socket",
            "aiohttp",
        ),
    ),
    Rule(
        "PNR010",
        "concurrency",
        "runs code in another thread or process, whose timing and order replay cannot repeat",
        "dispatch the work as child tasks with `task.wf.execute_task` and read their `.result`",
        names=(
            "threading.Thread",
            "threading.Timer",
            "_thread.start_new_thread",
            "concurrent.futures",
            "multiprocessing",
            "os.fork",
        ),
    ),
)

SET_ITERATION = Rule(
    "PNR011",
    "set-iteration",
    "iterates over a set, whose order can differ between processes, and records operations "
    "in that order",
    "iterate over `sorted(...)` (or a list) so the operations are recorded in the same order",
)

BLOCKING_CALL = Rule(
    "PNR012",
    "blocking-in-async",
    "blocks the event loop of an async task (it raises BlockingCallError when it runs)",
    "await its async twin: `await task.wf.sleep_async(s)`, `await "
    "task.wf.sleep_until_async(when)`, `await task.wf.wait_signal_async(name)`",
)

SYNTAX_ERROR = Rule(
    "PNR000",
    "syntax-error",
    "the file cannot be parsed, so it was not checked",
    "fix the syntax error",
)

RULES_BY_CODE: dict[str, Rule] = {r.code: r for r in (*RULES, SET_ITERATION, BLOCKING_CALL)}


def _matches(pattern: str, name: str) -> bool:
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return name == pattern or name.startswith(pattern + ".")


def match_call(name: str) -> Rule | None:
    """The rule that flags a call of the qualified `name`, or None."""
    for rule in RULES:
        if any(_matches(p, name) for p in (*rule.names, *rule.references)):
            return rule
    return None


def match_reference(name: str) -> Rule | None:
    """The rule that flags a mere read of the qualified `name` (no call), or None."""
    for rule in RULES:
        if any(_matches(p, name) for p in rule.references):
            return rule
    return None


def match_method(method: str) -> Rule | None:
    """The rule that flags a call of `method` on any receiver, or None."""
    for rule in RULES:
        if method in rule.methods:
            return rule
    return None
