"""Log lines that say which workflow and invocation they concern.

While an invocation is run or handled (a worker claiming, running, parking it; a recovery
resuming it; a replay; a lease renewed for it), the ids it concerns are held in a context
variable of the thread running it. `ContextFilter` copies them onto each `logging.LogRecord`
as the attributes `workflow_id`, `invocation_id` and `task_id` (None outside any invocation),
so a format string can name them (`%(workflow_id)s`) and a formatter can ship them.

Every logger of pynenc (`pynenc.worker`, `pynenc.runner`, `pynenc.recovery`, ...) has the
filter, so its records always carry the ids. Records of other loggers (your own
`logging.getLogger("myapp")` inside a task) get them on a handler that has the filter: the one
the `pynenc` command installs, or yours after `install(handler)` (or a `"()":
"pynenc.logging.ContextFilter"` filter in a `logging.config.dictConfig`). Nothing runs for a
record nobody logs: the cost on a task's hot path is one context-variable set per invocation.

```python
import logging
import pynenc.logging

handler = logging.StreamHandler()
handler.setFormatter(pynenc.logging.TextFormatter())  # ... [wf=ID inv=ID] message
pynenc.logging.install(handler)
logging.basicConfig(level=logging.INFO, handlers=[handler])
```
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Iterator
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pynenc.errors import InvalidArgumentError

if TYPE_CHECKING:
    from pynenc.invocation import InvocationRecord

__all__ = [
    "ATTRIBUTES",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "current_ids",
    "install",
]

#: The attributes `ContextFilter` gives a record, in the order of `current_ids()`.
ATTRIBUTES = ("workflow_id", "invocation_id", "task_id")

#: What is being handled: (workflow id, invocation id, task id), any of them None if unknown.
Subject = tuple[str | None, str | None, str | None]

_NOTHING: Subject = (None, None, None)
_SUBJECT: ContextVar[Subject] = ContextVar("pynenc_log_subject", default=_NOTHING)


def current_ids() -> dict[str, str | None]:
    """The ids of the invocation this thread (or async task) is running or handling now, as
    `{"workflow_id": ..., "invocation_id": ..., "task_id": ...}`; each None when there is
    none. For logging libraries other than `logging` (a structlog processor, say)."""
    return dict(zip(ATTRIBUTES, _SUBJECT.get(), strict=True))


class ContextFilter(logging.Filter):
    """Gives each record the attributes `workflow_id`, `invocation_id` and `task_id` of the
    invocation being run or handled when it was logged (None outside any). An attribute the
    record has already (given with `extra=`, or by an earlier filter) is kept. Never drops a
    record."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        if "invocation_id" not in fields or "workflow_id" not in fields or "task_id" not in fields:
            workflow_id, invocation_id, task_id = _SUBJECT.get()
            fields.setdefault("workflow_id", workflow_id)
            fields.setdefault("invocation_id", invocation_id)
            fields.setdefault("task_id", task_id)
        return True


_FILTER = ContextFilter()


def install(handler: logging.Handler | None = None) -> None:
    """Add a `ContextFilter` to `handler`, or, when None, to every handler of the root logger,
    so that every record they emit (of any logger, yours too) carries the ids. Adding it
    twice changes nothing.

    Raises:
        InvalidArgumentError: `handler` is not a `logging.Handler`, or it is None and the
            root logger has no handler yet (call `logging.basicConfig()` first).
    """
    if handler is None:
        handlers = list(logging.getLogger().handlers)
        if not handlers:
            raise InvalidArgumentError(
                "pynenc.logging.install(): the root logger has no handler yet; call "
                "logging.basicConfig() first, or pass the handler to install on"
            )
    elif isinstance(handler, logging.Handler):
        handlers = [handler]
    else:
        raise InvalidArgumentError(
            f"pynenc.logging.install() takes a logging.Handler (or None), got {handler!r}"
        )
    for each in handlers:
        if not any(isinstance(f, ContextFilter) for f in each.filters):
            each.addFilter(_FILTER)


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER [wf=ID inv=ID] MESSAGE`, the ids left out when the record has none;
    an exception's traceback follows on the next lines, as `logging.Formatter` writes it."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(pynenc_ids)s%(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.pynenc_ids = _compact(record)
        return super().formatMessage(record)


def _compact(record: logging.LogRecord) -> str:
    parts = []
    workflow_id = getattr(record, "workflow_id", None)
    invocation_id = getattr(record, "invocation_id", None)
    if workflow_id is not None:
        parts.append(f"wf={workflow_id}")
    if invocation_id is not None:
        parts.append(f"inv={invocation_id}")
    return f"[{' '.join(parts)}] " if parts else ""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, with the keys `time` (ISO 8601, UTC, to the
    millisecond), `level`, `logger`, `message`, `workflow_id`, `invocation_id`, `task` (each
    of the three null when the record has none) and `exception` (the traceback text of an
    exception logged with it, and the stack of `stack_info`, else null)."""

    def format(self, record: logging.LogRecord) -> str:
        exception = None
        if record.exc_info:
            exception = self.formatException(record.exc_info)
        elif record.exc_text:
            exception = record.exc_text
        if record.stack_info:
            stack = self.formatStack(record.stack_info)
            exception = stack if exception is None else f"{exception}\n{stack}"
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "workflow_id": getattr(record, "workflow_id", None),
            "invocation_id": getattr(record, "invocation_id", None),
            "task": getattr(record, "task_id", None),
            "exception": exception,
        }
        return json.dumps(line, ensure_ascii=False, default=str)


#: The formatters of `pynenc --log-format`.
FORMATS: dict[str, type[logging.Formatter]] = {"text": TextFormatter, "json": JsonFormatter}


# -- for pynenc's own modules ----------------------------------------------------------------


def logger(name: str) -> logging.Logger:
    """The logger `name` of pynenc, with the filter: its records always carry the ids."""
    log = logging.getLogger(name)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log


def subject_of(record: InvocationRecord | None, invocation_id: bytes | None = None) -> Subject:
    """The ids of `record`; of `invocation_id` alone when there is no record."""
    if record is not None:
        return (record.workflow.workflow_id, record.id_str, record.task_id)
    return _NOTHING if invocation_id is None else subject_of_id(invocation_id)


def subject_of_id(invocation_id: bytes) -> Subject:
    """The id of an invocation whose record is not read (yet)."""
    return (None, str(uuid.UUID(bytes=invocation_id)), None)


def extra(subject: Subject) -> dict[str, str | None]:
    """`extra=` for a line about `subject` rather than what the thread is handling."""
    return dict(zip(ATTRIBUTES, subject, strict=True))


def current() -> Subject:
    return _SUBJECT.get()


def enter(subject: Subject) -> Token[Subject]:
    """Lines logged in this thread from now on concern `subject`, until `leave(token)`
    (which also undoes every `enter` made after this one)."""
    return _SUBJECT.set(subject)


def leave(token: Token[Subject]) -> None:
    _SUBJECT.reset(token)


@contextlib.contextmanager
def handling(subject: Subject) -> Iterator[None]:
    """Lines logged in this thread meanwhile concern `subject`."""
    token = enter(subject)
    try:
        yield
    finally:
        leave(token)
