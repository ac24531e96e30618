"""App configuration: constructor arguments, then environment variables, then defaults."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pynenc import checks, codec
from pynenc.errors import InvalidArgumentError
from pynenc.store import parse_url

__all__ = ["PynencConfig"]

ExecutionMode = Literal["inline", "queued"]

DEFAULT_STORE = "lmdb://.pynenc"


@dataclass(frozen=True, slots=True)
class PynencConfig:
    """Resolved configuration of a `Pynenc` app.

    Attributes:
        app_id: A name for the app (logs, worker banners).
        store: Store URL, `lmdb://PATH` or `postgresql://USER@HOST/DATABASE?schema=NAME`
            (env `PYNENC_STORE`, default `lmdb://.pynenc`).
        execution: `inline` runs a call in the calling process; `queued` enqueues it for
            workers (env `PYNENC_EXECUTION`, default `inline`).
        max_payload_bytes: Largest encoded argument/result/data value accepted (env
            `PYNENC_MAX_PAYLOAD_BYTES`, default 16 MiB).
        sync: fsync every commit (env `PYNENC_SYNC=0` turns it off: a process crash still
            loses nothing; a power loss may lose the last commits or leave the store
            unreadable).
        lease_seconds: How long a claim on a queued invocation lasts without renewal (env
            `PYNENC_LEASE_SECONDS`, default 30); running invocations renew it every third.
        max_recoveries: How many times an invocation is resumed after its process died before
            it is parked as failed (env `PYNENC_MAX_RECOVERIES`, default 5).
        flush_interval_ms: Longest a staged write waits for its writer's next flush before a
            background thread of the store commits it, so workflow data reaches other
            processes while its task runs on (env `PYNENC_FLUSH_INTERVAL_MS`, default 5; 0
            turns the thread off).
        store_unavailable_seconds: How long a store operation keeps retrying while a
            PostgreSQL server cannot be reached before it fails with `StoreUnavailableError`
            (env `PYNENC_STORE_UNAVAILABLE_SECONDS`, default 30).
    """

    app_id: str
    store: str
    execution: ExecutionMode
    max_payload_bytes: int
    sync: bool
    lease_seconds: float = 30.0
    max_recoveries: int = 5
    flush_interval_ms: int = 5
    store_unavailable_seconds: float = 30.0

    @classmethod
    def resolve(
        cls,
        app_id: str | None,
        store: str | None,
        execution: str | None,
        max_payload_bytes: int | None,
        sync: bool | None,
        lease_seconds: float | None = None,
        max_recoveries: int | None = None,
        flush_interval_ms: int | None = None,
        store_unavailable_seconds: float | None = None,
    ) -> PynencConfig:
        """Every setting from its argument, else its environment variable, else its default,
        each checked against its documented range (docs/operations.md).

        Raises:
            InvalidArgumentError: A setting has the wrong type or is out of range; the message
                names it (and the environment variable it came from).
        """
        env = os.environ
        for name, text in (("app_id", app_id), ("store", store), ("execution", execution)):
            if text is not None and not isinstance(text, str):
                raise InvalidArgumentError(f"{name} must be a string, got {text!r}")
        mode = execution or env.get("PYNENC_EXECUTION") or "inline"
        if mode not in ("inline", "queued"):
            raise InvalidArgumentError(
                f"execution must be 'inline' or 'queued', got {mode!r} "
                "(from Pynenc(execution=...) or PYNENC_EXECUTION)"
            )
        url = store or env.get("PYNENC_STORE") or DEFAULT_STORE
        try:
            parse_url(url)  # checked now, opened on first use
        except InvalidArgumentError as exc:
            source = "Pynenc(store=...)" if store else "PYNENC_STORE"
            raise InvalidArgumentError(f"{exc} (from {source})") from None
        limit = checks.whole(
            *_setting(
                max_payload_bytes,
                "max_payload_bytes",
                "PYNENC_MAX_PAYLOAD_BYTES",
                codec.DEFAULT_LIMIT,
                _parse_int,
            ),
            least=1,
            most=checks.MAX_PAYLOAD_BYTES,
            hint=" (1 GiB)",
        )
        sync = checks.switch(*_setting(sync, "sync", "PYNENC_SYNC", True, _parse_switch))
        least, most = checks.LEASE_SECONDS
        lease_seconds = checks.seconds(
            *_setting(lease_seconds, "lease_seconds", "PYNENC_LEASE_SECONDS", 30.0, _parse_float),
            positive=True,
            least=least,
            most=most,
        )
        max_recoveries = checks.whole(
            *_setting(max_recoveries, "max_recoveries", "PYNENC_MAX_RECOVERIES", 5, _parse_int),
            least=0,
            most=checks.MAX_COUNT,
        )
        flush_interval_ms = checks.whole(
            *_setting(
                flush_interval_ms,
                "flush_interval_ms",
                "PYNENC_FLUSH_INTERVAL_MS",
                5,
                _parse_int,
            ),
            least=0,
            most=checks.MAX_FLUSH_INTERVAL_MS,
            hint=" (0: no background flush)",
        )
        least, most = checks.UNAVAILABLE_SECONDS
        unavailable = checks.seconds(
            *_setting(
                store_unavailable_seconds,
                "store_unavailable_seconds",
                "PYNENC_STORE_UNAVAILABLE_SECONDS",
                30.0,
                _parse_float,
            ),
            positive=False,
            least=least,
            most=most,
        )
        return cls(
            flush_interval_ms=flush_interval_ms,
            store_unavailable_seconds=unavailable,
            lease_seconds=lease_seconds,
            max_recoveries=max_recoveries,
            app_id=app_id or "pynenc",
            store=url,
            execution=mode,  # type: ignore[arg-type]
            max_payload_bytes=limit,
            sync=sync,
        )


def _setting(
    given: object,
    name: str,
    variable: str,
    default: object,
    parse: Callable[[str, str], object],
) -> tuple[str, object]:
    """A setting as `(how to name it, value)`: as given, else from the environment (an empty
    variable counts as unset; its name then says where the value came from), else its
    default."""
    if given is not None:
        return name, given
    text = os.environ.get(variable, "").strip()
    if not text:
        return name, default
    return f"{name} (from {variable})", parse(variable, text)


#: How `PYNENC_SYNC` may be written (any case).
_SWITCH = {"1": True, "true": True, "yes": True, "on": True}
_SWITCH |= {"0": False, "false": False, "no": False, "off": False}


def _parse_switch(name: str, text: str) -> bool:
    try:
        return _SWITCH[text.strip().lower()]
    except KeyError:
        raise InvalidArgumentError(
            f"{name} must be one of 1/0, true/false, yes/no, on/off, got {text!r}"
        ) from None


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgumentError(f"{name} must be an integer, got {text!r}") from None


def _parse_float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidArgumentError(f"{name} must be a finite number, got {text!r}")
    return value
