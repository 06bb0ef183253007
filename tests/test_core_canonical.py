"""RFC 8785 canonical JSON and digests."""

from __future__ import annotations

import datetime
import hashlib
import math
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumyn.contracts.canonical import (
    CanonicalizationError,
    canonical_bytes,
    canonical_copy,
    canonical_plain_bytes,
    canonical_plain_bytes_with,
    digest,
    json_number,
    plain_digest,
    reference_canonical_bytes,
)

# Known outputs of the JSON Canonicalization Scheme.
KNOWN = [
    ({"b": 1, "a": 2}, b'{"a":2,"b":1}'),
    ({"value": 201.0}, b'{"value":201}'),
    ([1e21, 1e-7, 0.000001, -0.0, 1.5, 100], b"[1e+21,1e-7,0.000001,0,1.5,100]"),
    ([0.1 + 0.2], b"[0.30000000000000004]"),
    ([4.5, 2e-3, 333333333.33333329], b"[4.5,0.002,333333333.3333333]"),
    ({"€": 1, "\r": 2, "1": 3, "ö": 4, "😀": 5, "\ufb33": 6},
     '{"\\r":2,"1":3,"ö":4,"€":1,"😀":5,"דּ":6}'.encode()),
    ({"s": "\u0000\u001f\"\\/é\u2028"}, '{"s":"\\u0000\\u001f\\"\\\\/é\u2028"}'.encode()),
    ({"t": True, "f": False, "n": None, "l": []}, b'{"f":false,"l":[],"n":null,"t":true}'),
]


@pytest.mark.parametrize(("value", "expected"), KNOWN)
def test_known_jcs_outputs(value: object, expected: bytes) -> None:
    assert canonical_bytes(value) == expected
    assert reference_canonical_bytes(value) == expected


def test_digest_is_sha256_of_canonical_bytes() -> None:
    value = {"b": [1, 2.0], "a": "x"}
    expected = "sha256:" + hashlib.sha256(b'{"a":"x","b":[1,2]}').hexdigest()
    assert digest(value) == expected
    assert digest({"a": "x", "b": [1.0, 2]}) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 2**64, {"k": {1, 2}}])
def test_values_without_a_canonical_form_are_rejected(bad: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_bytes({"x": [bad]})


def test_rejection_names_the_path() -> None:
    with pytest.raises(CanonicalizationError) as info:
        canonical_bytes({"evidence": {"risk": math.nan}})
    assert info.value.path == "/evidence/risk"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fast_path_equals_reference_implementation(value: object) -> None:
    assert canonical_bytes(value) == reference_canonical_bytes(value)
    raw, copy = canonical_copy(value)
    assert raw == reference_canonical_bytes(value)
    # The parsed copy canonicalises to the same bytes, and again with nested additions.
    assert canonical_bytes(copy) == raw
    assert canonical_bytes({"wrapped": copy}) == reference_canonical_bytes({"wrapped": value})


# Values orjson writes that are not JSON, or writes differently from JCS, including strings
# that look like the number tokens the fast paths rewrite or reject.
tricky_leaves = st.sampled_from([
    12.0, -0.0, 0.0, 1e15, 1e16, 9007199254740992.0, 1e-6, 1e-7, 1e21, 2**53 - 1, 2**53, -(2**60),
    "a:1.0,b", "x:12.0}", "[3.0]", ":1e+16,", ",-0.0]", "😀", "\ufb33",
])
json_like = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text() | tricky_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.sampled_from(["😀", "\ufb33", "a:1.0,"]),
                      children, max_size=4),
    max_leaves=25,
)


def _reference_or_error(value: object) -> bytes | type[CanonicalizationError]:
    try:
        return canonical_bytes(value)
    except CanonicalizationError:
        return CanonicalizationError


@settings(max_examples=600, deadline=None)
@given(json_like)
def test_canonical_copy_and_plain_bytes_equal_the_reference(value: object) -> None:
    expected = _reference_or_error(value)
    if expected is CanonicalizationError:
        with pytest.raises(CanonicalizationError):
            canonical_copy(value)
        return
    raw, copy = canonical_copy(value)
    assert raw == expected == reference_canonical_bytes(value)
    assert copy == value
    # The copy is plain, so the plain path must give the same bytes, also nested.
    assert canonical_plain_bytes(copy) == raw
    assert canonical_plain_bytes({"wrapped": [copy]}) == canonical_bytes({"wrapped": [value]})
    assert plain_digest(copy) == digest(value)


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, 2**64, 2**53 + 1, datetime.date(2026, 1, 1), uuid.UUID(int=1), (1, 2.0)],
)
def test_canonical_copy_never_lets_orjson_extensions_through(bad: object) -> None:
    value = {"evidence": {"k": bad}}
    if isinstance(bad, tuple):  # a tuple is an array: copied as a list
        assert canonical_copy(value) == (b'{"evidence":{"k":[1,2]}}', {"evidence": {"k": [1, 2]}})
        return
    with pytest.raises(CanonicalizationError):
        canonical_copy(value)


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        ({"a": -0.0, "b": [12.0, -3.0, 0.5]}, b'{"a":0,"b":[12,-3,0.5]}'),
        ({"big": 1e15, "edge": 9007199254740992.0}, b'{"big":1000000000000000,"edge":9007199254740992}'),
        ({"tiny": 1e-6, "huge": 1e16}, b'{"huge":10000000000000000,"tiny":0.000001}'),
    ],
)
def test_canonical_copy_numbers(value: dict[str, object], raw: bytes) -> None:
    got, copy = canonical_copy(value)
    assert got == raw
    assert copy == value
    # Beyond ±(2^53-1) a number stays a float, so the copy can be canonicalised again.
    assert all(type(v) is float for k, v in copy.items() if k in ("edge", "huge"))
    assert canonical_bytes(copy) == canonical_plain_bytes(copy) == raw


def test_a_string_that_looks_like_an_integral_float_is_not_rewritten() -> None:
    value = {"note": "total:12.0,", "n": 12.0}
    raw, copy = canonical_copy(value)
    assert raw == b'{"n":12,"note":"total:12.0,"}'
    assert copy == {"n": 12, "note": "total:12.0,"}
    assert canonical_plain_bytes({"note": "total:12.0,", "n": 12}) == raw


def test_json_number_makes_integral_floats_ints() -> None:
    assert [json_number(x) for x in (0.0, 12.0, 0.35, -3.0)] == [0, 12, 0.35, -3]
    assert type(json_number(12.0)) is int and type(json_number(2.0**60)) is float


ascii_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(ascii_keys, json_like, max_size=6), ascii_keys, json_like)
def test_splicing_a_member_equals_writing_the_whole_object(
    value: dict[str, object], key: str, member: object
) -> None:
    expected = _reference_or_error({**value, key: member})
    if expected is CanonicalizationError:
        return
    encoded = reference_canonical_bytes(member)
    assert canonical_plain_bytes_with(value, key, encoded) == expected


def test_splicing_still_finds_what_orjson_writes_unlike_rfc8785() -> None:
    with pytest.raises(CanonicalizationError):
        canonical_plain_bytes_with({"a": "\ud800"}, "b", b"1")
    assert canonical_plain_bytes_with({"a": 12.0}, "b", b"1") == b'{"a":12,"b":1}'
    assert canonical_plain_bytes_with({"c": 1e21}, "b", b"1") == b'{"b":1,"c":1e+21}'
