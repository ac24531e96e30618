"""Hosts that are really separate: workers in network namespaces of their own (each with its own
address and host name) sharing one PostgreSQL store on a bridge; one host SIGKILLed, another cut
off the network mid-workflow (tests/campaigns/hosts.py). Root only: skipped with the reason
elsewhere; CI runs as root."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from campaigns import hosts, hosts_check
from campaigns.hosts_cluster import Cluster, Hosts, connect, load_app
from campaigns.netns import unavailable

WHY = unavailable()
pytestmark = pytest.mark.skipif(WHY is not None, reason=WHY or "")

#: Seeds CI runs (about 15 s each on a loaded 2-core machine); more with
#: `python -m tests.campaigns.hosts --seeds N`.
CI_SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(hosts.HOSTS) as made:
        yield made


@pytest.fixture(scope="module")
def baseline(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> hosts.Run:
    run = hosts.run_once(cluster, 0, tmp_path_factory.mktemp("baseline"), None)
    assert not run.failures, run.failures
    return run


@pytest.mark.timeout(150)
@pytest.mark.parametrize("seed", CI_SEEDS)
def test_one_host_killed_and_one_cut_off_lose_nothing(
    cluster: Cluster, baseline: hosts.Run, seed: int, tmp_path: Path
) -> None:
    run = hosts.run_once(cluster, seed, tmp_path, baseline, baseline.seconds)
    print("\n" + hosts.describe(run))
    c = run.check
    assert c["lost"] == 0 and c["children_unfinished"] == 0, run.failures
    assert c["reruns"] == [] and c["divergences"] == [], run.failures
    assert c["results_differ"] == 0, run.failures
    kill, cut = sorted(run.faults, key=lambda f: f.kind != "kill")
    assert kill.held and cut.held, "a fault fell where its host held nothing"
    assert max(c["kill_takeover_s"].values()) <= hosts.LEASE_SECONDS + 1.0, run.failures
    assert run.finished_before_restore, (run.failures, run.stalled)
    assert set(c["cut_worker_runs"]) <= set(c["cut_given_up"]), run.failures
    assert run.failures == []


@pytest.mark.timeout(150)
def test_a_host_cut_off_inside_a_transaction_holds_up_no_other_host(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The link of a busy host is cut while one of its transactions is open on the server
    (share locks on lease rows, row locks on what it wrote): the server must end that session
    soon, so another host takes the host's invocations over and finishes every workflow while
    the link is still down."""
    schema = f"hosts_cut_{secrets.token_hex(4)}"
    url = cluster.store_url(schema)
    env = {
        "PYNENC_STORE": url,
        "PYNENC_EXECUTION": "queued",
        "PYNENC_LEASE_SECONDS": str(hosts.LEASE_SECONDS),
        "PYNENC_STORE_UNAVAILABLE_SECONDS": "60",
        "HOSTS_LOG": str(tmp_path / "events.jsonl"),
        "CHILD_SLEEP": "0",  # back-to-back commits: most instants fall inside one
    }
    module = load_app(env)
    module.app.store.queued()  # the schema exists before any worker starts
    workers = Hosts(cluster, env, tmp_path, per_host=2, concurrency=4)
    address = cluster.lab.address(0)
    stalled: list[dict[str, object]] = []
    conn = connect(url)
    try:
        workers.start(on=[0])
        ids: list[str] = []
        seen: list[object] = []
        # Cut host 0 until one of its sessions is seen idle inside a transaction (many cuts of
        # a busy host land in one); a cut that does not is undone and tried again, with more
        # work whenever host 0 has run out.
        for _attempt in range(40):
            if not ids or all(module.app.get_invocation(i).status.finished for i in ids):
                ids += [module.parent(p).invocation_id for p in range(len(ids), len(ids) + 20)]
            time.sleep(1.0)  # host 0 back at work after the previous cut
            cluster.lab.cut(0)
            time.sleep(0.5)
            sessions = [
                s for s in hosts_check.sessions_of(conn, address) if schema in str(s["query"])
            ]
            stalled = [s for s in sessions if s["state"] == "idle in transaction"]
            if stalled:
                break
            seen.append([(s["state"], str(s["query"])[:40]) for s in sessions])
            cluster.lab.restore(0)
        assert stalled, f"no cut of host 0 landed inside one of its transactions: {seen}"
        cut_at = time.monotonic()
        workers.start(on=[1])
        deadline = cut_at + 30.0
        done: set[str] = set()
        while time.monotonic() < deadline and not set(ids) <= done:
            done = {
                i.invocation_id
                for i in module.app.list_invocations(task_id="parent", status="success")
            }
            time.sleep(0.2)
        took = time.monotonic() - cut_at
        left = [s for s in hosts_check.sessions_of(conn, address) if schema in str(s["query"])]
        print(
            f"\nhost 1 finished {len(done)} of {len(ids)} workflows {took:.1f} s after the cut "
            f"({_attempt + 1} cuts)"
        )
        assert set(ids) <= done, (
            f"{len(set(ids) - done)} workflows unfinished {took:.0f} s after host 0 was cut "
            f"inside a transaction; its sessions on the server: {left}"
        )
        assert not [s for s in left if s["state"] == "idle in transaction"], left
        cluster.lab.restore(0)
        codes = workers.stop()
    finally:
        workers.kill_all()
        if 0 in cluster.lab.cut_hosts:
            cluster.lab.restore(0)
        conn.close()
    assert set(codes.values()) == {0}, codes
    with connect(url) as c:
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')
