"""What a command works on: the app named by `--app` (importing user code) or the store named
by `--store` / `PYNENC_STORE` (importing nothing)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass, field

from pynenc.app import Pynenc
from pynenc.errors import InvalidArgumentError
from pynenc.registry import check_modules
from pynenc.runner.replay import on_store

__all__ = ["DEFAULT_STORE", "Target", "UsageError", "load_app"]

#: The store read when neither `--app`, `--store` nor `PYNENC_STORE` names one (the app default).
DEFAULT_STORE = "lmdb://.pynenc"


class UsageError(Exception):
    """The command line asks for something it cannot do (exit code 2, like argparse)."""


def load_app(spec: str) -> Pynenc:
    """Import `MODULE:ATTR` and return the app it names."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"--app must be MODULE:ATTR (e.g. myproject.tasks:app), got {spec!r}")
    sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"cannot import {module_name!r} for --app: {exc}") from None
    if not hasattr(module, attr):
        raise SystemExit(f"module {module_name!r} has no attribute {attr!r} for --app {spec}")
    app = getattr(module, attr)
    if not isinstance(app, Pynenc):
        raise SystemExit(f"{spec} is not a Pynenc app (found {type(app).__name__})")
    app._registry.app_module = module_name
    return app


@dataclass
class Target:
    """The global options of one command line, resolved on demand."""

    command: str
    app_spec: str | None
    store_url: str | None
    include: list[str] = field(default_factory=list)
    _app: Pynenc | None = None

    @classmethod
    def from_options(cls, opts: argparse.Namespace, *, app_on_store: bool = False) -> Target:
        """The options of `opts`; `app_on_store` lets `--store` name another store for the
        `--app` app (a command that runs the app's code on a store it names)."""
        if opts.app is not None and opts.store is not None and not app_on_store:
            raise UsageError(
                f"give --app or --store, not both (--app {opts.app} reads the store its app "
                f"names; --store {opts.store} reads that store without importing any code)"
            )
        return cls(opts.command, opts.app, opts.store, list(opts.include))

    def code_app(self) -> Pynenc:
        """The `--app` app with its task modules imported: for commands that run tasks."""
        if self.app_spec is None:
            raise UsageError(
                f"pynenc {self.command} runs your tasks, so it needs --app MODULE:ATTR "
                "(e.g. pynenc --app myproject.tasks:app " + self.command + ")"
            )
        return self._load(create=self.command == "worker")

    def read_app(self) -> Pynenc:
        """An app to read the store with: the `--app` app when given, else a bare app on
        `--store`, `PYNENC_STORE` or the default store, with no user code imported."""
        if self.app_spec is not None:
            return self._load(create=False)
        if self.include:
            raise UsageError(
                "--include imports task modules, which a reading command with --store never "
                "does: drop it, or name the app with --app"
            )
        if self._app is None:
            url = self.store_url or os.environ.get("PYNENC_STORE") or DEFAULT_STORE
            try:
                app = Pynenc("pynenc-cli", store=url)
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"{exc} (from --store or PYNENC_STORE)") from None
            _require_store(app, "--store or PYNENC_STORE")
            self._app = app
        return self._app

    def _load(self, *, create: bool) -> Pynenc:
        if self._app is None:
            assert self.app_spec is not None
            app = load_app(self.app_spec)
            # The app's own `include` modules too: one that cannot be imported fails here, once.
            app._registry.import_included(check_modules("--include", self.include))
            if self.store_url is not None:  # the app's code on the store --store names
                app = on_store(app, self.store_url)
            if not create:
                where = "the app's store URL (store=... or PYNENC_STORE)"
                _require_store(app, where if self.store_url is None else "--store")
            self._app = app
        return self._app


def _require_store(app: Pynenc, where: str) -> None:
    """Reading commands never create a store: a mistyped path is not an empty store."""
    try:
        app.open_existing_store()
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{exc}: check {where}") from None
