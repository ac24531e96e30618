"""An independent reader of the on-disk format (docs/journal-format.md).

It uses only the `lmdb` package, `struct` and a CRC32C written here, runs in its own process,
and must decode every record the Rust store wrote: if the document and the code disagree,
this test fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import blake3
from conftest import run_python

from pynenc import Pynenc, codec
from pynenc.store.lmdb import LmdbStore, StoreOptions

READER = r"""
import json, struct, sys
import lmdb

def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF

assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value

def uleb(buf, at):
    value = shift = 0
    while True:
        byte = buf[at]; at += 1
        value |= (byte & 0x7F) << shift; shift += 7
        if not byte & 0x80:
            return value, at

def text(buf, at):
    n, at = uleb(buf, at)
    return buf[at:at + n].decode(), at + n

def payload(kind, p):
    if kind == 1: return {"random": struct.unpack("<Q", p)[0]}
    if kind == 2: return {"uuid": p.hex()}
    if kind == 3: return {"time": struct.unpack("<q", p)[0]}
    if kind == 4:
        name, at = text(p, 0); return {"side_effect": name, "value": p[at:].hex()}
    if kind == 5: return {"child": p[:16].hex(), "digest": p[16:32].hex(), "task": p[32:].decode()}
    if kind == 6:
        key, at = text(p, 0)
        return {"read": key, "value": p[at + 1:].hex() if p[at] == 1 else None}
    if kind == 7:
        key, at = text(p, 0); return {"write": key, "digest": p[at:].hex()}
    if kind == 8:
        name, at = text(p, 0); return {"side_effect_error": name, "error": p[at:].hex()}
    if kind == 9: return {"patch": p.decode()}
    raise ValueError(kind)

def segment(buf, first):
    assert buf[0] == 1, "segment version"
    at, out, codes = 1, [], []
    while at < len(buf):
        start = at
        kind, flags = buf[at], buf[at + 1]; at += 2
        n, at = uleb(buf, at)
        entry = {"pos": first + len(out), **payload(kind, buf[at:at + n])}; at += n
        if flags & 2:  # interned: code index, its (file, function) when new, line
            index, at = uleb(buf, at)
            if index == len(codes):
                file, at = text(buf, at)
                function, at = text(buf, at)
                codes.append([file, function])
            line, at = uleb(buf, at)
            entry["site"] = [codes[index][0], line, codes[index][1]]
        elif flags & 1:
            file, at = text(buf, at)
            line, at = uleb(buf, at)
            entry["site"] = [file, line]
        (stored,) = struct.unpack("<I", buf[at:at + 4])
        assert stored == crc32c(buf[start:at]), "checksum"
        at += 4
        out.append(entry)
    return out

# lock=False: the store's LMDB (0.9.70, lock format 2) and this package's (0.9.x, lock format
# 1) share the data format but not the lock file; no writer is running now.
env = lmdb.open(sys.argv[1], max_dbs=16, readonly=True, lock=False, subdir=True)
meta = env.open_db(b"meta", create=False)
TAGS = {1: "journal", 2: "invocations", 3: "data", 4: "queue", 5: "queued", 6: "leases",
        7: "counters"}
result = {"journal": {}, "queue": [], "leases": {}, "counters": {}, "data": {}}
with env.begin() as txn:
    (result["format_version"],) = struct.unpack(">I", txn.get(b"format_version", db=meta))
    tables = {name: {} for name in TAGS.values()}
    for key, value in txn.cursor():  # the main database: tag ‖ key, and the name "meta"
        if key == b"meta":
            continue
        # Every value ends with CRC-32C(key length u16 LE ‖ key ‖ value), little-endian.
        value, check = value[:-4], struct.unpack("<I", value[-4:])[0]
        assert check == crc32c(struct.pack("<H", len(key)) + key + value), key
        tables[TAGS[key[0]]][key[1:]] = value
    ends = {}
    for key, value in tables["journal"].items():
        inv, first = key[:16].hex(), struct.unpack(">Q", key[16:])[0]
        if first == 2**64 - 1:  # the journal's end record: its number of entries
            ends[inv] = struct.unpack(">Q", value)[0]
            continue
        result["journal"].setdefault(inv, []).extend(segment(value, first))
    assert ends == {inv: len(j) for inv, j in result["journal"].items()}, ends
    for key, value in tables["queue"].items():
        seq, inv = struct.unpack(">Q", key[:8])[0], key[8:].hex()
        assert value == b"" and struct.unpack(">Q", tables["queued"][key[8:]])[0] == seq
        result["queue"].append([seq, inv])
    for key, value in tables["leases"].items():
        expires, token = struct.unpack(">QQ", value[-16:])
        result["leases"][key.hex()] = [value[:-16].decode(), expires, token]
    for key, value in tables["counters"].items():
        result["counters"][key.decode()] = struct.unpack(">Q", value)[0]
    result["data"] = {k.hex(): v.hex() for k, v in tables["data"].items()}
print(json.dumps(result))
"""


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def text(s: str) -> bytes:
    return uleb(len(s.encode())) + s.encode()


def test_an_independent_reader_decodes_everything_the_store_wrote(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = LmdbStore(path, StoreOptions(sync=False, map_size=1 << 20))
    inv, child, digest = uuid.uuid4().bytes, uuid.uuid4().bytes, os.urandom(16)
    value = os.urandom(300)  # long enough for a multi-byte ULEB128 length
    entries = [
        (1, (2**64 - 5).to_bytes(8, "little"), None),
        (2, uuid.UUID(int=7, version=4).bytes, ("app/flows.py", 12)),
        (3, (-(2**40)).to_bytes(8, "little", signed=True), None),
        (4, text("charge") + value, ("app/flows.py", 300, "order")),
        (5, child + digest + b"billing.charge", None),
        (6, text("tracking") + b"\x01" + b"\xa1ab", None),
        (6, text("missing") + b"\x00", None),
        (7, text("tracking") + digest, None),
        (8, text("refund") + value, None),
        (9, b"add-fraud-check", ("app/flows.py", 40)),
    ]
    store._core._append_journal(inv, 0, entries)
    many = uuid.uuid4().bytes
    store._core._append_journal(many, 0, [(1, i.to_bytes(8, "little")) for i in range(5000)])
    store.enqueue(inv)
    store.enqueue(many)
    store.put("data", b"wf/key", b"\x00\x01")
    store.flush()
    claim = store.claim(b"worker-1", 30_000, 1_000)
    assert claim is not None
    del store

    got = run_python(READER, str(path))

    assert got["format_version"] == 5
    journal = got["journal"][inv.hex()]
    assert [e["pos"] for e in journal] == list(range(len(entries)))
    assert journal[0] == {"pos": 0, "random": 2**64 - 5}
    assert journal[1] == {
        "pos": 1,
        "uuid": uuid.UUID(int=7, version=4).bytes.hex(),
        "site": ["app/flows.py", 12],
    }
    assert journal[2]["time"] == -(2**40)
    assert journal[3] == {
        "pos": 3,
        "side_effect": "charge",
        "value": value.hex(),
        "site": ["app/flows.py", 300, "order"],
    }
    assert journal[4] == {
        "pos": 4,
        "child": child.hex(),
        "digest": digest.hex(),
        "task": "billing.charge",
    }
    assert journal[5] == {"pos": 5, "read": "tracking", "value": "a16162"}
    assert journal[6] == {"pos": 6, "read": "missing", "value": None}
    assert journal[7] == {"pos": 7, "write": "tracking", "digest": digest.hex()}
    assert journal[8] == {"pos": 8, "side_effect_error": "refund", "error": value.hex()}
    assert journal[9] == {"pos": 9, "patch": "add-fraud-check", "site": ["app/flows.py", 40]}
    long = got["journal"][many.hex()]
    assert [e["random"] for e in long] == list(range(5000))  # split over two segments
    assert got["queue"] == [[1, inv.hex()], [2, many.hex()]]
    assert got["leases"] == {inv.hex(): ["worker-1", 31_000, 1]}
    assert got["counters"] == {"lease_token": 1, "queue_seq": 2}
    assert got["data"] == {b"wf/key".hex(): "0001"}
    assert json.dumps(got)  # plain JSON all the way


def test_recorded_digests_are_the_documented_hashes(app: Pynenc) -> None:
    """journal-format.md §4: a dispatch records BLAKE2b-128 of the codec bytes of
    `[args, kwargs]`; a data write records the first 16 bytes of BLAKE3 of the value's."""

    @app.task(name="test_journal_reader.charge")
    def charge(order: str, *, cents: int) -> int:
        return cents

    @app.task(name="test_journal_reader.flow")
    def flow() -> None:
        charge("o-1", cents=250).result  # the dispatch is what is recorded
        flow.wf.set_data("status", {"paid": True})

    invocation = flow()
    invocation.result  # run it to the end
    inv = uuid.UUID(invocation.invocation_id).bytes
    entries = dict(app.store.journal_entries(inv))
    args = codec.encode([["o-1"], {"cents": 250}], what=lambda: "arguments")
    assert entries[5][16:32] == hashlib.blake2b(args, digest_size=16).digest()
    value = codec.encode({"paid": True}, what=lambda: "value")
    assert entries[7].endswith(blake3.blake3(value).digest()[:16])
