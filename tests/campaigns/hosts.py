"""The hosts campaign: workflows run by workers on three hosts that share one PostgreSQL store;
mid-workflow one host is killed and another is cut off the network.

    python -m tests.campaigns.hosts --seeds 5 [--first 1] [--json out.json] [--keep DIR]

Root only (network namespaces). Each host is a network namespace with its own address and host
name, joined to a bridge where a throwaway PostgreSQL server listens (`hosts_cluster.py`,
`netns.py`); each runs 2 workers of 2 threads. A run enqueues 40 parent workflows of 5 children
each (`hosts_app.py`), with leases of 2 s. First one run without faults gives the results every
other run must return, and how long the work takes (D). Then, per seed, two hosts are drawn and
two instants in [0.1 D, 0.45 D] (each moved on, by at most 1 s, until its host holds a lease):
at one, both workers of the first host are SIGKILLed; at the other, the second host's link goes
down. It stays down until the third host has finished every workflow (at most 40 s: the
workers' `store_unavailable_seconds` is 60, so the cut host lives to see its link come back),
then comes back up, and the workers are stopped (SIGTERM) once the cut host has given up.

What a run measures (`hosts_check.py`), from the store, a trigger that copies every lease row
version with its commit time (`track_commit_timestamp`), the events the app logs and the
workers' logs:

- `lost`: workflows not finished with success (and children, queue rows, live leases left);
- `reruns`: bodies entered (by the app's own clock) after their invocation's completion had
  committed: a finished invocation run again. A stale run entered before, still going on a
  cut host, is not one;
- `divergences`: journal segments changed or gone since a fault instant, replays of finished
  invocations that fail or differ from the stored result, and divergences the workers logged;
- `results_differ`: workflows whose result is not the fault-free run's;
- `kill_takeover_s`: for each invocation the killed host held, database time from the kill to
  the commit of its first claim by another host; the longest must be at most the lease plus
  1 s;
- for the cut host: every invocation it held taken over by another host while the link was
  down, and after it came back no lease write of the host accepted, no outcome of it stored,
  and each of its worker threads' runs ended (a lease-lost line: a write or renewal refused by
  fencing; or found finished by another host);
- no engine failure, traceback or run left at shutdown in any worker's log, and every worker
  not killed exits 0.

A run fails when any of these is not as stated; the campaign prints one line per run.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import hosts_check
from .hosts_cluster import (
    Cluster,
    Hosts,
    audit_rows,
    connect,
    db_now_ms,
    install_audit,
    load_app,
)
from .netns import unavailable

HOSTS = 3
PER_HOST = 2
CONCURRENCY = 2
PARENTS = 40
LEASE_SECONDS = 2.0
#: Longer than any cut, so the cut host's workers keep retrying instead of exiting.
UNAVAILABLE_SECONDS = 60
MAX_CUT_SECONDS = 40.0
RUN_TIMEOUT = 90.0
#: After the link is back, how long the cut host has to give up what it held.
GIVE_UP_TIMEOUT = 20.0
CHILD_SLEEP = 0.05
#: Longest wait, at a fault's instant, for its host to hold a lease.
HOLDING_TIMEOUT = 1.0
#: When the work is not done this long after the last fault, the cut host's server sessions
#: are recorded (what holds the rest up).
STALL_SECONDS = 3 * LEASE_SECONDS + 4.0
#: Where in the fault-free run's duration the faults fall.
FAULT_WINDOW = (0.1, 0.45)


@dataclass
class Fault:
    kind: str  # "kill" or "cut"
    host: int
    after_s: float
    at_ms: int = 0
    held_as_of_ms: int = 0
    #: Leases the host held at the instant: invocation (hex) -> (owner, token, expires_ms).
    held: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    #: Journal segments at the instant: (invocation hex, first position) -> segment hex.
    journal: dict[str, str] = field(default_factory=dict)
    restored_after_s: float | None = None
    restored_ms: int = 0
    #: Where each of the host's worker logs ended when its link came back.
    log_offsets: dict[str, int] = field(default_factory=dict)


@dataclass
class Run:
    seed: int
    faults: list[Fault]
    seconds: float = 0.0
    finished_before_restore: bool = True
    check: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    results: dict[int, Any] = field(default_factory=dict)
    #: The cut host's sessions on the server, when the work was not done `STALL_SECONDS`
    #: after the last fault.
    stalled: list[dict[str, Any]] = field(default_factory=list)


def plan(rng: random.Random, duration: float) -> list[Fault]:
    killed, cut = rng.sample(range(HOSTS), 2)
    lo, hi = (duration * f for f in FAULT_WINDOW)
    return [
        Fault("kill", killed, round(rng.uniform(lo, hi), 3)),
        Fault("cut", cut, round(rng.uniform(lo, hi), 3)),
    ]


def _wait_finished(
    app: Any, ids: list[str], deadline: float, slow: tuple[float, Any] | None = None
) -> bool:
    """Wait until every parent in `ids` succeeded (True) or `deadline` passed (False); `slow`
    is (instant, callback): called once if the wait lasts past that instant."""
    while time.monotonic() < deadline:
        done = {i.invocation_id for i in app.list_invocations(task_id="parent", status="success")}
        if all(i in done for i in ids):
            return True
        if slow is not None and time.monotonic() > slow[0]:
            slow[1]()
            slow = None
        time.sleep(0.1)
    return False


def run_once(
    cluster: Cluster, seed: int, workdir: Path, baseline: Run | None, duration: float = 0.0
) -> Run:
    """One run: faults drawn from `seed` when `baseline` is given, none otherwise."""
    rng = random.Random(seed)
    faults = plan(rng, duration) if baseline is not None else []
    run = Run(seed, faults)
    schema = f"hosts_{seed}_{secrets.token_hex(4)}"
    url = cluster.store_url(schema)
    rundir = workdir / (f"seed{seed}" if baseline is not None else "baseline")
    rundir.mkdir(parents=True, exist_ok=True)
    env = {
        "PYNENC_STORE": url,
        "PYNENC_EXECUTION": "queued",
        "PYNENC_LEASE_SECONDS": str(LEASE_SECONDS),
        "PYNENC_STORE_UNAVAILABLE_SECONDS": str(UNAVAILABLE_SECONDS),
        "HOSTS_LOG": str(rundir / "events.jsonl"),
        "CHILD_SLEEP": str(CHILD_SLEEP),
    }
    module = load_app(env)
    app = module.app
    app.store.queued()  # creates the schema, so the audit trigger can go on its leases
    install_audit(url, schema)
    hosts = Hosts(cluster, env, rundir, PER_HOST, CONCURRENCY)
    conn = connect(url)
    cut: Fault | None = None
    try:
        hosts.start()
        started = time.monotonic()
        ids = [module.parent(p).invocation_id for p in range(PARENTS)]
        for fault in sorted(faults, key=lambda f: f.after_s):
            time.sleep(max(0.0, started + fault.after_s - time.monotonic()))
            # At a random instant, once the host holds a lease (else nothing is taken over).
            hosts_check.wait_holding(conn, schema, hosts.hostname(fault.host), HOLDING_TIMEOUT)
            fault.after_s = round(time.monotonic() - started, 3)
            fault.at_ms = db_now_ms(conn, schema)
            if fault.kind == "kill":
                hosts.kill(fault.host)
            else:
                cluster.lab.cut(fault.host)
                cut = fault
            # What it held is read as of just after: a claim it committed meanwhile counts.
            fault.held_as_of_ms = db_now_ms(conn, schema)
            fault.journal = hosts_check.journal_segments(conn, schema)
        limit = started + RUN_TIMEOUT
        slow = None
        if cut is not None:
            limit = min(limit, started + cut.after_s + MAX_CUT_SECONDS)
            address = cluster.lab.address(cut.host)

            def sessions() -> None:
                run.stalled = hosts_check.sessions_of(conn, address)

            slow = (started + max(f.after_s for f in faults) + STALL_SECONDS, sessions)
        run.finished_before_restore = _wait_finished(app, ids, limit, slow)
        run.seconds = round(time.monotonic() - started, 3)
        if cut is not None:
            cut.log_offsets = {w.log.name: len(w.text()) for w in hosts.on(cut.host)}
            cluster.lab.restore(cut.host)
            cut.restored_after_s = round(time.monotonic() - started, 3)
            cut.restored_ms = db_now_ms(conn, schema)
            if not run.finished_before_restore:
                _wait_finished(app, ids, started + RUN_TIMEOUT)
                run.seconds = round(time.monotonic() - started, 3)
            cut.held = hosts_check.held_at(
                audit_rows(conn, schema), hosts.hostname(cut.host), cut.held_as_of_ms
            )
            hosts_check.wait_given_up(hosts, cut, time.monotonic() + GIVE_UP_TIMEOUT)
        codes = hosts.stop()
    except BaseException:
        conn.close()
        raise
    finally:
        hosts.kill_all()
        if cut is not None and cut.host in cluster.lab.cut_hosts:
            cluster.lab.restore(cut.host)
    rows = audit_rows(conn, schema)
    for fault in faults:
        fault.held = hosts_check.held_at(rows, hosts.hostname(fault.host), fault.held_as_of_ms)
    run.check = hosts_check.check(app, conn, schema, hosts, run, codes, LEASE_SECONDS)
    run.results = hosts_check.results(app)
    conn.close()
    run.failures = hosts_check.failures(run, baseline, PARENTS, LEASE_SECONDS)
    with connect(url) as c:
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')
    (rundir / "run.json").write_text(json.dumps(record(run), indent=1, default=str))
    return run


def record(run: Run) -> dict[str, Any]:
    """The run as plain data, without its results and journal snapshots."""
    out = {k: v for k, v in asdict(run).items() if k != "results"}
    for f in out["faults"]:
        f.pop("journal", None)
    return out


def describe(run: Run) -> str:
    c = run.check
    faults = ", ".join(
        f"{f.kind} host{f.host} at {f.after_s:.2f} s ({len(f.held)} held)" for f in run.faults
    )
    takeover = c.get("kill_takeover_s") or {}
    worst = max(takeover.values(), default=float("nan"))
    return (
        f"seed {run.seed}: {faults}; {run.seconds:.1f} s; lost {c.get('lost')}, "
        f"reruns {len(c.get('reruns', []))}, divergences {len(c.get('divergences', []))}, "
        f"results differ {c.get('results_differ')}, kill->takeover max {worst:.2f} s, "
        f"side effects run again {c.get('effects_run_again')} "
        f"({len(c.get('effects_run_again_unexplained', []))} outside faulted invocations), "
        f"cut: {len(c.get('cut_given_up', []))} of {len(c.get('cut_held', []))} held given up "
        f"({len(c.get('cut_worker_runs', []))} worker runs), "
        f"{c.get('cut_refused')} refusals; "
        + ("ok" if not run.failures else "FAILED: " + "; ".join(run.failures))
    )


@dataclass
class Campaign:
    baseline: Run
    runs: list[Run]
    seconds: float

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.runs if r.failures]


def run_campaign(
    seeds: list[int], workdir: Path | None = None, keep: Path | None = None
) -> Campaign:
    """The fault-free run, then one run per seed, all on one cluster."""
    why = unavailable()
    if why is not None:
        raise RuntimeError(f"the hosts campaign cannot run here: {why}")
    began = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="hosts-", dir=workdir))
    try:
        with Cluster(HOSTS) as cluster:
            baseline = run_once(cluster, 0, base, None)
            if baseline.failures:
                raise RuntimeError(f"the fault-free run failed: {baseline.failures}")
            runs = [run_once(cluster, s, base, baseline, baseline.seconds) for s in seeds]
    finally:
        if keep is not None:
            shutil.copytree(base, keep, dirs_exist_ok=True)
        shutil.rmtree(base, ignore_errors=True)
    return Campaign(baseline, runs, round(time.monotonic() - began, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="how many seeded runs")
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("--json", type=Path, help="write every run here")
    parser.add_argument("--keep", type=Path, help="copy the worker logs and events here")
    opts = parser.parse_args(argv)
    seeds = list(range(opts.first, opts.first + opts.seeds))
    campaign = run_campaign(seeds, keep=opts.keep)
    print(
        f"hosts campaign: {len(seeds)} seeds from {opts.first}, {campaign.seconds:.0f} s; "
        f"fault-free run {campaign.baseline.seconds:.1f} s"
    )
    for run in campaign.runs:
        print(describe(run))
    if opts.json:
        payload = {
            "seconds": campaign.seconds,
            "baseline_seconds": campaign.baseline.seconds,
            "runs": [record(r) for r in campaign.runs],
        }
        opts.json.write_text(json.dumps(payload, indent=1, default=str))
    return 1 if campaign.failed else 0


if __name__ == "__main__":
    sys.exit(main())
