"""Hosts that are really separate: workers in network namespaces of their own (each with its own
address and host name) sharing one PostgreSQL store on a bridge; one host SIGKILLed, another cut
off the network mid-workflow (tests/campaigns/hosts.py). Root only: skipped with the reason
elsewhere; CI runs as root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from campaigns import hosts
from campaigns.hosts_cluster import Cluster
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
