"""Payload codec: the one place task arguments, results, workflow data and side-effect values
become bytes and back.

Payloads are CBOR (cbor2 >= 6). Supported values, which round-trip exactly with their types
preserved: ``None``, ``bool``, ``int`` (any size), ``float``, ``str``, ``bytes``, ``list``,
``tuple``, ``dict`` (keys any supported hashable value), ``set``, ``frozenset``, ``datetime``
(aware or naive), ``date``, ``UUID`` and ``Decimal``.

Decisions worth knowing:

* Only exact types are accepted. Subclasses (``IntEnum``, a ``namedtuple``, ``OrderedDict``, a
  ``str`` subclass, ``bytearray``) are refused, because replay would hand back the plain type and
  the code could take another branch.
* Tuples, frozensets, naive datetimes and non-finite or negative-zero Decimals are kept apart
  from lists, sets, aware datetimes and plain Decimals with private tags (`_PRIVATE_TAGS`).
* An aware datetime keeps its UTC offset, but its ``tzinfo`` comes back as a fixed-offset
  ``datetime.timezone`` (a ``ZoneInfo`` name is not stored).
* A dict keeps its insertion order, nested ones too: it reads back in the order it was built.
  Sets have no order and are written sorted, so equal sets encode to equal bytes.
* `digest` does not depend on key order: it hashes the canonical form of the bytes, every map
  sorted by key (`pynenc._core.canonical_form`), so equal values of the same types digest
  alike; that is what compares task arguments on replay. Values that are equal only across
  types (``1``, ``1.0`` and ``True``; ``0.0`` and ``-0.0``) digest differently. Payloads stored
  before dicts kept their order were written in canonical form: they read back (sorted) and
  their recorded digests still match.
* Decoding builds nothing but the supported types: any CBOR tag outside `_CBOR2_TAGS` and
  `_PRIVATE_TAGS` (shared references 28/29, string references 25/256, regex 35, MIME 36, IP
  addresses 52/54/260/261, rationals 30, complex 43000, ...) is refused, and so is any value
  `encode` would refuse (CBOR ``undefined``, simple values) and any map holding a key twice
  (two NaN keys included). Invocation records are read through it too (`pynenc.record_check`).
"""

from __future__ import annotations

import hashlib
import io
import reprlib
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, TypeAlias
from uuid import UUID

import cbor2

from pynenc._core import canonical_form, fast_decode, fast_encode
from pynenc.errors import (
    InvalidArgumentError,
    PayloadDecodeError,
    PayloadError,
    PayloadTooLargeError,
)

__all__ = ["DEFAULT_LIMIT", "MAX_NESTING", "decode", "digest", "encode"]

DEFAULT_LIMIT: Final = 16 * 1024 * 1024
"""Largest encoded payload accepted by default, in bytes (16 MiB)."""

MAX_NESTING: Final = 128
"""Deepest nesting of containers a payload may have; deeper values (or cycles) are refused.

Bounded by cbor2's own encoding depth of 400, which a frozenset (three levels) must fit in.
"""

_DIGEST_SIZE: Final = 16

# Tags this codec owns; 0x706E ("pn") keeps them clear of the registered tags we use.
_TUPLE_TAG: Final = 0x706E_0001
_FROZENSET_TAG: Final = 0x706E_0002
_NAIVE_DATETIME_TAG: Final = 0x706E_0003
_SPECIAL_DECIMAL_TAG: Final = 0x706E_0004
_PRIVATE_TAGS: Final = frozenset(
    {_TUPLE_TAG, _FROZENSET_TAG, _NAIVE_DATETIME_TAG, _SPECIAL_DECIMAL_TAG}
)

# Tags whose cbor2 decoders we trust: datetime (0, 1), bignums (2, 3), decimal (4), UUID (37),
# set (258), date (1004).
_CBOR2_TAGS: Final = frozenset({0, 1, 2, 3, 4, 37, 258, 1004})

# A frozenset costs three decoder frames (private tag, set tag, array), a Decimal leaf three more.
_DECODE_MAX_DEPTH: Final = 3 * MAX_NESTING + 8

_LEAF_TYPES: Final[frozenset[type]] = frozenset(
    {type(None), bool, int, float, str, bytes, datetime, date, UUID, Decimal}
)
_CONTAINER_TYPES: Final[frozenset[type]] = frozenset({list, tuple, dict, set, frozenset})
_SUPPORTED_NAMES: Final = (
    "None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset, "
    "datetime, date, UUID or Decimal"
)

_TOO_LARGE_ADVICE: Final = (
    "Keep large data elsewhere (a file or object store) and pass a reference to it, or raise "
    "the limit with Pynenc(max_payload_bytes=...) or the PYNENC_MAX_PAYLOAD_BYTES environment "
    "variable."
)

# A location inside a value, innermost step first: (parent, step kind, key or index).
_Path: TypeAlias = tuple["_Path", str, object] | None
_ITEM: Final = "item"
_KEY: Final = "key"
_MEMBER: Final = "member"

_short_repr = reprlib.Repr()
_short_repr.maxstring = 40
_short_repr.maxother = 40


#: Exact types that are plain data by themselves: no walk needed to check them.
_SCALARS: Final = frozenset({int, float, str, bytes, bool, type(None)})


def _shallow_plain(value: object, depth: int) -> bool:
    """True for a scalar, or a list/tuple/dict of such (nested at most `depth` deep): plain
    data for certain, with no walk needed (the common shape of arguments and results)."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if depth == 0:
        return False
    if kind is list or kind is tuple:
        return all(_shallow_plain(v, depth - 1) for v in value)  # type: ignore[attr-defined]
    if kind is dict:
        return all(
            type(k) in _SCALARS and _shallow_plain(v, depth - 1)
            for k, v in value.items()  # type: ignore[attr-defined]
        )
    return False


#: What a payload is, for error messages: a string, or a function giving it (formatted only
#: when an error needs it, so hot paths do not build messages they never show).
What = str | Callable[[], str]


def _what(what: What) -> str:
    return what if isinstance(what, str) else what()


def encode(value: object, *, what: What, limit: int = DEFAULT_LIMIT) -> bytes:
    """Encode a payload to CBOR bytes, dicts in insertion order.

    Pure: it writes nothing anywhere, so callers can encode before they persist anything.

    Args:
        value: The plain-data value to encode.
        what: What the value is, for error messages, e.g. ``"argument 'order' of task
            'shop.process'"``, or a function returning it.
        limit: Largest encoded size accepted, in bytes.

    Returns:
        The encoded bytes.

    Raises:
        TypeError: `value` holds something other than plain data; the message names `what`,
            the offending type and where it sits inside `value`.
        PayloadError: containers are nested deeper than `MAX_NESTING` (or `value` contains
            itself).
        PayloadTooLargeError: the encoded value is larger than `limit`.
        InvalidArgumentError: `limit` is not a positive integer.
    """
    if type(limit) is not int or limit < 1:
        raise InvalidArgumentError(f"limit must be a positive number of bytes, not {limit!r}")
    fast = fast_encode(value, limit)  # plain values, in Rust: the same bytes
    if fast is not None:
        return fast
    return _encode_cbor(value, _what(what), limit)


def _encode_cbor(value: object, what: str, limit: int) -> bytes:
    """`encode` by cbor2 alone: the reference the Rust fast path must match byte for byte."""
    if not _shallow_plain(value, 2):
        problem = _find_unstorable(value, max_items=limit)
        if problem is not None:
            raise _unstorable_error(what, limit, *problem)
    try:
        data = cbor2.dumps(value, canonical=True, encoders=_ENCODERS)
    except (cbor2.CBOREncodeError, ValueError, TypeError) as exc:
        # Plain types cbor2 still cannot write, e.g. a str holding a lone surrogate.
        raise TypeError(f"{what} cannot be stored: {exc}. Pass plain data instead.") from exc
    if len(data) > limit:
        raise PayloadTooLargeError(
            f"{what} is {len(data):,} bytes once encoded, over the limit of {limit:,} bytes. "
            f"{_TOO_LARGE_ADVICE}"
        )
    return data


def decode(data: bytes, *, what: What = "payload") -> Any:
    """Decode bytes written by `encode`.

    Args:
        data: The encoded payload.
        what: What the payload is, for error messages, or a function returning it.

    Returns:
        The decoded value.

    Raises:
        PayloadDecodeError: `data` is truncated, malformed, too deeply nested, has trailing
            bytes, or holds a tag or value `encode` never writes.
    """
    done, fast = fast_decode(data)  # plain values, in Rust
    if done:
        return fast
    return _decode_cbor(data, _what(what))


def _decode_cbor(data: bytes, what: str) -> Any:
    """`decode` by cbor2 alone, with every strict check: the reference of the fast path."""
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(
            stream,
            semantic_decoders=_TAG_DECODERS,
            max_depth=_DECODE_MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            object_hook=_refuse_unequal_duplicates,
        ).decode()
    except Exception as exc:  # cbor2 reports malformed input with many exception types
        raise PayloadDecodeError(f"cannot decode {what}: {_decode_failure(exc)}") from exc
    trailing = len(data) - stream.tell()
    if trailing:
        raise PayloadDecodeError(
            f"cannot decode {what}: {trailing} unexpected bytes after the encoded value"
        )
    problem = None if _shallow_plain(value, 2) else _find_unstorable(value, max_items=len(data))
    if problem is not None:
        reason, path = problem
        raise PayloadDecodeError(
            f"cannot decode {what}: {_describe(reason, path)}, which pynenc never writes"
        )
    return value


def digest(data: bytes) -> bytes:
    """Return the 16-byte BLAKE2b digest of the canonical form of encoded payload bytes.

    Args:
        data: Bytes returned by `encode`.

    Returns:
        The digest, used to compare task arguments on replay. Dicts that differ only in key
        order digest alike (the canonical form sorts every map by key).
    """
    return hashlib.blake2b(canonical_form(data), digest_size=_DIGEST_SIZE).digest()


class _TooManyItems:
    """Marks a value with more items than its size limit allows bytes (one byte each at least)."""


def _find_unstorable(value: object, *, max_items: int) -> tuple[type | None, _Path] | None:
    """Find the first value that is not plain data, depth first and in order.

    Counting items bounds the walk: a value that shares one sub-list many times over can hold
    exponentially many items for its size in memory.

    Returns:
        None if `value` is plain data; else the offending type (None when nesting is too
        deep, `_TooManyItems` when there are more than `max_items` items) and its path.
    """
    stack: list[tuple[object, _Path, int]] = [(value, None, 0)]
    items = 0
    while stack:
        item, path, depth = stack.pop()
        kind = type(item)
        if kind in _LEAF_TYPES:
            continue
        if kind not in _CONTAINER_TYPES:
            return kind, path
        if depth >= MAX_NESTING:
            return None, path
        items += len(item)  # type: ignore[arg-type]
        if items > max_items:
            return _TooManyItems, None
        depth += 1
        # Children are pushed in reverse so they are checked in order; leaves are skipped early.
        if kind is dict:
            for key, child in reversed(item.items()):  # type: ignore[attr-defined]
                if type(child) not in _LEAF_TYPES:
                    stack.append((child, (path, _ITEM, key), depth))
                if type(key) not in _LEAF_TYPES:
                    stack.append((key, (path, _KEY, None), depth))
        elif kind is list or kind is tuple:
            children: list[Any] | tuple[Any, ...] = item  # type: ignore[assignment]
            for index in range(len(children) - 1, -1, -1):
                child = children[index]
                if type(child) not in _LEAF_TYPES:
                    stack.append((child, (path, _ITEM, index), depth))
        else:
            for child in item:  # type: ignore[attr-defined]
                if type(child) not in _LEAF_TYPES:
                    stack.append((child, (path, _MEMBER, None), depth))
    return None


def _render_path(path: _Path) -> str:
    steps: list[str] = []
    while path is not None:
        path, step, key = path
        if step == _ITEM:
            try:
                steps.append(f"[{_short_repr.repr(key)}]")
            except Exception:  # noqa: BLE001 - a key's repr is user code; keep the real error
                steps.append("[...]")
        else:
            steps.append("[<key>]" if step == _KEY else "[<member>]")
    return "".join(reversed(steps))


def _type_name(kind: type) -> str:
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _describe(kind: type | None, path: _Path) -> str:
    if kind is None:  # the path of a too-deep value is too long to be of use
        return f"it nests containers more than {MAX_NESTING} levels deep"
    where = f"the value at {_render_path(path)}" if path is not None else "it"
    return f"{where} has type {_type_name(kind)}"


def _unstorable_error(what: str, limit: int, kind: type | None, path: _Path) -> Exception:
    if kind is _TooManyItems:
        return PayloadTooLargeError(
            f"{what} holds more than {limit:,} items, so it would be over the limit of "
            f"{limit:,} bytes once encoded. {_TOO_LARGE_ADVICE}"
        )
    if kind is None:
        return PayloadError(
            f"{what} cannot be stored: {_describe(kind, path)} (or contains itself). "
            "Pass plain data that is flatter and has no reference cycles."
        )
    hint = ""
    for plain in (*_LEAF_TYPES, *_CONTAINER_TYPES):
        if plain is not type(None) and issubclass(kind, plain):
            hint = (
                f" It is a subclass of {plain.__name__}: convert it to a plain {plain.__name__},"
                f" since replay would hand back a plain {plain.__name__}."
            )
            break
    return TypeError(
        f"{what} cannot be stored: {_describe(kind, path)}, which is not plain data.{hint} "
        f"Pass plain data instead: {_SUPPORTED_NAMES} (turn objects into a dict of their "
        "fields, or pass an id to load them by)."
    )


class _MalformedTagError(Exception):
    """A tagged value (or map) this codec refuses; its message is the reason shown to the
    user."""


#: Map keys equal to every key with the same encoding: cbor2's own duplicate check finds
#: their duplicates. A float, Decimal, tuple or frozenset key may be NaN or hold one, which
#: equals nothing, so two such keys with one encoding pass that check.
_SELF_EQUAL_KEYS: Final[frozenset[type]] = frozenset(
    {str, int, bytes, bool, type(None), datetime, date, UUID}
)


def _refuse_unequal_duplicates(value: Mapping[Any, Any], immutable: bool) -> Mapping[Any, Any]:
    """cbor2 ``object_hook``: refuse a map holding one key twice when cbor2 cannot see it (two
    NaN keys, or two tuples holding NaN), by comparing those keys' canonical encodings."""
    suspects = [key for key in value if type(key) not in _SELF_EQUAL_KEYS]
    if len(suspects) > 1:
        seen: set[bytes] = set()
        for key in suspects:
            encoded = cbor2.dumps(key, canonical=True, encoders=_ENCODERS)
            if encoded in seen:
                raise _MalformedTagError(
                    f"it holds a map with the key {_short_repr.repr(key)} twice, which pynenc "
                    "never writes"
                )
            seen.add(encoded)
    return value


def _decode_failure(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, _MalformedTagError):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, cbor2.CBORDecodeEOF):
        return f"the payload is truncated ({exc})"
    return f"the payload is malformed ({type(exc).__name__}: {exc})"


def _encode_dict(encoder: cbor2.CBOREncoder, value: dict[Any, Any]) -> None:
    # In insertion order; cbor2's canonical mode would sort the keys.
    encoder.encode_length(5, len(value))
    for key, item in value.items():
        encoder.encode(key)
        encoder.encode(item)


def _encode_tuple(encoder: cbor2.CBOREncoder, value: tuple[Any, ...]) -> None:
    encoder.encode_semantic(_TUPLE_TAG, list(value))


def _encode_set(encoder: cbor2.CBOREncoder, value: set[Any] | frozenset[Any]) -> None:
    # cbor2's canonical set encoding writes each member twice (once for its sort key), which
    # is exponential in the nesting of sets; each member is encoded once here instead, sorted
    # as cbor2 sorts them (shortest first, then bytewise), so the bytes are the same.
    members = sorted(
        (cbor2.dumps(member, canonical=True, encoders=_ENCODERS) for member in value),
        key=lambda data: (len(data), data),
    )
    encoder.encode_length(6, 258)
    encoder.encode_length(4, len(members))
    for member in members:
        encoder.write(member)


def _encode_frozenset(encoder: cbor2.CBOREncoder, value: frozenset[Any]) -> None:
    encoder.encode_length(6, _FROZENSET_TAG)
    _encode_set(encoder, value)


def _encode_datetime(encoder: cbor2.CBOREncoder, value: datetime) -> None:
    offset = value.utcoffset()
    if offset is None:
        encoder.encode_semantic(_NAIVE_DATETIME_TAG, value.isoformat())
        return
    if offset.microseconds:
        # datetime.fromisoformat drops it in some cases; no real time zone has one.
        raise TypeError(f"datetime {value} has a UTC offset with a fraction of a second")
    text = value.isoformat()
    # Written as cbor2 writes it, except that cbor2 also mangles offsets under a minute
    # ("+00:00:07" becomes "Z:07").
    encoder.encode_semantic(0, text[:-6] + "Z" if not offset else text)


def _encode_decimal(encoder: cbor2.CBOREncoder, value: Decimal) -> None:
    # cbor2 writes NaN and infinities as floats and drops the sign of zero.
    if not value.is_finite() or (value.is_zero() and value.is_signed()):
        encoder.encode_semantic(_SPECIAL_DECIMAL_TAG, str(value))
    else:
        encoder.encode_decimal(value)


# cbor2 runs in canonical mode for its shortest floats and sorted sets; dicts keep their order.
_ENCODERS: Final[dict[type, Callable[[cbor2.CBOREncoder, Any], None]]] = {
    dict: _encode_dict,
    tuple: _encode_tuple,
    set: _encode_set,
    frozenset: _encode_frozenset,
    datetime: _encode_datetime,
    Decimal: _encode_decimal,
}


def _decode_tuple(value: object, immutable: bool) -> tuple[Any, ...]:
    if type(value) is not list and type(value) is not tuple:
        raise _MalformedTagError(f"tuple tag holds a {type(value).__name__}, not an array")
    return tuple(value)


def _decode_frozenset(value: object, immutable: bool) -> frozenset[Any]:
    if type(value) is not set and type(value) is not frozenset:
        raise _MalformedTagError(f"frozenset tag holds a {type(value).__name__}, not a set")
    return frozenset(value)


def _decode_naive_datetime(value: object, immutable: bool) -> datetime:
    if type(value) is not str:
        raise _MalformedTagError(f"naive datetime tag holds a {type(value).__name__}")
    try:
        result = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _MalformedTagError(f"naive datetime tag holds {value!r}: {exc}") from None
    if result.tzinfo is not None:
        raise _MalformedTagError(f"naive datetime tag holds an aware datetime {value!r}")
    return result


def _decode_special_decimal(value: object, immutable: bool) -> Decimal:
    if type(value) is not str:
        raise _MalformedTagError(f"special decimal tag holds a {type(value).__name__}")
    try:
        return Decimal(value)
    except ArithmeticError:
        raise _MalformedTagError(f"special decimal tag holds {value!r}") from None


def _refuse_tag(tag: int) -> Callable[[object, bool], Any]:
    def refuse(value: object, immutable: bool) -> Any:
        raise _MalformedTagError(
            f"it holds CBOR tag {tag}, which pynenc never writes and refuses to decode"
        )

    return refuse


class _TagDecoders(dict[int, Callable[[object, bool], Any]]):
    """cbor2 ``semantic_decoders`` that refuse every tag but ours.

    cbor2 looks each tag up here first; a KeyError hands the tag to its built-in decoder, so
    the tags in `_CBOR2_TAGS` raise KeyError and all others get a decoder that refuses them.
    """

    def __missing__(self, tag: int) -> Callable[[object, bool], Any]:
        if tag in _CBOR2_TAGS:
            raise KeyError(tag)
        return _refuse_tag(tag)


_TAG_DECODERS: Final = _TagDecoders(
    {
        _TUPLE_TAG: _decode_tuple,
        _FROZENSET_TAG: _decode_frozenset,
        _NAIVE_DATETIME_TAG: _decode_naive_datetime,
        _SPECIAL_DECIMAL_TAG: _decode_special_decimal,
    }
)
