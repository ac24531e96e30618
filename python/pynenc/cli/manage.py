"""The commands that run tasks: `worker`, `recover`, `replay`. They need `--app MODULE:ATTR`,
which imports the code of the tasks."""

from __future__ import annotations

import argparse
from typing import Any

from pynenc.cli import render
from pynenc.cli.command import Command
from pynenc.cli.target import Target
from pynenc.errors import NonDeterminismError, PynencError
from pynenc.invocation import InvocationStatus, describe_exception

__all__ = ["COMMANDS"]


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="invocations run at once, in threads: 1 to 1024 (default 1)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds running invocations get to finish on SIGTERM/SIGINT, 0 to 86,400 "
        "(default 30)",
    )


def _worker(target: Target, opts: argparse.Namespace) -> int:
    from pynenc.runner.worker import Worker

    Worker(target.code_app(), concurrency=opts.concurrency, grace_seconds=opts.grace).run()
    return 0


def _none(parser: argparse.ArgumentParser) -> None:
    return None


def _recover(target: Target, opts: argparse.Namespace) -> int:
    app = target.code_app()
    with render.progress("recovering", enabled=not opts.json) as update:
        resumed, diverged, unreadable = app._recover(update)
    outcome = {
        "recovered": [
            {"invocation_id": i.invocation_id, "task": i.task_id, "status": i.status.value}
            for i in resumed
        ],
        "diverged": [{"error": describe_exception(exc)} for exc in diverged],
        "unreadable": [{"error": describe_exception(exc)} for exc in unreadable],
    }
    if opts.json:
        render.print_json(outcome)
    else:
        out = render.console()
        for inv in outcome["recovered"]:
            out.print(f"recovered {inv['invocation_id']} {inv['task']}: {inv['status']}")
        for item in outcome["diverged"] + outcome["unreadable"]:
            out.print(f"left as it was: {item['error']}", markup=False)
        out.print(
            f"recovered {len(resumed)}, diverged {len(diverged)}, unreadable {len(unreadable)}"
        )
    return 1 if diverged or unreadable else 0


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "invocation_ids",
        metavar="ID",
        nargs="*",
        help="finished invocations to replay (default: none, unless --all)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="replay every finished top-level invocation (default: only the IDs given)",
    )
    parser.add_argument(
        "--task",
        metavar="TASK",
        help="with --all, only invocations of this task: its full id or last part (default: any)",
    )


def _replay(target: Target, opts: argparse.Namespace) -> int:
    app = target.code_app()
    ids: list[str] = list(opts.invocation_ids)
    if opts.all:
        ids += [
            inv.invocation_id
            for inv in app.list_invocations(task_id=opts.task, top_level=True)
            if inv.status.finished and inv.invocation_id not in ids
        ]
    if not ids:
        from pynenc.cli.target import UsageError

        raise UsageError("pynenc replay needs invocation ids, or --all")
    replayed: list[dict[str, Any]] = []
    diverged: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    with render.progress("replaying", enabled=not opts.json) as update:
        for done, invocation_id in enumerate(ids):
            update(done, len(ids))
            inv = app.get_invocation(invocation_id)
            try:
                app.replay(invocation_id)
            except NonDeterminismError as exc:
                diverged.append({"invocation_id": invocation_id, "error": describe_exception(exc)})
                continue
            except PynencError as exc:
                if inv is None or not inv.status.finished:
                    errors.append({"invocation_id": invocation_id, "error": str(exc)})
                    continue
                if inv.status is not InvocationStatus.FAILED:
                    errors.append({"invocation_id": invocation_id, "error": str(exc)})
                    continue
            except Exception as exc:  # noqa: BLE001 - the task's own error, judged here
                if inv is None or inv.status is not InvocationStatus.FAILED:
                    errors.append(
                        {
                            "invocation_id": invocation_id,
                            "error": "it returned when it ran, but the code now raises "
                            f"{describe_exception(exc)} after replaying every recorded entry",
                        }
                    )
                    continue
            assert inv is not None
            replayed.append(
                {"invocation_id": invocation_id, "task": inv.task_id, "status": inv.status.value}
            )
        update(len(ids), len(ids))
    outcome = {"replayed": replayed, "diverged": diverged, "errors": errors}
    if opts.json:
        render.print_json(outcome)
    else:
        out = render.console()
        for item in replayed:
            out.print(f"replayed {item['invocation_id']} {item['task']}: same as recorded")
        for item in diverged:
            out.print(f"diverged {item['invocation_id']}: {item['error']}", markup=False)
        for item in errors:
            out.print(f"cannot replay {item['invocation_id']}: {item['error']}", markup=False)
        out.print(f"replayed {len(replayed)}, diverged {len(diverged)}, errors {len(errors)}")
    return 1 if diverged or errors else 0


COMMANDS = [
    Command(
        "worker",
        "run queued invocations until SIGTERM/SIGINT",
        _worker_arguments,
        _worker,
        description="Claim queued invocations of the store of --app and run them until "
        "SIGTERM or SIGINT; then let running ones finish within --grace seconds.",
        json=False,
    ),
    Command(
        "recover",
        "resume invocations whose process died; print a summary",
        _none,
        _recover,
        description="Resume every invocation whose owning process died (at once when it ran "
        "on this machine, else once its lease expired), from where it stopped. Prints each "
        "resumed invocation and a summary line (recovered K, diverged M, unreadable U); a "
        "progress bar on standard error when more than one is resumed. Exit code 1 when an "
        "invocation diverged or could not be read (it is left as it was).",
    ),
    Command(
        "replay",
        "re-run finished invocations against their journals; print a summary",
        _replay_arguments,
        _replay,
        description="Re-run finished invocations against their journals (nothing is "
        "written, no child runs again) and report those whose code now diverges. Prints a "
        "summary line (replayed N, diverged M, errors E); a progress bar on standard error "
        "when more than one is replayed. Exit code 1 when one diverged or could not be "
        "replayed.",
    ),
]
