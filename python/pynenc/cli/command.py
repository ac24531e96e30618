"""What a subcommand of `pynenc` is: its name, help, options and what it runs.

A new subcommand is a `Command` added to `COMMANDS` in `pynenc.cli` (the one place they are
registered); its `run` gets the resolved global options (`Target`) and its own options, and
returns the exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from pynenc.cli.target import Target

__all__ = ["Command"]


@dataclass(frozen=True)
class Command:
    """One subcommand.

    Attributes:
        name: What follows `pynenc` (`list`, `show`, ...).
        help: One line, in `pynenc --help`.
        description: The paragraph of `pynenc NAME --help` (defaults to `help`).
        arguments: Adds the command's own options to its parser (every option states its
            default in its help).
        run: Does the work: `run(target, opts)` returns the exit code (0 ok, 1 failure).
        json: Whether the command takes `--json` (printing JSON instead of text).
        own_json: The command defines its own `--json` option (after the command), in place
            of the global flag there.
        app_on_store: `--store` may go with `--app`: the app's code on that store.
    """

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Target, argparse.Namespace], int]
    description: str | None = None
    json: bool = True
    own_json: bool = False
    app_on_store: bool = False
