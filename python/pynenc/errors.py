"""Exceptions raised by pynenc.

Every error derives from `PynencError` and carries a stable `code`, so callers can match a
failure without parsing its message. Rust errors are mapped onto these classes in one place
(`rust/src/bindings/errors.rs`), which also sets each error's fields as attributes.
"""

from __future__ import annotations

__all__ = [
    "CorruptEntryError",
    "CorruptStoreError",
    "InvalidArgumentError",
    "LeaseLostError",
    "NonDeterminismError",
    "PayloadDecodeError",
    "PayloadError",
    "PayloadTooLargeError",
    "PynencError",
    "StoreAccessError",
    "StoreError",
    "StoreFormatError",
    "StoreIOError",
    "StoreReadOnlyError",
    "TaskError",
    "WorkflowMembershipError",
]


class PynencError(Exception):
    """Base class of every error pynenc raises on its own behalf."""

    code: str = "PYNENC"


class StoreError(PynencError):
    """The store could not complete an operation."""

    code = "STORE"


class CorruptStoreError(StoreError):
    """The store files are not a readable store (truncated, garbage, wrong kind)."""

    code = "STORE_CORRUPT"


class CorruptEntryError(CorruptStoreError):
    """A journal entry failed its checksum or could not be decoded."""

    code = "ENTRY_CORRUPT"


class StoreFormatError(StoreError):
    """The store was written by a newer format version than this build reads."""

    code = "STORE_FORMAT"


class StoreAccessError(StoreError):
    """The store path cannot be created or opened."""

    code = "STORE_ACCESS"


class StoreReadOnlyError(StoreAccessError):
    """The store is on a read-only filesystem."""

    code = "STORE_READ_ONLY"


class StoreIOError(StoreError):
    """An I/O error while reading or committing; the commit did not happen."""

    code = "STORE_IO"


class LeaseLostError(StoreError):
    """A write carried a stale fencing token: another worker owns the invocation now."""

    code = "LEASE_LOST"


class NonDeterminismError(PynencError):
    """Replayed code asked for something other than what the journal recorded."""

    code = "NON_DETERMINISM"


class WorkflowMembershipError(PynencError):
    """An operation was used outside the workflow it belongs to."""

    code = "WORKFLOW_MEMBERSHIP"


class TaskError(PynencError):
    """A task raised; the original exception is recorded."""

    code = "TASK"


class PayloadError(PynencError):
    """A value cannot be encoded or decoded."""

    code = "PAYLOAD"


class PayloadTooLargeError(PayloadError):
    """An encoded value is larger than the store accepts."""

    code = "PAYLOAD_TOO_LARGE"


class PayloadDecodeError(PayloadError):
    """Stored bytes do not decode to a value."""

    code = "PAYLOAD_DECODE"


class InvalidArgumentError(PynencError, ValueError):
    """A caller passed a value pynenc cannot accept."""

    code = "INVALID_ARGUMENT"
