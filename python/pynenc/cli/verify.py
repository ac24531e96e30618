"""`pynenc verify`: every page and record of a store checked, in child processes, so damage
that would crash a reader is reported, never a crash of the command."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pynenc.cli.command import Command
from pynenc.cli.target import DEFAULT_STORE, Target
from pynenc.errors import InvalidArgumentError
from pynenc.store import parse_url, store_path
from pynenc.verify import verify_store

__all__ = ["COMMANDS"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # the global --store (or PYNENC_STORE, or --app) names the store


def _store_dir(target: Target) -> Path:
    """The store's directory, found without opening it (opening a damaged store in this
    process is what verify must never do)."""
    if target.app_spec is not None:
        url = target.code_app().config.store
    else:
        url = target.store_url or os.environ.get("PYNENC_STORE") or DEFAULT_STORE
    if "://" not in url:
        return Path(url).expanduser()
    if parse_url(url).kind != "lmdb":
        raise InvalidArgumentError(
            "pynenc verify checks the pages of an embedded lmdb:// store; a PostgreSQL store's "
            "pages are checked by the server (data checksums) and by its pg_amcheck tool"
        )
    return store_path(url)


def _verify(target: Target, opts: argparse.Namespace) -> int:
    path = _store_dir(target)
    report = verify_store(path)
    if opts.json:
        findings = [vars(f) for f in report.findings]
        print(json.dumps({"store": str(path), "records": report.records, "damaged": findings}))
    else:
        for finding in report.findings:
            print(f"damaged: {finding}")
        verdict = f"{len(report.findings)} damaged" if report.findings else "no damage found"
        print(f"store {path}: {report.records} records checked, {verdict}")
    return 0 if report.ok else 1


COMMANDS = [
    Command(
        "verify",
        "check every page and record of a store; exit 1 if any is damaged",
        _arguments,
        _verify,
        description="Check every page of the store's data file and every record of its tables "
        "(checksums over key and value, journal layout, queue index), each walk in a child "
        "process, writing nothing. Prints one line per damaged thing and a summary; exits 1 "
        "when anything is damaged or there is no store at the path (default store: "
        "PYNENC_STORE, else lmdb://.pynenc).",
    ),
]
