"""The `pynenc` command: `pynenc [--app MODULE:ATTR | --store URL] COMMAND ...`.

The global options (`--app`, `--store`, `--include`, `--json`, `--log-level`, `--log-format`)
go before or after the command. Reading commands (`list`, `show`, `tree`, `timeline`,
`status`, `export`) need only a store and never import user code with `--store`; commands that
run tasks (`worker`, `recover`, `replay`, `check`) need `--app`.

To add a subcommand, write a `Command` (`pynenc.cli.command`) in a module of its own and add
it to `COMMANDS` below: its parser gets the global options, its help and exit codes follow the
convention, and `main` dispatches to it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pynenc.cli import cancel, check, export, inspect, manage, prune, send, timeline, verify
from pynenc.cli.command import Command
from pynenc.cli.read import show, status
from pynenc.cli.target import DEFAULT_STORE, Target, UsageError, load_app
from pynenc.errors import PynencError
from pynenc.logging import FORMATS, install

__all__ = ["COMMANDS", "Command", "load_app", "main", "show", "status"]

#: Every subcommand, in the order `pynenc --help` lists them: the one place they are registered.
COMMANDS: list[Command] = [
    *inspect.COMMANDS,
    *manage.COMMANDS,
    *check.COMMANDS,
    *cancel.COMMANDS,
    *send.COMMANDS,
    *verify.COMMANDS,
    *timeline.COMMANDS,
    *export.COMMANDS,
    *prune.COMMANDS,
]

#: The levels `--log-level` accepts (any case).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL")

#: The global options, by destination, as `(flags, add_argument keywords)`.
_GLOBALS: dict[str, tuple[tuple[str, ...], dict[str, object]]] = {
    "app": (
        ("--app",),
        {
            "metavar": "MODULE:ATTR",
            "help": "the app, e.g. myproject.tasks:app; imports that module (your code), and "
            "its store is the one used; needed by worker, recover and replay (default: none)",
        },
    ),
    "store": (
        ("--store",),
        {
            "metavar": "URL",
            "help": "the store to read, lmdb://PATH, without importing any code (reading "
            f"commands only; default: $PYNENC_STORE, else {DEFAULT_STORE})",
        },
    ),
    "include": (
        ("--include",),
        {
            "action": "append",
            "metavar": "MODULE",
            "help": "a module that defines tasks of the app, imported at start, with --app "
            "(repeatable; default: none)",
        },
    ),
    "json": (
        ("--json",),
        {
            "action": "store_const",
            "const": True,
            "help": "print JSON for machines instead of text (keys in docs/operations.md; "
            "default: text)",
        },
    ),
    "log_level": (
        ("--log-level",),
        {
            "type": str.upper,
            "choices": LOG_LEVELS,
            "metavar": "LEVEL",
            "help": "logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL, any case "
            "(default INFO)",
        },
    ),
    "log_format": (
        ("--log-format",),
        {
            "choices": tuple(FORMATS),
            "metavar": "FORMAT",
            "help": "log lines on standard error: text (TIME LEVEL LOGGER [wf=ID inv=ID] "
            "MESSAGE) or json (one object per line, keys in docs/logging.md; default text)",
        },
    ),
}
_DEFAULTS: dict[str, object] = {
    "app": None,
    "store": None,
    "include": None,
    "json": None,
    "log_level": None,
    "log_format": None,
}

EPILOG = """\
Reading commands (list, show, tree, timeline, status, verify, export) need only a store:
--store URL or PYNENC_STORE (importing no code), or --app; so do cancel, signal and prune,
which write to it. Commands that run tasks (worker, recover, replay, check) need --app; check
also takes --store, the store to check the app's code on.
`pynenc lint PATH...` checks task source files and needs neither (pynenc lint --help).
Global options go before or after the command. Exit codes: 0 done, 1 failed (or not found),
2 usage error. See docs/operations.md."""


def _add_globals(parser: argparse.ArgumentParser, suffix: str) -> None:
    """Add the global options; after a command, one of its own options of the same flag
    (`pynenc signal ... --json VALUE`) takes that flag instead."""
    group = parser.add_argument_group("global options (before or after the command)")
    taken = set(parser._option_string_actions)
    for dest, (flags, keywords) in _GLOBALS.items():
        if taken.intersection(flags):
            continue
        group.add_argument(*flags, dest=dest + suffix, default=None, **keywords)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pynenc",
        description="pynenc-replay: inspect, run and recover durable workflows",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_globals(parser, "")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.arguments(sub)
        _add_globals(sub, "_after")
    return parser


def _merge(opts: argparse.Namespace) -> None:
    """The global options given after the command win over (or, for --include, add to)
    those given before it."""
    for dest in _GLOBALS:
        after = getattr(opts, dest + "_after", None)
        before = getattr(opts, dest)
        if dest == "include":
            value: object = [*(before or []), *(after or [])]
        else:
            value = after if after is not None else before
        setattr(opts, dest, _DEFAULTS[dest] if value is None else value)
        if hasattr(opts, dest + "_after"):
            delattr(opts, dest + "_after")
    opts.json = bool(opts.json)
    opts.log_level = opts.log_level or "INFO"
    opts.log_format = opts.log_format or "text"


def main(argv: list[str] | None = None) -> int:
    """Run one command line; returns the exit code (0 done, 1 failed, 2 usage error)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["lint"]:
        # `pynenc lint PATH...` reads source files only: no app, no store, no user import.
        from pynenc.lint.command import main as lint_main

        return lint_main(args[1:])
    opts = build_parser().parse_args(args)
    _merge(opts)
    opts.argv = args
    # Every line, your tasks' own too, carries the ids of the invocation it concerns.
    handler = logging.StreamHandler()
    handler.setFormatter(FORMATS[opts.log_format]())
    install(handler)
    logging.basicConfig(level=opts.log_level, handlers=[handler])
    command = next(c for c in COMMANDS if c.name == opts.command)
    try:
        target = Target.from_options(opts, app_on_store=command.app_on_store)
        return command.run(target, opts)
    except UsageError as exc:
        print(f"pynenc {opts.command}: {exc}", file=sys.stderr)
        return 2
    except PynencError as exc:
        print(f"pynenc: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`pynenc list | head`): nothing more to say, and no traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
