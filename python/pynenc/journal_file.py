"""One workflow's history as a file (`pynenc export ID --journal FILE`), and that file loaded
into a store again (`pynenc.testing.replay`).

The file is one JSON document (gzip-compressed when its name ends in `.gz`), self-describing
and versioned; docs/operations.md ("Journal files") gives every key. It holds every
invocation of the workflow and of the child workflows started below it: each one's stored
record, the journal of each of its attempts entry by entry (the entry's kind and payload
exactly as the store holds them, and its call site), and the workflow data. Replaying needs
nothing else: recorded values come from the journals, children's outcomes from their records.
Everything is read through the store's own methods, whatever the store.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import urllib.parse
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pynenc._core import FORMAT_VERSION, Store, format_id, journal_id
from pynenc.errors import CorruptStoreError, InvalidArgumentError, PayloadError
from pynenc.invocation import InvocationRecord
from pynenc.record_check import Skipped

if TYPE_CHECKING:
    from pynenc.app import Pynenc

__all__ = [
    "FORMAT",
    "VERSION",
    "data_of",
    "export",
    "family",
    "load_into",
    "public_url",
    "read",
    "write",
]

#: The file's `format`: what it is, for a person or a tool opening it.
FORMAT = "pynenc-replay journal export"
#: The file's `version`: bumped whenever a key changes meaning or a required key is added.
VERSION = 1

_RECORDS = "invocations"


def public_url(url: str) -> str:
    """A store URL as files and reports show it: without its password, if it has one."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def family(app: Pynenc, invocation_id: str) -> list[InvocationRecord]:
    """The invocation `invocation_id` (a workflow's id is its root's) and every invocation
    below it, child workflows included: the root first, then each one's children, oldest first,
    depth first (the order of `pynenc tree`). One walk over the store's records.

    Raises:
        InvalidArgumentError: No such invocation in the store.
    """
    root = app.get_invocation(invocation_id)
    if root is None:
        raise InvalidArgumentError(f"no workflow {invocation_id} in {app.config.store}")
    children: dict[bytes, list[InvocationRecord]] = defaultdict(list)
    for record in app._records(Skipped("export")):
        if record.parent_invocation_id is not None:
            children[record.parent_invocation_id].append(record)
    out: list[InvocationRecord] = []
    stack = [root._record]
    while stack:
        record = stack.pop()
        out.append(record)
        kids = sorted(children.get(record.invocation_id, []), key=lambda r: r.created_at)
        stack.extend(reversed(kids))
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _journal(app: Pynenc, record: InvocationRecord, attempt: int) -> list[dict[str, Any]]:
    """One attempt's journal, entry by entry, as the store holds it."""
    journal = journal_id(record.invocation_id, attempt)
    raw = app.store.journal_entries(journal)
    ops = app.store.journal_ops(journal)
    sites = app.store.journal_sites(journal)
    return [
        {
            "operation": op[0],
            "kind": kind,
            "payload": _b64(bytes(payload)),
            "site": None if site is None else [site[0], site[1], site[2]],
        }
        for (kind, payload), op, site in zip(raw, ops, sites, strict=True)
    ]


def data_of(app: Pynenc, workflow_id: str) -> list[tuple[str, bytes]]:
    """Every key of workflow `workflow_id`'s data with its stored (codec) value, in key
    order."""
    return [
        (bytes(key[16:]).decode("utf-8", errors="surrogateescape"), bytes(value))
        for key, value in app.store.scan("data", uuid.UUID(workflow_id).bytes)
    ]


def export(app: Pynenc, workflow_id: str) -> dict[str, Any]:
    """The journal file's document for workflow `workflow_id` (any invocation id exports the
    part below that invocation).

    Raises:
        InvalidArgumentError: No such invocation in the store.
        CorruptEntryError: A record or journal entry of the workflow is damaged.
    """
    from pynenc import __version__

    records = family(app, workflow_id)
    root = records[0]
    invocations = []
    for record in records:
        stored = app.store.get(_RECORDS, record.invocation_id)
        assert stored is not None  # it was just read
        invocations.append(
            {
                "invocation_id": record.id_str,
                "task": record.task_id,
                "status": record.status.value,
                "workflow_id": record.workflow.workflow_id,
                "parent_invocation_id": (
                    None
                    if record.parent_invocation_id is None
                    else format_id(record.parent_invocation_id)
                ),
                "record": _b64(bytes(stored)),
                "journals": [
                    {"attempt": attempt, "entries": _journal(app, record, attempt)}
                    for attempt in range(record.attempt + 1)
                ],
            }
        )
    data = [
        {"workflow_id": workflow, "key": key, "value": _b64(value)}
        for workflow in dict.fromkeys(r.workflow.workflow_id for r in records)
        for key, value in data_of(app, workflow)
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "entry_format": FORMAT_VERSION,
        "exported_by": f"pynenc-replay {__version__}",
        "exported_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "store": public_url(app.config.store),
        "workflow_id": root.workflow.workflow_id,
        "workflow_type": root.workflow.workflow_type,
        "root_invocation_id": root.id_str,
        "invocations": invocations,
        "data": data,
    }


def write(document: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write `document` to `path` (gzip-compressed when it ends in `.gz`), replacing the file
    at once: a reader never sees half of it.

    Raises:
        InvalidArgumentError: The file's directory does not exist.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise InvalidArgumentError(
            f"{target}: no directory {target.parent}; create it or name another file"
        )
    text = json.dumps(document, indent=1, ensure_ascii=False).encode()
    body = gzip.compress(text, mtime=0) if target.name.endswith(".gz") else text
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(body)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The document of the journal file at `path` (gzip-compressed or not), its format and
    version checked.

    Raises:
        InvalidArgumentError: There is no such file; it is not a journal file; it was written
            in a newer format than this build reads; or it is damaged. The message says which.
    """
    source = Path(path)
    try:
        body = source.read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read journal file {source}: {exc.strerror}") from None
    try:
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        document = json.loads(body)
    except (OSError, EOFError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{source} is not a journal file written by `pynenc export ID --journal FILE` ({exc})"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidArgumentError(
            f"{source} is not a journal file written by `pynenc export ID --journal FILE` "
            f'(its "format" is not {FORMAT!r})'
        )
    version, entries = document.get("version"), document.get("entry_format")
    if not isinstance(version, int) or not isinstance(entries, int):
        raise InvalidArgumentError(f'{source} is damaged: "version" or "entry_format" missing')
    if version > VERSION or entries > FORMAT_VERSION:
        raise InvalidArgumentError(
            f"{source} was written by a newer pynenc-replay (file version {version}, journal "
            f"entry format {entries}; this build reads up to {VERSION} and {FORMAT_VERSION}): "
            "replay it with that version or a later one"
        )
    return document


def load_into(document: dict[str, Any], store: Store, source: str = "the journal file") -> None:
    """Write the records, journals and workflow data of `document` into `store` (an empty
    store of its own: `pynenc.testing.replay` makes one) and flush.

    Raises:
        InvalidArgumentError: The document is damaged (naming `source` and what is wrong).
    """
    try:
        for item in document["invocations"]:
            invocation = uuid.UUID(item["invocation_id"]).bytes
            record = base64.b64decode(item["record"], validate=True)
            InvocationRecord.decode(record, invocation, source)  # refuses a damaged record
            store.put(_RECORDS, invocation, record, None)
            for journal in item["journals"]:
                entries: list[tuple[int, bytes, tuple[str, int] | tuple[str, int, str] | None]]
                entries = [
                    (
                        int(entry["kind"]),
                        base64.b64decode(entry["payload"], validate=True),
                        _site(entry["site"]),
                    )
                    for entry in journal["entries"]
                ]
                if entries:
                    store._append_journal(
                        journal_id(invocation, int(journal["attempt"])), 0, entries
                    )
        for item in document["data"]:
            key = uuid.UUID(item["workflow_id"]).bytes + item["key"].encode(
                "utf-8", errors="surrogateescape"
            )
            store.put("data", key, base64.b64decode(item["value"], validate=True), None)
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise InvalidArgumentError(f"{source} is damaged: {type(exc).__name__}: {exc}") from None
    except (CorruptStoreError, PayloadError, InvalidArgumentError) as exc:
        raise InvalidArgumentError(f"{source} is damaged: {exc}") from None
    store.flush()


def _site(site: Any) -> tuple[str, int] | tuple[str, int, str] | None:
    """An entry's call site as the store takes it: `(file, line)` when no function was
    recorded, else `(file, line, function)`."""
    if site is None:
        return None
    file, line, function = site
    return (str(file), int(line)) if not function else (str(file), int(line), str(function))
