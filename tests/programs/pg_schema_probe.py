"""Run by tests/test_postgres_server.py as a pytest session of its own, so that the outer test
can look at the server after this session's `store_url` fixture has torn down."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import postgres_server
import pytest


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_fills_its_schema(store_url: str, postgres_url: str) -> None:
    (schema,) = parse_qs(urlsplit(store_url).query)["schema"]
    assert re.fullmatch(r"t_[0-9a-f]{16}", schema)
    assert store_url == postgres_server.with_schema(postgres_url, schema)
    with postgres_server.connect(store_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".kv (k text PRIMARY KEY, v text)')
        conn.execute(f"INSERT INTO \"{schema}\".kv VALUES ('a', 'b')")
        count = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    assert count == (1,)
    out = os.environ.get("PG_SCHEMA_PROBE_OUT")
    if out:
        Path(out).write_text(schema)
