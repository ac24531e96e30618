"""Reading invocation records back: the strict payload decoder, then a check of every field.

A record is the CBOR map `InvocationRecord.encode` writes. Whatever is stored under a key of
the `invocations` table is read through `pynenc.codec.decode` (the tag allow-list, no duplicate
map keys, no value `encode` never writes) and then checked field by field: types, ranges and
lengths, and that its id is the key it is stored under. What fails becomes a
`CorruptEntryError` naming the key, the store and what is wrong, never a `TypeError`,
`AttributeError` or `OverflowError` later on. Readers that walk many records
(`list_invocations`, `recover`, `pynenc status`) report each such record once on the
`pynenc.store` logger and go on with the others (see `Skipped`).
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Collection
from typing import Any, Final

from pynenc import codec
from pynenc import logging as logs
from pynenc._core import format_id
from pynenc.errors import CorruptEntryError, PayloadDecodeError

__all__ = [
    "MAX_COUNT",
    "RECORD_VERSION",
    "RecordError",
    "Skipped",
    "check",
    "corrupt",
    "load",
    "show_key",
]

log = logs.logger("pynenc.store")

#: The version of the record format `InvocationRecord.encode` writes (its `v` field).
RECORD_VERSION: Final = 1
TABLE: Final = "invocations"

#: Largest attempt number, recovery count and miss count a record may hold (the journal of an
#: attempt is keyed by a u32; far beyond any `max_retries` or `max_recoveries`).
MAX_COUNT: Final = 2**31 - 1

_ID_LEN: Final = 16
_UUID_TEXT: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_REQUIRED: Final = frozenset(
    {
        "v",
        "id",
        "wf",
        "args",
        "task",
        "error",
        "owner",
        "parent",
        "result",
        "status",
        "attempt",
        "created",
        "updated",
        "attempts",
    }
)
_ERROR_TEXT_FIELDS: Final = ("type", "module", "message", "traceback")

_shown = reprlib.Repr()
_shown.maxstring = 40
_shown.maxlong = 24
_shown.maxother = 40
_shown.maxlist = _shown.maxdict = 4


class RecordError(Exception):
    """What is wrong with one record (its message), before the key is known to say so."""


def show_key(key: bytes | None) -> str:
    """A key of the invocations table as shown in errors: the UUID of a 16-byte key, else its
    bytes in hex."""
    if key is None:
        return "(of an unknown key)"
    if len(key) == _ID_LEN:
        return format_id(key)
    return f"0x{key[:64].hex()}{'...' if len(key) > 64 else ''} ({len(key)} bytes)"


def corrupt(key: bytes | None, problem: str, store: str | None) -> CorruptEntryError:
    """The error of a malformed record: it names the key, the store and the problem, and
    carries them as `table`, `key`, `path` and `problem` (and `invocation_id`, the key as a
    UUID string, when it is 16 bytes)."""
    where = "" if store is None else f" in {store}"
    shown = show_key(key)
    exc = CorruptEntryError(
        f"invocation record {shown}{where} is malformed: {problem}. Listings, recovery, "
        "status and workers skip it; restore the store from a backup to get it back"
    )
    # Set through vars(): `path` and `invocation_id` may be None here, unlike a damaged
    # journal entry's, and `problem` is this error's own.
    vars(exc).update(
        table=TABLE,
        key=shown,
        path=store,
        problem=problem,
        invocation_id=shown if key is not None and len(key) == _ID_LEN else None,
    )
    return exc


def load(data: bytes) -> Any:
    """The record's value, through the strict payload decoder.

    Raises:
        RecordError: the bytes are not a valid payload.
    """
    try:
        return codec.decode(data, what="the record")
    except PayloadDecodeError as exc:
        raise RecordError(str(exc).removeprefix("cannot decode the record: ")) from None


def _bad(name: str, value: object, want: str) -> RecordError:
    return RecordError(f"its {name!r} field is {_shown.repr(value)}, not {want}")


def _count(d: dict[Any, Any], name: str, *, optional: bool = False) -> None:
    if optional and name not in d:
        return
    value = d[name]
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise _bad(name, value, f"a whole number from 0 to {MAX_COUNT:,}")


def _id(value: object, name: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if type(value) is not bytes or len(value) != _ID_LEN:
        shown = f"{len(value)} bytes" if type(value) is bytes else _shown.repr(value)
        raise RecordError(
            f"its {name!r} field is {shown}, not a {_ID_LEN}-byte id"
            + (" or None" if optional else "")
        )


def _workflow_id(value: object, name: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if type(value) is not str or not _UUID_TEXT.fullmatch(value):
        raise _bad(name, value, "a workflow id (a UUID string)" + (" or None" if optional else ""))


def _time(d: dict[Any, Any], name: str, *, optional: bool = False) -> None:
    if optional and d.get(name) is None:
        return
    value = d[name]
    if type(value) is not float or not math.isfinite(value):
        raise _bad(name, value, "a finite float (seconds since the epoch)")


def _error(value: object) -> None:
    if value is None:
        return
    if type(value) is not dict:
        raise _bad("error", value, "a map or None")
    for name in _ERROR_TEXT_FIELDS:
        if type(value.get(name)) is not str:
            raise _bad(f"error.{name}", value.get(name), "a str")
    args = value.get("args")
    if args is not None and type(args) is not bytes:
        raise _bad("error.args", args, "bytes or None")


def _cancel(d: dict[Any, Any]) -> None:
    """The `cancel` field: absent (records written before cancellation existed, and every
    record not cancelled), or `{"at": time, "wf": workflow id, "reason": str}` exactly when the
    status is cancelled."""
    value = d.get("cancel")
    cancelled = d["status"] == "cancelled"
    if value is None:
        if cancelled:
            raise RecordError("its status is cancelled but it has no 'cancel' field")
        return
    if not cancelled:
        raise RecordError(f"it has a 'cancel' field but its status is {d['status']}")
    if type(value) is not dict:
        raise _bad("cancel", value, "a map")
    at = value.get("at")
    if type(at) is not float or not math.isfinite(at):
        raise _bad("cancel.at", at, "a finite float (seconds since the epoch)")
    _workflow_id(value.get("wf"), "cancel.wf", optional=False)
    if type(value.get("reason")) is not str:
        raise _bad("cancel.reason", value.get("reason"), "a str")


#: Longest summary of one side of a kept divergence, in characters.
MAX_DIVERGENCE_TEXT: Final = 2000


def _divergence(d: dict[Any, Any]) -> None:
    """The `divergence` field: absent (records written before divergences were kept, and every
    record whose last run did not diverge), or `{"at": time, "attempt": count, "position":
    int, "recorded": str, "requested": str}`."""
    value = d.get("divergence")
    if value is None:
        return
    if type(value) is not dict:
        raise _bad("divergence", value, "a map or None")
    at = value.get("at")
    if type(at) is not float or not math.isfinite(at):
        raise _bad("divergence.at", at, "a finite float (seconds since the epoch)")
    for name in ("attempt", "position"):
        number = value.get(name)
        if type(number) is not int or not 0 <= number <= 2**63 - 1:
            raise _bad(f"divergence.{name}", number, "a whole number from 0")
    if value["attempt"] > MAX_COUNT:
        raise _bad("divergence.attempt", value["attempt"], f"a whole number to {MAX_COUNT:,}")
    for name in ("recorded", "requested"):
        text = value.get(name)
        if type(text) is not str or len(text) > MAX_DIVERGENCE_TEXT:
            raise _bad(f"divergence.{name}", text, f"a str of at most {MAX_DIVERGENCE_TEXT:,}")


def _attempts(value: object) -> None:
    if type(value) is not list:
        raise _bad("attempts", value, "a list")
    for index, attempt in enumerate(value):
        if type(attempt) is not dict:
            raise _bad(f"attempts[{index}]", attempt, "a map")
        number, error = attempt.get("attempt"), attempt.get("error")
        if type(number) is not int or not 0 <= number <= MAX_COUNT:
            raise _bad(f"attempts[{index}].attempt", number, f"a whole number to {MAX_COUNT:,}")
        if type(error) is not str:
            raise _bad(f"attempts[{index}].error", error, "a str")
        for name in ("started", "ended"):  # absent in records written before attempts were timed
            try:
                _time(attempt, name, optional=True)
            except RecordError:
                raise _bad(
                    f"attempts[{index}].{name}", attempt[name], "a finite float or None"
                ) from None
        owner = attempt.get("owner")
        if owner is not None and type(owner) is not str:
            raise _bad(f"attempts[{index}].owner", owner, "a str or None")


def check(d: object, key: bytes | None, statuses: Collection[str]) -> dict[str, Any]:
    """Check every field of a decoded record (stored under `key`, when known) and return it.

    Raises:
        RecordError: a field is missing, of the wrong type, out of its range, or the record
            is not the one of `key`.
    """
    if type(d) is not dict:
        raise RecordError(f"it is {_shown.repr(d)}, not a map")
    missing = _REQUIRED - d.keys()
    if missing:
        raise RecordError(f"it has no {', '.join(repr(k) for k in sorted(missing))} field")
    if type(d["v"]) is not int or d["v"] != RECORD_VERSION:
        raise _bad("v", d["v"], f"record version {RECORD_VERSION}")
    _id(d["id"], "id", optional=False)
    if key is not None and d["id"] != key:
        raise RecordError(f"its 'id' field is {format_id(d['id'])}, not the key it is stored under")
    task = d["task"]
    if type(task) is not str or not task:
        raise _bad("task", task, "a task id (a non-empty str)")
    if type(d["args"]) is not bytes:
        raise _bad("args", d["args"], "bytes")
    wf = d["wf"]
    if type(wf) is not list or len(wf) != 3:
        raise _bad("wf", wf, "a list [workflow id, workflow type, parent workflow id]")
    _workflow_id(wf[0], "wf[0]", optional=False)
    if type(wf[1]) is not str or not wf[1]:
        raise _bad("wf[1]", wf[1], "a workflow type (a non-empty str)")
    _workflow_id(wf[2], "wf[2]", optional=True)
    _id(d["parent"], "parent", optional=True)
    status = d["status"]
    if type(status) is not str or status not in statuses:
        raise _bad("status", status, f"one of {', '.join(sorted(statuses))}")
    _count(d, "attempt")
    _count(d, "recoveries", optional=True)
    _count(d, "misses", optional=True)
    owner = d["owner"]
    if owner is not None and type(owner) is not str:
        raise _bad("owner", owner, "a str or None")
    result = d["result"]
    if result is not None and type(result) is not bytes:
        raise _bad("result", result, "bytes or None")
    _error(d["error"])
    if status == "success" and result is None:
        raise RecordError("its status is success but it has no result")
    if status == "failed" and d["error"] is None:
        raise RecordError("its status is failed but it has no error")
    _cancel(d)
    _divergence(d)
    _time(d, "created")
    _time(d, "updated")
    _time(d, "started", optional=True)
    _attempts(d["attempts"])
    return d


class Skipped:
    """Malformed records met by one walk over the table: each is logged once, as it is met,
    on the `pynenc.store` logger (one ERROR line naming its key and what is wrong)."""

    def __init__(self, walk: str) -> None:
        self.walk = walk
        self.errors: list[CorruptEntryError] = []

    def add(self, exc: CorruptEntryError) -> None:
        self.errors.append(exc)
        log.error("%s: %s", self.walk, exc)
