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
    """The directory of the store named by `url` (`~` expanded); nothing is opened.

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
            f"unsupported store scheme {scheme!r} in {url!r}: use lmdb://PATH"
        )
    return Path(rest).expanduser()
