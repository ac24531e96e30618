"""Tasks: ordinary functions made durable by `@app.task`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, TypeVar

from pynenc import checks
from pynenc._core import RunningContext
from pynenc.errors import InvalidArgumentError, WorkflowMembershipError
from pynenc.registry import definition_site, derive_task_id, is_script, script_module
from pynenc.workflow.context import current_context

if TYPE_CHECKING:
    from pynenc.app import Pynenc
    from pynenc.invocation import Invocation
    from pynenc.workflow.context import WorkflowContext
    from pynenc.workflow.identity import WorkflowIdentity

__all__ = ["Task", "TaskOptions"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Options given to `@app.task(...)`.

    Attributes:
        force_new_workflow: Every call starts a workflow of its own (a child workflow when
            called from inside another task).
        max_retries: How many times a failing call is retried (inline or queued); 0 to
            10,000.
        retry_for: Exception types that trigger a retry (a tuple, or one type); others fail
            at once.
        retry_backoff: Base delay in seconds between retries (doubled each attempt, jittered,
            at most one day); 0 to 86,400.

    Raises:
        InvalidArgumentError: An option has the wrong type or is out of its range.
    """

    force_new_workflow: bool = False
    max_retries: int = 0
    retry_for: tuple[type[BaseException], ...] = (Exception,)
    retry_backoff: float = 0.0

    def __post_init__(self) -> None:
        settle = object.__setattr__  # frozen: each option is stored in its plain type
        settle(
            self, "force_new_workflow", checks.switch("force_new_workflow", self.force_new_workflow)
        )
        settle(
            self,
            "max_retries",
            checks.whole("max_retries", self.max_retries, least=0, most=checks.MAX_COUNT),
        )
        settle(
            self,
            "retry_backoff",
            checks.seconds(
                "retry_backoff", self.retry_backoff, positive=False, most=checks.MAX_WAIT_SECONDS
            ),
        )
        retry_for = self.retry_for
        if isinstance(retry_for, type):
            retry_for = (retry_for,)
            object.__setattr__(self, "retry_for", retry_for)
        if not isinstance(retry_for, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in retry_for
        ):
            raise InvalidArgumentError(
                "retry_for must be an exception class or a tuple of them (e.g. "
                f"retry_for=(TimeoutError, ConnectionError)), got {retry_for!r}"
            )


def _outside(task: Task[..., Any]) -> NoReturn:
    """`task.wf` read while no invocation is running."""
    raise WorkflowMembershipError(
        f"{task.task_id}.wf is only available while a task is running: call "
        f"{task.func.__name__}(...) and use .wf from inside its body"
    )


class Task(Generic[P, R]):
    """A function registered with an app. Calling it runs it durably and returns an
    `Invocation`; inside its body, `task.wf` gives the deterministic workflow operations.
    """

    def __init__(
        self,
        app: Pynenc,
        func: Callable[P, R],
        options: TaskOptions,
        task_id: str | None = None,
    ) -> None:
        self.app = app
        self.func = func
        self.options = options
        #: Its id: the explicit `name=`, else `module.qualname` (see `derive_task_id`).
        self.task_id = derive_task_id(func) if task_id is None else task_id
        #: Why no other process could import it, for a task of a script without an
        #: importable name (`python -c`); None when it can be found.
        self.unimportable: str | None = None
        if is_script(func) and script_module(func) is None:
            self.unimportable = (
                f"task {self.task_id!r} ({definition_site(func)}) is defined in a program "
                "that cannot be imported (python -c, the interactive prompt, or a file on no "
                "sys.path entry under an importable name): no worker or other process can "
                "find it. Move it into a module file (e.g. flow.py, run as python flow.py or "
                "imported), or use execution='inline'"
            )
        #: Whether it is an `async def` function: its coroutine runs on an event loop, and
        #: its body awaits the async operations (`wf.sleep_async`, ...).
        self.is_async = inspect.iscoroutinefunction(func)
        self._signature = inspect.signature(func)
        params = self._signature.parameters.values()
        # Calls of this many positional arguments need no binding to be valid (the hot path).
        self._plain_arity = (
            len(self._signature.parameters)
            if all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
            else -1
        )
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"Task({self.task_id})"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        """Call the task: inside a running task this is a recorded, idempotent child call
        (as `wf.execute_task`); outside any task it starts a new workflow.
        """
        return self.app._call(self, args, kwargs)

    if TYPE_CHECKING:

        @property
        def wf(self) -> WorkflowContext:
            """The workflow operations of the invocation now running (`random()`, `uuid()`,
            `utc_now()`, `execute_task()`, `set_data()`, `get_data()`, `side_effect()`, ...),
            whichever task's `.wf` is read.

            Raises:
                WorkflowMembershipError: No task is running in this thread or context.
            """
    else:
        # The same, as a descriptor of the core: a read runs no Python code, only the context
        # variable's lookup, which CPython caches per thread and context (bindings/context.rs).
        wf = RunningContext(current_context, _outside)

    @property
    def workflow(self) -> WorkflowIdentity:
        """The identity of the workflow of the invocation now running."""
        return self.wf.workflow

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise `TypeError` unless the function accepts these arguments."""
        if kwargs or len(args) != self._plain_arity:
            self.bind_arguments(args, kwargs)

    def bind_arguments(self, args: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Map positional and keyword arguments onto parameter names."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"invalid arguments for task {self.task_id}: {exc}") from None
        bound.apply_defaults()
        return dict(bound.arguments)
