"""Tasks with a forbidden call on every line marked `expect`."""

import datetime as dt
import os
import secrets
import uuid
from datetime import date, datetime
from pathlib import Path
from time import sleep
from time import time as now

import shop.helpers as helpers
from shop.app import app

from .helpers import load_settings, stamp


@app.task
def checkout(order_id: str) -> str:
    return f"{order_id}-{stamp()}"


@app.task
def clocks() -> list[object]:
    return [
        now(),  # expect: PNR001
        datetime.now(),  # expect: PNR001
        dt.datetime.utcnow(),  # expect: PNR001
        date.today(),  # expect: PNR001
        dt.date.today(),  # expect: PNR001
        helpers.safe_clock(),
    ]


@app.task(max_retries=2)
def waits() -> None:
    sleep(1.0)  # expect: PNR003


@app.task
def randomness() -> list[object]:
    return [
        helpers.ping(3),
        secrets.token_hex(8),  # expect: PNR005
        os.urandom(8),  # expect: PNR005
        uuid.uuid4(),  # expect: PNR006
        uuid.uuid1(),  # expect: PNR006
        uuid.uuid5(uuid.NAMESPACE_URL, "fixed"),
        sorted([1, 2], key=lambda _: secrets.randbelow(9)),  # expect: PNR005
    ]


@app.task
def environment() -> list[object]:
    home = os.environ["HOME"]  # expect: PNR007
    user = os.environ.get("USER")  # expect: PNR007
    shell = os.getenv("SHELL")  # expect: PNR007
    return [home, user, shell]


@app.task
def files(path: str) -> list[object]:
    with open(path) as handle:  # expect: PNR008
        text = handle.read()
    return [text, Path(path).read_text(), Path(path).read_bytes()]  # expect: PNR008, PNR008


@app.task
def recorded(path: str) -> list[object]:
    wf = recorded.wf
    at = wf.side_effect("clock", lambda: now())
    token = recorded.wf.side_effect("token", fn=lambda: secrets.token_hex(8))
    settings = wf.side_effect("settings", load_settings)

    def read_input() -> str:
        return Path(path).read_text()

    def count_words(text: str) -> int:
        return len(text.split()) + int(datetime.now().timestamp())  # expect: PNR001

    content = recorded.wf.deterministic._deterministic_operation("input", read_input)
    return [at, token, settings, content, count_words(content)]


@app.task
def suppressed() -> list[object]:
    return [
        now(),  # pynenc: ignore[PNR001]
        uuid.uuid4(),  # pynenc: ignore
        os.getenv("X"),  # pynenc: ignore[PNR007, PNR001]
        now(),  # pynenc: ignore[PNR006]  # expect: PNR001
        helpers.tick(),  # pynenc: ignore
        dt.datetime.now(
            dt.UTC,
        ),  # pynenc: ignore[PNR001]
    ]


def not_a_task() -> float:
    return now() + float(uuid.uuid4().int)
