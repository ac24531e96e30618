"""Stores: where journals, invocation records and workflow data live.

`lmdb://PATH` is the embedded store (one LMDB environment directory, shared safely by the
processes of one machine).
"""

from __future__ import annotations

from pathlib import Path

from pynenc._core import Store
from pynenc.errors import InvalidArgumentError
from pynenc.store.lmdb import LmdbStore, StoreOptions, report_migration

__all__ = ["LmdbStore", "StoreOptions", "open_store", "store_path"]


def open_store(url: str, *, sync: bool = True, flush_interval_ms: int = 5) -> Store:
    """Open the store named by `url` (the raw store the engine drives; `LmdbStore` is its
    typed face for direct use).

    Raises:
        InvalidArgumentError: The URL names no supported store.
    """
    store = Store(store_path(url), sync=sync, flush_interval_ms=flush_interval_ms)
    report_migration(store)
    return store


def store_path(url: str) -> Path:
    """The directory of the store named by `url` (`~` expanded); nothing is opened. A URL is
    `lmdb://PATH` with a non-empty PATH (relative to the working directory, or absolute).

    Raises:
        InvalidArgumentError: The URL names no supported store.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        raise InvalidArgumentError(
            f"store URL {url!r} is not of the form lmdb://PATH (e.g. lmdb://.pynenc)"
        )
    if scheme != "lmdb":
        raise InvalidArgumentError(
            f"store URL {url!r} has an unsupported scheme {scheme!r}: use lmdb://PATH"
        )
    if "\0" in rest:
        raise InvalidArgumentError(f"store URL {url!r} holds a NUL character, which no path can")
    return Path(rest).expanduser()
