"""Stores: where journals, invocation records, workflow data and the work queue live."""

from __future__ import annotations

from pynenc.store.lmdb import LmdbStore, StoreOptions

__all__ = ["LmdbStore", "StoreOptions"]
