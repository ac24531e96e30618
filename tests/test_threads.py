"""Workflows run from many threads of one process share the store and its commits."""

from __future__ import annotations

import threading
from typing import Any

from pynenc import Pynenc


def test_threads_run_workflows_side_by_side_and_share_commits(store_url: str) -> None:
    # Commits counted here are the workflows' own flushes: no background flush, which would
    # add one whenever a thread waits 5 ms for the GIL with writes staged.
    app = Pynenc("test", store=store_url, sync=False, flush_interval_ms=0)

    @app.task(name="test_threads.child")
    def child(n: int) -> dict[str, Any]:
        return {"n": n, "id": child.wf.uuid()}

    @app.task(name="test_threads.workflow")
    def workflow(k: int) -> list[dict[str, Any]]:
        out = []
        for n in range(20):
            out.append(workflow.wf.execute_task(child, n).result)
            workflow.wf.set_data("last", n)
        return out

    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            inv = workflow(k)
            results[k] = (inv.invocation_id, inv.result)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    before = app.store.commit_count()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and sorted(results) == list(range(8))
    # Each workflow: one commit at its start, one per child step, one at its end, unless
    # commits were shared between threads.
    flushes = 8 * (1 + 20 + 1)
    assert app.store.commit_count() - before <= flushes
    for invocation_id, steps in results.values():
        assert [s["n"] for s in steps] == list(range(20))
        assert app.replay(invocation_id) == steps
        assert app.get_workflow_data(invocation_id, "last") == 19
    ids = [s["id"] for _, steps in results.values() for s in steps]
    assert len(set(ids)) == len(ids)
