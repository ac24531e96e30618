"""The streams are exactly the documented function: an independent implementation (BLAKE3
key derivation + ChaCha20 from the `blake3` and `cryptography` packages) reproduces them."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import blake3
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from pynenc import Pynenc


def keystream(invocation: bytes, attempt: int, stream: str, n_bytes: int) -> bytes:
    key = blake3.blake3(
        invocation + attempt.to_bytes(4, "big") + stream.encode(),
        derive_key_context="pynenc-replay stream v1",
    ).digest()
    cipher = Cipher(algorithms.ChaCha20(key, b"\0" * 16), mode=None).encryptor()
    return cipher.update(b"\0" * n_bytes)


def test_wf_values_match_an_independent_implementation(tmp_path: Path) -> None:
    app = Pynenc(store=f"lmdb://{tmp_path}/s", sync=False)

    @app.task(name="test_stream_vectors.draws")
    def draws() -> dict[str, list]:
        return {
            "r": [draws.wf.random() for _ in range(5)],
            "u": [draws.wf.uuid() for _ in range(3)],
        }

    inv = draws()
    result = inv.result
    raw = uuid.UUID(inv.invocation_id).bytes
    words = struct.unpack("<5Q", keystream(raw, 0, "random", 40))
    assert result["r"] == [(w >> 11) * 2.0**-53 for w in words]
    for i, text in enumerate(result["u"]):
        hi, lo = struct.unpack("<2Q", keystream(raw, 0, "uuid", 16 * (i + 1))[16 * i :])
        b = bytearray(hi.to_bytes(8, "big") + lo.to_bytes(8, "big"))
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        assert text == str(uuid.UUID(bytes=bytes(b)))
