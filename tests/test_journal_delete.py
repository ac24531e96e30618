"""Deleting a journal whole (`Store.delete_journal`, `Store.delete_many`), as pruning does: seen
by reads at once, before the flush that commits it; a segment staged after it starts the
journal afresh; bad ids and keys stage nothing. On LMDB and PostgreSQL."""

from __future__ import annotations

import pytest

from pynenc import Pynenc
from pynenc.errors import InvalidArgumentError
from pynenc.store import LmdbStore, StoreOptions


def test_deleting_a_journal_is_seen_at_once_and_survives_reopening(store_url: str) -> None:
    app = Pynenc("test", store=store_url, sync=False)
    store = app.store
    journal = bytes(range(16))
    draw = (1, (7).to_bytes(8, "little"))  # a random() entry: kind 1, the 64-bit draw
    store._append_journal(journal, 0, [draw])
    store.flush()
    store._append_journal(journal, 1, [draw])
    assert store.journal_len(journal) == 2
    store.delete_journal(journal)
    assert store.journal_len(journal) == 0, "the staged delete hides committed and staged"
    store._append_journal(journal, 0, [draw])
    assert store.journal_len(journal) == 1, "a segment after the delete starts afresh"
    store.flush()
    assert store.journal_len(journal) == 1
    with pytest.raises(InvalidArgumentError, match="a journal id is 16 bytes, got 3"):
        store.delete_many(journals=[journal, b"abc"], invocations=[journal])
    with pytest.raises(InvalidArgumentError, match="a key is 1 to 510 bytes, got 0"):
        store.delete_many(data=[b""])
    assert store.journal_len(journal) == 1, "nothing was staged"
    store.delete_many(journals=[journal])
    store.flush()
    reopened = Pynenc("other", store=store_url, sync=False).store
    assert reopened.journal_len(journal) == 0
    if store_url.startswith("lmdb://"):  # the embedded store's typed face does the same
        lmdb = LmdbStore(store_url.removeprefix("lmdb://"), StoreOptions(sync=False))
        lmdb._core._append_journal(journal, 0, [draw])
        lmdb.flush()
        lmdb.delete_journal(journal)
        assert lmdb.journal_len(journal) == 0
