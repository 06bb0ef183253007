"""RFC 8785 canonical JSON and digests."""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumyn.contracts.canonical import (
    CanonicalizationError,
    canonical_bytes,
    canonical_copy,
    digest,
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
