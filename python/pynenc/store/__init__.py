"""Stores: where journals, invocation records and workflow data live, named by a URL.

- `lmdb://PATH` is the embedded store (one LMDB environment directory, shared safely by the
  processes of one machine).
- `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME]` is a schema of a
  PostgreSQL database, shared by workers on any number of hosts (`docs/operations.md`).
  `schema` defaults to `pynenc`; give each app its own. Every other query parameter is the
  server's connection option (`sslmode` excepted: this build speaks without TLS, so keep the
  server on a private network or a local socket).

The engine talks to either through the same contract (`pynenc._core.Store`); nothing outside
this package asks which kind it has.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from pynenc._core import Store
from pynenc.errors import InvalidArgumentError
from pynenc.store.lmdb import LmdbStore, StoreOptions, report_migration

__all__ = [
    "LmdbStore",
    "StoreOptions",
    "StoreUrl",
    "open_store",
    "parse_url",
    "store_path",
]

_POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL.

    Attributes:
        kind: `"lmdb"` or `"postgresql"`.
        path: The LMDB directory (`~` expanded), or None.
        dsn: The PostgreSQL connection URL without the `schema` parameter, or None.
        schema: The PostgreSQL schema holding the store, or None.
    """

    kind: str
    path: Path | None = None
    dsn: str | None = None
    schema: str | None = None


def parse_url(url: str) -> StoreUrl:
    """Parse a store URL; nothing is opened.

    Raises:
        InvalidArgumentError: The URL names no supported store.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        raise InvalidArgumentError(
            f"store URL {url!r} is not of the form lmdb://PATH (e.g. lmdb://.pynenc) or "
            "postgresql://USER@HOST/DATABASE"
        )
    if "\0" in rest:
        raise InvalidArgumentError(f"store URL {url!r} holds a NUL character, which no URL can")
    if scheme == "lmdb":
        return StoreUrl("lmdb", path=Path(rest).expanduser())
    if scheme in _POSTGRES_SCHEMES:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for key, value in query if key == "schema"]
        if len(schemas) > 1:
            raise InvalidArgumentError(f"store URL {_redact(url)} names ?schema= more than once")
        if any(key == "sslmode" and value not in ("disable", "prefer") for key, value in query):
            raise InvalidArgumentError(
                f"store URL {_redact(url)} asks for TLS (sslmode), which this build does not "
                "speak: reach the server over a private network or a local socket"
            )
        rest_query = urllib.parse.urlencode([(k, v) for k, v in query if k != "schema"])
        dsn = urllib.parse.urlunsplit(parts._replace(query=rest_query))
        return StoreUrl("postgresql", dsn=dsn, schema=schemas[0] if schemas else "pynenc")
    raise InvalidArgumentError(
        f"store URL {_redact(url)} has an unsupported scheme {scheme!r}: use lmdb://PATH or "
        "postgresql://USER@HOST/DATABASE"
    )


def open_store(
    url: str,
    *,
    sync: bool = True,
    flush_interval_ms: int = 5,
    unavailable_seconds: float = 30.0,
    create: bool = True,
) -> Store:
    """Open the store named by `url` (the raw store the engine drives; `LmdbStore` is the
    embedded store's typed face for direct use). With `create=False`, a store that does not
    exist yet is an error instead of being created.

    Raises:
        InvalidArgumentError: The URL names no supported store, or (with `create=False`) no
            store is there.
        StoreUnavailableError: The PostgreSQL server could not be reached for
            `unavailable_seconds`.
    """
    parsed = parse_url(url)
    if parsed.kind == "lmdb":
        assert parsed.path is not None
        if not create and not (parsed.path / "data.mdb").exists():
            raise InvalidArgumentError(f"no store at {parsed.path}")
        store = Store(parsed.path, sync=sync, flush_interval_ms=flush_interval_ms)
    else:
        assert parsed.dsn is not None and parsed.schema is not None
        store = Store.postgres(
            parsed.dsn,
            schema=parsed.schema,
            flush_interval_ms=flush_interval_ms,
            unavailable_seconds=unavailable_seconds,
            create=create,
        )
    report_migration(store)
    return store


def store_path(url: str) -> Path:
    """The directory of the embedded store named by `url` (`~` expanded); nothing is opened.

    Raises:
        InvalidArgumentError: The URL names no embedded store.
    """
    parsed = parse_url(url)
    if parsed.path is None:
        raise InvalidArgumentError(
            f"store URL {_redact(url)} names a {parsed.kind} store, not an lmdb://PATH directory"
        )
    return parsed.path


def _redact(url: str) -> str:
    """`url` with its password (if any) replaced by `***`."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return repr(url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return repr(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))
