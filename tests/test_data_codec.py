"""Workflow data values cross two codecs (scalars are encoded in Rust, everything else by
`pynenc.codec`): whatever a task stores, every reader gets back exactly."""

from __future__ import annotations

import math
import tempfile
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynenc import Pynenc, codec
from pynenc._core import Execution

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(
        [
            0,
            -1,
            23,
            24,
            255,
            256,
            65535,
            65536,
            2**32 - 1,
            2**32,
            2**63 - 1,
            -(2**63),
            2**63,
            2**64 - 1,
            2**64,
            -(2**64),
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-310, 5e-324, 65504.0, 1.5, float("inf")]),
    st.text(max_size=40),
    st.binary(max_size=40),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.text(max_size=5), SCALARS, max_size=3),
)


def fits_i64(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, list, tuple, dict)):
        return True
    if isinstance(v, int):
        return -(2**63) <= v < 2**63
    if isinstance(v, dict):
        return all(fits_i64(k) and fits_i64(x) for k, x in v.items())
    return all(fits_i64(x) for x in v)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if type(a) is not type(b):
            return False
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # key order included
    return type(a) is type(b) and a == b


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_set_get_replay_and_outside_reads_agree(value: Any) -> None:
    app = Pynenc(store=f"lmdb://{tempfile.mkdtemp()}/s", sync=False)

    @app.task(name="test_data_codec.job")
    def job(v: Any) -> dict[str, Any]:
        job.wf.set_data("k", v)
        return {"read": job.wf.get_data("k"), "wf": job.workflow.workflow_id}

    inv = job(value)
    out = inv.result
    assert same(out["read"], value)
    assert same(app.get_workflow_data(out["wf"], "k"), value)  # decoded by the Python codec
    assert same(app.replay(inv.invocation_id)["read"], value)  # the recorded read, on replay


@settings(max_examples=200, deadline=None)
@given(SCALARS)
def test_values_written_by_the_python_codec_read_back_in_tasks(value: Any) -> None:
    app = Pynenc(store=f"lmdb://{tempfile.mkdtemp()}/s", sync=False)

    @app.task(name="test_data_codec.writer")
    def writer() -> str:
        return writer.workflow.workflow_id

    # A value stored by another writer through the Python codec (cbor2 bytes)...
    wf_id = writer().result
    app.store.put("data", uuid.UUID(wf_id).bytes + b"x", codec.encode(value, what="v"), None)
    app.store.flush()
    # ...read inside that workflow by the Rust fast path.
    execution = Execution(app.store, uuid.uuid4().bytes, wf_id, 0)
    assert same(execution.get_data("x"), value)


@settings(max_examples=300, deadline=None)
@given(SCALARS)
def test_scalar_bytes_are_the_codecs_bytes(value: Any) -> None:
    """One value, one encoding: what set_data stores is exactly what pynenc.codec writes."""
    app = Pynenc(store=f"lmdb://{tempfile.mkdtemp()}/s", sync=False)

    @app.task(name="test_data_codec.job")
    def job(v: Any) -> str:
        job.wf.set_data("k", v)
        return job.workflow.workflow_id

    wf_id = job(value).result
    assert app.store.get("data", uuid.UUID(wf_id).bytes + b"k") == codec.encode(value, what="v")


PLAIN = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(
            st.one_of(st.text(max_size=4), st.integers(-300, 300), st.booleans()), inner, max_size=4
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(PLAIN)
def test_the_rust_fast_path_writes_and_reads_exactly_what_cbor2_does(value: Any) -> None:
    from pynenc import _core
    from pynenc.codec import _decode_cbor, _encode_cbor

    reference = _encode_cbor(value, "v", codec.DEFAULT_LIMIT)
    fast = _core.fast_encode(value, codec.DEFAULT_LIMIT)
    if fits_i64(value):
        assert fast == reference
    else:  # big ints take the cbor2 path (bignum tags)
        assert fast is None
    done, decoded = _core.fast_decode(reference)
    if done:
        assert same(decoded, _decode_cbor(reference, "v"))
