"""Tests for the payload codec: what round-trips, what is refused, and how."""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict, namedtuple
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynenc import codec
from pynenc._core import canonical_form, fast_decode
from pynenc.codec import DEFAULT_LIMIT, MAX_NESTING, decode, digest, encode
from pynenc.errors import (
    InvalidArgumentError,
    PayloadDecodeError,
    PayloadError,
    PayloadTooLargeError,
    PynencError,
)

WHAT = "argument 'order' of task 'shop.process'"

#: The encoders of earlier versions, which let cbor2 sort every map by key.
_OLD_ENCODERS = {kind: fn for kind, fn in codec._ENCODERS.items() if kind is not dict}


def roundtrip(value: object) -> Any:
    return decode(encode(value, what=WHAT))


# --- what round-trips -------------------------------------------------------------------------

ROUND_TRIP_CASES = [
    None,
    True,
    False,
    0,
    -1,
    2**64,
    -(2**200),
    1.5,
    -0.0,
    math.inf,
    "",
    "héllo ✓",
    b"",
    b"\x00\xff",
    [],
    [1, [2, [3]]],
    (),
    (1, (2, 3), [4, (5,)]),
    {},
    {"a": 1, 2: "b", b"c": None, (1, 2): [3], frozenset({1}): True, None: 0.5},
    set(),
    {1, "a", (2, 3)},
    frozenset({frozenset({1, 2}), 3}),
    datetime(2024, 2, 29, 12, 30, 15, 123456),
    datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=UTC),
    datetime(2024, 2, 29, 12, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    date(1999, 12, 31),
    UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("1.10"),
    Decimal("-0"),
    Decimal("-0.000"),
    Decimal("1E+5"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    Decimal("123456789012345678901234567890.123456789"),
]


@pytest.mark.parametrize("value", ROUND_TRIP_CASES, ids=repr)
def test_supported_values_round_trip_with_their_types(value: object) -> None:
    result = roundtrip(value)
    assert result == value
    assert type(result) is type(value)
    assert repr(result) == repr(value) or isinstance(value, (dict, set, frozenset))


def test_nested_types_are_preserved() -> None:
    value = {"t": (1, [2, (3,)]), "s": [{1}, frozenset({2})]}
    result = roundtrip(value)
    assert type(result["t"]) is tuple
    assert type(result["t"][1]) is list
    assert type(result["t"][1][1]) is tuple
    assert type(result["s"][0]) is set
    assert type(result["s"][1]) is frozenset


def test_naive_and_aware_datetimes_stay_apart() -> None:
    naive = datetime(2024, 1, 1, 8, 0)
    aware = datetime(2024, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=-3)))
    assert roundtrip(naive).tzinfo is None
    result = roundtrip(aware)
    assert result.utcoffset() == timedelta(hours=-3)
    assert result.hour == 8


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 7, 1, 9, 30, tzinfo=ZoneInfo("Europe/Paris")),
        datetime(1939, 2, 28, 23, 0, tzinfo=ZoneInfo("America/Argentina/Buenos_Aires")),
        datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
    ],
    ids=str,
)
def test_zoneinfo_datetime_keeps_wall_clock_and_offset_not_zone_name(value: datetime) -> None:
    result = roundtrip(value)
    assert result.replace(tzinfo=None) == value.replace(tzinfo=None)
    assert result.utcoffset() == value.utcoffset()
    assert result.astimezone(UTC) == value.astimezone(UTC)
    assert isinstance(result.tzinfo, timezone)


@pytest.mark.parametrize("offset", [timedelta(seconds=7), timedelta(hours=-4, seconds=-48)])
def test_offsets_with_seconds_round_trip(offset: timedelta) -> None:
    value = datetime(1890, 1, 1, 12, tzinfo=timezone(offset))
    assert roundtrip(value).utcoffset() == offset


def test_sub_second_utc_offset_is_refused() -> None:
    value = datetime(2000, 1, 1, tzinfo=timezone(timedelta(microseconds=1)))
    with pytest.raises(TypeError, match="fraction of a second") as info:
        encode({"when": value}, what=WHAT)
    assert WHAT in str(info.value)


def test_decimal_nan_and_float_nan_keep_their_types() -> None:
    assert roundtrip(Decimal("NaN")).is_nan()
    assert type(roundtrip(Decimal("NaN"))) is Decimal
    assert roundtrip(Decimal("sNaN")).is_snan()
    assert math.isnan(roundtrip(math.nan))


# --- canonical bytes and digest ---------------------------------------------------------------


def test_dicts_keep_their_insertion_order_nested_too() -> None:
    value = {"zebra": 1, "apple": {"z": [{"b": 2, "a": 1}], "a": None}, "id": 3, 3: "x"}
    result = roundtrip(value)
    assert list(result) == ["zebra", "apple", "id", 3]
    assert list(result["apple"]) == ["z", "a"]
    assert list(result["apple"]["z"][0]) == ["b", "a"]


def test_dicts_keep_their_order_on_the_cbor2_path_too() -> None:
    # A datetime or a set is not on the fast path: the whole value goes through cbor2.
    value = {"when": date(2024, 1, 2), "b": {"y": {1, 2}, "x": (1, {"d": 1, "c": 2})}, "a": 0}
    result = roundtrip(value)
    assert list(result) == ["when", "b", "a"]
    assert list(result["b"]) == ["y", "x"]
    assert list(result["b"]["x"][1]) == ["d", "c"]


def test_equal_dicts_in_another_key_order_encode_apart_but_digest_alike() -> None:
    one = {"b": 1, "a": [1, {"y": 1, "x": 2}], 3: "x"}
    two = {3: "x", "a": [1, {"x": 2, "y": 1}], "b": 1}
    assert encode(one, what=WHAT) != encode(two, what=WHAT)
    assert digest(encode(one, what=WHAT)) == digest(encode(two, what=WHAT))


def test_payloads_written_with_sorted_keys_still_read() -> None:
    # Earlier versions wrote canonical CBOR (every map sorted by key): it reads back in the
    # stored (sorted) order and digests as it always did.
    value = {"zebra": 1, "apple": {"z": 1, "a": 2}, "id": date(2024, 1, 2)}
    old = cbor2.dumps(value, canonical=True, encoders=_OLD_ENCODERS)
    assert decode(old) == value
    assert list(decode(old)) == ["id", "apple", "zebra"]
    assert digest(old) == digest(encode(value, what=WHAT))
    assert digest(old) == hashlib.blake2b(old, digest_size=16).digest()


def test_equal_sets_encode_identically_whatever_their_iteration_order() -> None:
    # 8 and 16 share a hash slot, so iteration order follows insertion order.
    one, two = {8, 16}, {16, 8}
    assert list(one) != list(two)
    assert encode(one, what=WHAT) == encode(two, what=WHAT)
    assert encode(frozenset(one), what=WHAT) == encode(frozenset(two), what=WHAT)


def test_digest_is_16_bytes_and_tells_values_apart() -> None:
    first = digest(encode(["order-1", 3], what=WHAT))
    assert len(first) == 16
    assert first == digest(encode(["order-1", 3], what=WHAT))
    assert first != digest(encode(["order-1", 4], what=WHAT))
    assert digest(encode((1, 2), what=WHAT)) != digest(encode([1, 2], what=WHAT))


# --- refused values ---------------------------------------------------------------------------


class Order:
    pass


class Color(IntEnum):
    RED = 1


Point = namedtuple("Point", "x y")


def _generator() -> Any:
    yield 1


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (object(), "object"),
        (lambda: 1, "function"),
        (Order(), "Order"),
        (_generator(), "generator"),
        (bytearray(b"x"), "bytearray"),
        (1 + 2j, "complex"),
        (Color.RED, "Color"),
        (Point(1, 2), "Point"),
        (OrderedDict(a=1), "OrderedDict"),
        (range(3), "range"),
        (cbor2.CBORTag(28, 1), "CBORTag"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_unsupported_values_raise_type_error_naming_what_and_type(
    value: object, type_name: str
) -> None:
    with pytest.raises(TypeError) as info:
        encode(value, what=WHAT)
    message = str(info.value)
    assert WHAT in message
    assert type_name in message
    assert "plain data" in message


def test_open_file_is_refused(tmp_path: Any) -> None:
    with open(tmp_path / "f.txt", "w") as handle, pytest.raises(TypeError, match="TextIOWrapper"):
        encode({"log": handle}, what=WHAT)


def test_type_error_names_the_path_inside_the_value() -> None:
    with pytest.raises(TypeError) as info:
        encode({"items": [1, 2, Order()]}, what=WHAT)
    assert "['items'][2]" in str(info.value)
    assert "Order" in str(info.value)


def test_type_error_reports_the_first_offender_in_order() -> None:
    with pytest.raises(TypeError, match=r"at \[1\]\[0\]"):
        encode([1, [Order()], [Order()]], what=WHAT)


def test_bad_dict_keys_and_set_members_are_found() -> None:
    with pytest.raises(TypeError, match=r"\['k'\]\[<key>\]\[1\] has type .*Order"):
        encode({"k": {(1, Order()): 1}}, what=WHAT)
    with pytest.raises(TypeError, match=r"\[<member>\] has type .*Order"):
        encode({Order()}, what=WHAT)


def test_subclass_refusal_says_which_plain_type_to_use() -> None:
    with pytest.raises(TypeError, match="subclass of int"):
        encode([Color.RED], what=WHAT)


def test_str_with_lone_surrogate_is_refused_with_type_error() -> None:
    with pytest.raises(TypeError, match=WHAT):
        encode("\ud800", what=WHAT)


def test_deeply_nested_value_raises_payload_error_not_recursion_error() -> None:
    value: list[Any] = []
    for _ in range(10_000):
        value = [value]
    with pytest.raises(PayloadError, match=f"more than {MAX_NESTING} levels") as info:
        encode(value, what=WHAT)
    assert WHAT in str(info.value)


def test_self_containing_value_raises_payload_error() -> None:
    value: list[Any] = []
    value.append(value)
    with pytest.raises(PayloadError, match="contains itself"):
        encode(value, what=WHAT)


def test_deepest_allowed_nesting_round_trips() -> None:
    value: Any = Decimal("-1.5")
    for _ in range(MAX_NESTING):
        value = frozenset({value})
    assert roundtrip(value) == value


def test_nested_sets_encode_in_linear_time() -> None:
    value: Any = 1
    for _ in range(MAX_NESTING // 2):
        value = frozenset({value, (value, "x")})  # each level holds the previous one twice
    # It holds 2**64 leaves, so the item count stops it before any encoding starts.
    with pytest.raises(PayloadTooLargeError):
        encode(value, what=WHAT, limit=100_000)
    narrow: Any = 1
    for _ in range(MAX_NESTING - 1):
        narrow = frozenset({narrow, "x"})
    assert roundtrip(narrow) == narrow


def test_value_sharing_one_list_exponentially_fails_fast_as_too_large() -> None:
    value: list[Any] = [0]
    for _ in range(100):
        value = [value, value]  # 2**100 items, tiny in memory
    with pytest.raises(PayloadTooLargeError, match="items") as info:
        encode(value, what=WHAT, limit=100_000)
    assert "max_payload_bytes" in str(info.value)


# --- size limit -------------------------------------------------------------------------------


def test_payload_over_the_limit_raises_naming_size_limit_and_remedy() -> None:
    with pytest.raises(PayloadTooLargeError) as info:
        encode(b"x" * 2000, what=WHAT, limit=1000)
    message = str(info.value)
    assert WHAT in message
    assert "2,003" in message and "1,000" in message
    assert "max_payload_bytes" in message
    assert "PYNENC_MAX_PAYLOAD_BYTES" in message
    assert info.value.code == "PAYLOAD_TOO_LARGE"
    assert isinstance(info.value, PayloadError)
    assert isinstance(info.value, PynencError)


def test_payload_at_the_limit_is_accepted() -> None:
    data = encode(b"x" * 997, what=WHAT, limit=1000)
    assert len(data) == 1000


def test_default_limit_is_16_mib() -> None:
    assert DEFAULT_LIMIT == 16 * 1024 * 1024
    encode(b"x" * (DEFAULT_LIMIT - 16), what=WHAT)
    with pytest.raises(PayloadTooLargeError):
        encode(b"x" * DEFAULT_LIMIT, what=WHAT)


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_invalid_limit_is_refused(limit: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        encode(1, what=WHAT, limit=limit)


# --- decoding untrusted bytes -----------------------------------------------------------------

REFUSED_TAGS = {
    "bigfloat 5": 5,
    "stringref 25": 25,
    "shareable 28": 28,
    "sharedref 29": 29,
    "rational 30": 30,
    "regex 35": 35,
    "mime 36": 36,
    "ipv4 52": 52,
    "ipv6 54": 54,
    "epoch date 100": 100,
    "string namespace 256": 256,
    "ipaddress 260": 260,
    "ipnetwork 261": 261,
    "complex 43000": 43000,
    "self-describe 55799": 55799,
    "unknown 9999": 9999,
}

# A well-formed inner value each built-in decoder would accept, so refusal is the only failure.
_TAG_CONTENT: dict[int, object] = {
    5: [-1, 3],
    25: 0,
    28: [1],
    29: 0,
    30: [1, 3],
    35: "a+",
    36: "Content-Type: text/plain\n\nhi",
    52: b"\x7f\x00\x00\x01",
    54: b"\x00" * 16,
    100: 1,
    256: ["abc", "abc"],
    260: b"\x7f\x00\x00\x01",
    261: {b"\x7f\x00\x00\x00": 8},
    43000: [1.0, 2.0],
    55799: 1,
    9999: 1,
}


@pytest.mark.parametrize("tag", REFUSED_TAGS.values(), ids=REFUSED_TAGS.keys())
def test_foreign_tags_are_refused(tag: int) -> None:
    data = cbor2.dumps(cbor2.CBORTag(tag, _TAG_CONTENT[tag]))
    # cbor2 writes the repeated string inside a namespace as a string reference (tag 25),
    # and inner values are decoded (and refused) first.
    refused = 25 if tag == 256 else tag
    with pytest.raises(PayloadDecodeError, match=f"tag {refused}\\b"):
        decode(data, what="result of invocation abc")


def test_foreign_tags_are_refused_when_nested() -> None:
    data = cbor2.dumps({"a": [1, cbor2.CBORTag(35, "x")]})
    with pytest.raises(PayloadDecodeError, match="tag 35"):
        decode(data)


@pytest.mark.parametrize(
    "value",
    [
        {"a": ["repeated text", "repeated text"]},
        [1, 2, 3],
    ],
)
def test_string_and_shared_references_cbor2_accepts_are_refused(value: object) -> None:
    for options in ({"string_referencing": True}, {"value_sharing": True}):
        data = cbor2.dumps(value, **options)  # type: ignore[arg-type]
        assert cbor2.loads(data) == value  # cbor2 on its own decodes these
        with pytest.raises(PayloadDecodeError, match=r"tag (25|256|28|29)"):
            decode(data)


def test_shared_reference_cycle_is_refused() -> None:
    data = bytes.fromhex("d81c81d81d00")  # shareable([sharedref(0)]): a list containing itself
    with pytest.raises(PayloadDecodeError, match="tag"):
        decode(data)


def _map_of(pairs: list[tuple[Any, Any]]) -> bytes:
    """A CBOR map of `pairs` as given: duplicate and NaN keys kept, which no dict can hold."""
    assert len(pairs) < 24
    return bytes([0xA0 | len(pairs)]) + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in pairs)


def test_maps_holding_a_key_twice_are_refused_nan_keys_included() -> None:
    with pytest.raises(PayloadDecodeError, match=r"(?i)duplicate map key: 'a'"):
        decode(_map_of([("a", 1), ("a", 2)]))
    # A NaN equals nothing, so a dict can hold it twice; the fast decoder leaves it to the
    # strict one, which compares the keys' encodings.
    twice = _map_of([(math.nan, 1), (math.nan, 2)])
    assert fast_decode(twice) == (False, None)
    with pytest.raises(PayloadDecodeError, match="the key nan twice"):
        decode(twice)
    tuple_key = cbor2.CBORTag(0x706E_0001, [math.nan])
    with pytest.raises(PayloadDecodeError, match=r"the key \(nan,\) twice"):
        decode(_map_of([(tuple_key, 1), (tuple_key, 2)]))
    # One NaN key is a value encode writes, and reads back.
    once = decode(_map_of([(math.nan, 1), (1.5, 2)]))
    assert [v for k, v in once.items() if k != k] == [1] and once[1.5] == 2


def test_foreign_set_tag_content_still_decodes_as_set() -> None:
    assert decode(cbor2.dumps(cbor2.CBORTag(258, [1, 2]))) == {1, 2}


@pytest.mark.parametrize(
    "data",
    [
        b"\xf7",  # undefined
        b"\x81\xf0",  # simple value 16
        b"\xa1\xa1\x01\x02\x03",  # a map used as a map key
    ],
    ids=["undefined", "simple", "map-key"],
)
def test_values_encode_never_writes_are_refused(data: bytes) -> None:
    with pytest.raises(PayloadDecodeError, match="never writes"):
        decode(data)


def test_private_tags_with_wrong_content_are_refused() -> None:
    encoded = encode((1, 2), what=WHAT)
    tag_header = encoded[:5]
    with pytest.raises(PayloadDecodeError, match="tuple tag"):
        decode(tag_header + cbor2.dumps(5))


def test_truncated_payload_raises_decode_error() -> None:
    data = encode({"items": [1, 2, 3], "name": "x" * 50}, what=WHAT)
    for cut in range(len(data)):
        with pytest.raises(PayloadDecodeError, match="what-it-is"):
            decode(data[:cut], what="what-it-is")


def test_trailing_bytes_raise_decode_error() -> None:
    with pytest.raises(PayloadDecodeError, match="unexpected bytes"):
        decode(encode([1], what=WHAT) + b"\x00")


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b"\x1c",  # reserved additional info
        b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff",  # array claiming 2**64 - 1 items
        b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # byte string claiming 2**64 - 1 bytes
        b"\x9f\x01\xff",  # indefinite-length array
        b"\xa2\x01\x01\x01\x02",  # duplicate map key
        b"\x62\xc3\x28",  # invalid UTF-8
        b"\xc2\x82\x01\x02",  # bignum tag around an array
        b"\xc1\xfb\x7e\x37\xe4\x3c\x88\x00\x75\x9c",  # epoch datetime out of range
        b"\xc4\x82\xc2\x49\x05\x6b\xc7\x5e\x2d\x63\x10\x00\x00\x05",  # huge decimal exponent
    ],
    ids=repr,
)
def test_garbage_raises_decode_error(data: bytes) -> None:
    with pytest.raises(PayloadDecodeError):
        decode(data)


def test_deeply_nested_payload_raises_decode_error() -> None:
    with pytest.raises(PayloadDecodeError, match="depth"):
        decode(b"\x81" * 100_000 + b"\x00")


def test_nesting_encode_refuses_is_refused_on_decode_too() -> None:
    data = b"\x81" * (MAX_NESTING + 1) + b"\x00"
    with pytest.raises(PayloadDecodeError, match="levels deep"):
        decode(data)


def test_decode_error_has_a_stable_code() -> None:
    with pytest.raises(PayloadDecodeError) as info:
        decode(b"")
    assert info.value.code == "PAYLOAD_DECODE"


# --- properties -------------------------------------------------------------------------------

# Only fixed offsets: a ZoneInfo datetime in a DST gap or fold never equals one in another zone
# (PEP 495), and the codec keeps the offset, not the zone name (see the test below).
_fixed_offsets = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23)).map(
        lambda offset: offset - timedelta(microseconds=offset.microseconds)
    ),
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.datetimes()
    | st.datetimes(timezones=_fixed_offsets)
    | st.dates()
    | st.uuids()
    | st.decimals(allow_nan=False)
)
_hashables = st.recursive(
    _scalars,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
plain_data = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(_hashables, inner, max_size=4)
        | st.sets(_hashables, max_size=4)
        | st.frozensets(_hashables, max_size=4)
    ),
    max_leaves=20,
)


def _same_types(left: Any, right: Any) -> bool:
    if type(left) is not type(right):
        return False
    if isinstance(left, (list, tuple)):
        return all(_same_types(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        # Key order included (keys equal across types, 1 and True, cannot both be in a dict).
        return list(left) == list(right) and all(
            _same_types(value, right[key]) for key, value in left.items()
        )
    return True


@settings(max_examples=300, deadline=None)
@given(plain_data)
def test_any_plain_data_round_trips_exactly_key_order_included(value: Any) -> None:
    result = roundtrip(value)
    assert result == value
    assert _same_types(result, value)


def _shuffled(value: Any, rng: Any) -> Any:
    """`value` with every dict in it (at any depth) rebuilt in a random key order."""
    if type(value) is dict:
        items = [(key, _shuffled(item, rng)) for key, item in value.items()]
        rng.shuffle(items)
        return dict(items)
    if type(value) is list:
        return [_shuffled(item, rng) for item in value]
    if type(value) is tuple:
        return tuple(_shuffled(item, rng) for item in value)
    return value  # scalars, and sets, whose members hold no dicts


@settings(max_examples=300, deadline=None)
@given(plain_data, st.randoms())
def test_the_digest_ignores_key_order_and_matches_the_sorted_encoding_of_before(
    value: Any, rng: Any
) -> None:
    data = encode(value, what=WHAT)
    shuffled = _shuffled(value, rng)
    assert digest(encode(shuffled, what=WHAT)) == digest(data)
    # The canonical form is, byte for byte, what earlier versions stored.
    assert canonical_form(data) == cbor2.dumps(value, canonical=True, encoders=_OLD_ENCODERS)
    assert decode(canonical_form(data)) == value


@settings(max_examples=200, deadline=None)
@given(st.decimals())
def test_decimals_round_trip_to_the_same_text(value: Decimal) -> None:
    assert str(roundtrip(value)) == str(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_hashables, plain_data, max_size=6), st.randoms())
def test_equal_dicts_in_any_insertion_order_have_the_same_digest(
    value: dict[Any, Any], rng: Any
) -> None:
    items = list(value.items())
    rng.shuffle(items)
    shuffled = dict(items)
    assert digest(encode(value, what=WHAT)) == digest(encode(shuffled, what=WHAT))
