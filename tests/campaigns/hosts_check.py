"""What a run of the hosts campaign is judged by (see `hosts.py`): the store's records, queue,
leases and journal, the lease audit, the body-start and side-effect events the app logs, and
the workers' own logs."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hosts_cluster import Hosts, audit_rows, host_of, live_leases

if TYPE_CHECKING:
    from .hosts import Fault, Run

#: Lines of a worker's log that say the engine itself failed, or that a worker stopped with
#: work still running (none is expected).
ENGINE_FAILURE = ("engine failure", "Traceback", "CRITICAL", "still running after the grace")
DIVERGED = ("NonDeterminismError", "diverge")


def journal_segments(conn: Any, schema: str) -> dict[str, str]:
    """Every journal segment in the store: `invocation:first_position` -> segment (hex)."""
    rows = conn.execute(f'SELECT invocation, first_position, segment FROM "{schema}".journal')
    return {f"{bytes(r[0]).hex()}:{r[1]}": bytes(r[2]).hex() for r in rows.fetchall()}


def sessions_of(conn: Any, address: str) -> list[dict[str, Any]]:
    """The server's sessions from `address`: state, transaction age, what they wait on, the
    sessions they block, and their last statement."""
    rows = conn.execute(
        "SELECT pid, state, extract(epoch FROM clock_timestamp() - xact_start), "
        "wait_event_type, wait_event, left(query, 160), "
        "(SELECT array_agg(a.pid) FROM pg_stat_activity a WHERE s.pid = ANY(pg_blocking_pids(a.pid))) "
        "FROM pg_stat_activity s WHERE client_addr = %s::inet",
        (address,),
    ).fetchall()
    keys = ("pid", "state", "xact_age_s", "wait_type", "wait", "query", "blocks")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def uid(hex_id: str) -> str:
    return str(uuid.UUID(hex=hex_id))


def given_up(hosts: Hosts, fault: Fault) -> dict[str, str]:
    """Invocations the cut host held (uuid) -> the first line its workers logged about each
    after the link came back: the lease lost (a write or renewal refused by fencing), or the
    run ended on finding it finished by another host (its completion, fenced, writes nothing)."""
    lines = [
        line
        for w in hosts.on(fault.host)
        for line in w.text()[fault.log_offsets.get(w.log.name, 0) :].splitlines()
        if "lease lost" in line or line.endswith("] finished")
    ]
    out = {}
    for inv in map(uid, fault.held):
        line = next((line for line in lines if inv in line), None)
        if line is not None:
            out[inv] = line
    return out


def worker_runs(hosts: Hosts, fault: Fault) -> set[str]:
    """The held invocations a worker thread of the host claimed and logged running with the
    held token (the others were claimed by a parent waiting on them, which logs nothing)."""
    lines = [line for w in hosts.on(fault.host) for line in w.text().splitlines()]
    return {
        uid(inv)
        for inv, (_owner, token, _expires) in fault.held.items()
        if any(f"[invocation {uid(inv)}]" in ln and ln.endswith(f"(token {token})") for ln in lines)
    }


def wait_given_up(hosts: Hosts, fault: Fault, deadline: float) -> None:
    while not worker_runs(hosts, fault) <= set(given_up(hosts, fault)):
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)


def events(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The app's events, and how many lines were torn (a process killed while writing)."""
    if not path.exists():
        return [], 0
    out, torn = [], 0
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            torn += 1
    return out, torn


def wait_holding(conn: Any, schema: str, hostname: str, timeout: float) -> None:
    """Return once `hostname` holds a live lease, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(host_of(lease[0]) == hostname for lease in live_leases(conn, schema).values()):
            return
        time.sleep(0.01)


def completions(rows: list[tuple[int, str, str, int, int]]) -> dict[str, int]:
    """When each invocation was first completed (database time): its lease row tombstoned,
    owner cleared and expiry 0 under the token of the run that finished it (a release takes a
    new token instead)."""
    token: dict[str, int] = {}
    done: dict[str, int] = {}
    for committed, inv, owner, tok, expires in rows:
        if not owner and not expires and token.get(inv) == tok and inv not in done:
            done[inv] = committed
        token[inv] = tok
    return done


def held_at(
    rows: list[tuple[int, str, str, int, int]], hostname: str, at_ms: int
) -> dict[str, tuple[str, int, int]]:
    """The leases `hostname` held at `at_ms`: invocation (hex) -> (owner, token, expires_ms) of
    each whose last version committed by then names a process of that host and is unexpired,
    unless the host completed it with that token before the lease ran out (a commit the host
    sent before the fault, landing just after it)."""
    latest: dict[str, tuple[str, int, int]] = {}
    for committed, inv, owner, token, expires in rows:
        if committed <= at_ms:
            latest[inv] = (owner, token, expires)
    held = {
        inv: lease
        for inv, lease in latest.items()
        if host_of(lease[0]) == hostname and lease[2] > at_ms
    }
    for committed, inv, owner, token, _expires in rows:
        if committed > at_ms and inv in held and not owner and token == held[inv][1]:
            if committed <= held[inv][2]:
                del held[inv]
    return held


def claims(rows: list[tuple[int, str, str, int, int]]) -> list[tuple[int, str, str]]:
    """(at_ms, invocation hex, owner) of every claim: a lease row taking a new token and
    naming an owner (a release or a completion names none; a renewal keeps the token)."""
    last: dict[str, int] = {}
    out = []
    for at, inv, owner, token, _expires in rows:
        if last.get(inv) != token:
            last[inv] = token
            if owner:
                out.append((at, inv, owner))
    return out


def takeovers(fault: Fault, hostname: str, claimed: list[tuple[int, str, str]]) -> dict[str, float]:
    """For each invocation the host held at the fault: seconds (database time) from the fault
    to its first claim by another host; missing when none claimed it."""
    out: dict[str, float] = {}
    for at, inv, owner in claimed:
        if inv in fault.held and inv not in out and at >= fault.at_ms:
            if host_of(owner) != hostname:
                out[inv] = round((at - fault.at_ms) / 1000, 3)
    return {uid(k): v for k, v in out.items()}


def results(app: Any) -> dict[int, Any]:
    return {
        inv.arguments["p"]: inv.result
        for inv in app.list_invocations(task_id="parent", status="success")
    }


def check(
    app: Any,
    conn: Any,
    schema: str,
    hosts: Hosts,
    run: Run,
    codes: dict[str, int | None],
    lease_seconds: float,
) -> dict[str, Any]:
    """Everything the run is judged by, as plain data (see `failures`)."""
    out: dict[str, Any] = {"exit_codes": codes}
    invocations = app.list_invocations()
    by_task: dict[str, list[Any]] = defaultdict(list)
    for inv in invocations:
        by_task[inv.task_id.rsplit(".", 1)[-1]].append(inv)
    statuses = {t: dict(Counter(i.status.value for i in invs)) for t, invs in by_task.items()}
    out["statuses"] = statuses
    out["lost"] = sum(i.status.value != "success" for i in by_task["parent"])
    out["children_unfinished"] = sum(i.status.value != "success" for i in by_task["child"])
    left = [uuid.UUID(bytes=i) for i in app.store.queued()]
    out["queued_left"] = len(left)
    out["queued_left_ids"] = {
        str(i): getattr(app.get_invocation(str(i)), "status", None) for i in left
    }
    out["leases_left"] = len(live_leases(conn, schema))

    happened, out["torn_event_lines"] = events(Path(hosts.env["HOSTS_LOG"]))
    # A body entered after its invocation's completion committed: a finished one run again.
    # (A stale run entered before and still going, as on a cut host, is not one.)
    rows = audit_rows(conn, schema)
    done = {uid(k): v for k, v in completions(rows).items()}
    out["reruns"] = [
        e
        for e in happened
        if e["event"] == "start" and e["inv"] in done and e["t"] * 1000 > done[e["inv"]]
    ]
    out["starts_seeing_finished"] = sum(
        e["event"] == "start" and e["status"] in ("success", "failed") for e in happened
    )
    starts = Counter(e["inv"] for e in happened if e["event"] == "start")
    out["body_starts"] = sum(starts.values())
    effects = Counter((e["what"], e["p"], e.get("k")) for e in happened if e["event"] == "effect")
    out["effects_run_again"] = sum(n - 1 for n in effects.values() if n > 1)
    # A side effect's function runs again only when its outcome was never recorded: its run
    # was killed, or cut off and fenced out, so its invocation was held by a faulted host.
    invocation_of = {
        ("work" if e["task"] == "child" else "summary", e["p"], e.get("k")): e["inv"]
        for e in happened
        if e["event"] == "start"
    }
    faulted = {uid(inv) for fault in run.faults for inv in fault.held}
    out["effects_run_again_unexplained"] = sorted(
        str(key) for key, n in effects.items() if n > 1 and invocation_of.get(key) not in faulted
    )

    divergences: list[str] = []
    final = journal_segments(conn, schema)
    for fault in run.faults:
        for key, segment in fault.journal.items():
            if final.get(key) != segment:
                divergences.append(f"journal segment {key} changed after the {fault.kind}")
    for inv in invocations:
        if not inv.status.finished:
            continue
        try:
            again = app.replay(inv.invocation_id)
        except Exception as exc:  # noqa: BLE001 - any failure to replay is a finding
            divergences.append(f"replay of {inv.invocation_id}: {type(exc).__name__}: {exc}")
            continue
        if again != inv.result:
            divergences.append(f"replay of {inv.invocation_id} returned another value")
    failures = []
    for w in hosts.workers:
        for line in w.text().splitlines():
            if any(word in line for word in DIVERGED):
                divergences.append(f"{w.log.name}: {line}")
            if any(word in line for word in ENGINE_FAILURE):
                failures.append(f"{w.log.name}: {line}")
    out["divergences"] = divergences
    out["engine_failures"] = failures

    claimed = claims(rows)
    out["claims"] = len(claimed)
    owners = {inv.invocation_id: inv for inv in invocations}
    for fault in run.faults:
        name = hosts.hostname(fault.host)
        taken = takeovers(fault, name, claimed)
        expiry = {uid(k): round((v[2] - fault.at_ms) / 1000, 3) for k, v in fault.held.items()}
        out[f"{fault.kind}_held"] = sorted(map(uid, fault.held))
        out[f"{fault.kind}_takeover_s"] = taken
        out[f"{fault.kind}_expiry_s"] = expiry
        out[f"{fault.kind}_finished_by_it"] = sorted(
            inv
            for inv in map(uid, fault.held)
            if owners.get(inv) is not None and host_of(owners[inv].owner or "") == name
        )
        if fault.kind == "cut":
            out["cut_given_up"] = sorted(given_up(hosts, fault))
            out["cut_worker_runs"] = sorted(worker_runs(hosts, fault))
            out["cut_refused"] = sum(w.text().count("lease lost") for w in hosts.on(fault.host))
            # A lease write of the cut host accepted after its link came back would be a
            # renewal or claim of a lease another host had taken over.
            out["cut_lease_writes_after_restore"] = [
                (committed, uid(inv), token)
                for committed, inv, owner, token, _ in rows
                if owner and host_of(owner) == name and committed > fault.restored_ms
            ]
    out["lease_seconds"] = lease_seconds
    return out


def failures(run: Run, baseline: Run | None, parents: int, lease_seconds: float) -> list[str]:
    """What is wrong with the run, one line each; none when it holds."""
    c = run.check
    out = []
    if c["lost"] or len(run.results) != parents:
        out.append(f"{c['lost']} workflows lost ({len(run.results)} of {parents} finished)")
    if c["children_unfinished"] or c["queued_left"] or c["leases_left"]:
        out.append(
            f"left behind: {c['children_unfinished']} children unfinished, "
            f"{c['queued_left']} queued, {c['leases_left']} live leases"
        )
    if c["reruns"]:
        out.append(f"{len(c['reruns'])} bodies ran after their invocation had finished")
    if c["divergences"]:
        out.append(f"{len(c['divergences'])} divergences: {c['divergences'][:3]}")
    if c["effects_run_again_unexplained"]:
        out.append(
            f"side effects run again in invocations no faulted host held: "
            f"{c['effects_run_again_unexplained'][:5]}"
        )
    if c["engine_failures"]:
        out.append(f"engine failures: {c['engine_failures'][:3]}")
    if baseline is not None:
        differ = sorted(p for p in baseline.results if run.results.get(p) != baseline.results[p])
        c["results_differ"] = len(differ)
        if differ:
            out.append(f"results differ from the fault-free run for parents {differ[:10]}")
    else:
        c["results_differ"] = 0
    expected = {
        name: (
            -9
            if any(f.kind == "kill" and name.startswith(f"host{f.host}-") for f in run.faults)
            else 0
        )
        for name in c["exit_codes"]
    }
    if c["exit_codes"] != expected:
        out.append(f"exit codes {c['exit_codes']}, expected {expected}")
    for fault in run.faults:
        held, taken = c[f"{fault.kind}_held"], c[f"{fault.kind}_takeover_s"]
        if set(taken) != set(held):
            out.append(
                f"{fault.kind}: {len(held) - len(taken)} of {len(held)} held never taken over"
            )
        if c[f"{fault.kind}_finished_by_it"]:
            out.append(f"{fault.kind}: outcomes of the faulted host stored after the fault")
        if fault.kind == "kill" and taken and max(taken.values()) > lease_seconds + 1.0:
            out.append(f"kill: takeover took {max(taken.values()):.2f} s > lease + 1 s")
        if fault.kind == "cut":
            if not run.finished_before_restore:
                out.append(
                    "the remaining hosts did not finish every workflow while the link was cut"
                )
            if c["cut_lease_writes_after_restore"]:
                out.append(
                    f"cut: lease writes accepted after the link came back: {c['cut_lease_writes_after_restore'][:3]}"
                )
            # Each run of a worker thread ends with a line (lease lost, or found finished);
            # a child a waiting parent had claimed ends with that parent, silently.
            missing = set(c["cut_worker_runs"]) - set(c["cut_given_up"])
            if missing:
                out.append(
                    f"cut: {len(missing)} runs of held invocations not ended after the link "
                    f"came back: {sorted(missing)}"
                )
    return out
