"""App configuration: constructor arguments, then environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from pynenc import codec
from pynenc.errors import InvalidArgumentError

__all__ = ["PynencConfig"]

ExecutionMode = Literal["inline", "queued"]

DEFAULT_STORE = "lmdb://.pynenc"


@dataclass(frozen=True, slots=True)
class PynencConfig:
    """Resolved configuration of a `Pynenc` app.

    Attributes:
        app_id: A name for the app (logs, worker banners).
        store: Store URL, `lmdb://PATH` (env `PYNENC_STORE`, default `lmdb://.pynenc`).
        execution: `inline` runs a call in the calling process; `queued` enqueues it for
            workers (env `PYNENC_EXECUTION`, default `inline`).
        max_payload_bytes: Largest encoded argument/result/data value accepted (env
            `PYNENC_MAX_PAYLOAD_BYTES`, default 16 MiB).
        sync: fsync every commit (env `PYNENC_SYNC=0` turns it off: a process crash still
            loses nothing, a power loss may lose the last few milliseconds).
    """

    app_id: str
    store: str
    execution: ExecutionMode
    max_payload_bytes: int
    sync: bool

    @classmethod
    def resolve(
        cls,
        app_id: str | None,
        store: str | None,
        execution: str | None,
        max_payload_bytes: int | None,
        sync: bool | None,
    ) -> PynencConfig:
        env = os.environ
        mode = execution or env.get("PYNENC_EXECUTION") or "inline"
        if mode not in ("inline", "queued"):
            raise InvalidArgumentError(
                f"execution must be 'inline' or 'queued', got {mode!r} "
                "(from Pynenc(execution=...) or PYNENC_EXECUTION)"
            )
        limit_text = env.get("PYNENC_MAX_PAYLOAD_BYTES")
        limit = max_payload_bytes if max_payload_bytes is not None else (
            _parse_int("PYNENC_MAX_PAYLOAD_BYTES", limit_text) if limit_text else codec.DEFAULT_LIMIT
        )
        if limit <= 0:
            raise InvalidArgumentError(f"max_payload_bytes must be positive, got {limit}")
        if sync is None:
            sync = env.get("PYNENC_SYNC", "1").strip().lower() not in ("0", "false", "no", "off")
        return cls(
            app_id=app_id or "pynenc",
            store=store or env.get("PYNENC_STORE") or DEFAULT_STORE,
            execution=mode,  # type: ignore[arg-type]
            max_payload_bytes=limit,
            sync=sync,
        )


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgumentError(f"{name} must be an integer, got {text!r}") from None
