"""Generated hostile input never crashes the engine, the policy compiler or the service."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _support import BASE
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumyn import Lumyn, LumynConfig
from lumyn.contracts import validate_record
from lumyn.errors import LumynError
from lumyn.policy import PolicyInvalid, bundled_policy_path, compile_policy
from lumyn.service import create_app

weird_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "\x00", "\ud800", "\udfff", "é" * 3, "😀", "\u202e", "a" * 10_000,
                     "${jndi:x}", "'; DROP TABLE decisions; --", "support.refund", "USD"]),
)
weird_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e308, 5e-324, 2**53, 2**53 + 1]),
)
leaf = st.one_of(st.none(), st.booleans(), weird_number, weird_text)
json_like = st.recursive(
    leaf,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(weird_text, children, max_size=4),
    max_leaves=20,
)
PATHS = [("evidence",), ("action",), ("action", "amount"), ("action", "amount", "value"),
         ("action", "type"), ("subject",), ("subject", "type"), ("context",),
         ("context", "mode"), ("context", "digest"), ("tags",), ("action", "tags"),
         ("request_id",), ("tenant",), ("hints",), ("policy",), ("extensions",), ()]


def deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"k": [value]}
    return value


@st.composite
def hostile_requests(draw: Any) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_like)  # not even an object, sometimes
    request = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        node: Any = request
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if not path:
            request[draw(weird_text)] = draw(json_like)
            continue
        if isinstance(node, dict):
            action = draw(st.sampled_from(["set", "delete", "deep"]))
            if action == "delete":
                node.pop(path[-1], None)
            elif action == "deep":
                node[path[-1]] = deep(draw(st.integers(1, 3000)))
            else:
                node[path[-1]] = draw(json_like)
    return request


@pytest.fixture(scope="module")
def lumyn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lumyn]:
    instance = Lumyn(LumynConfig(store_path=str(tmp_path_factory.mktemp("bad") / "lumyn.db")))
    yield instance
    instance.close()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile_requests())
def test_engine_answers_a_schema_error_or_a_valid_record(lumyn: Lumyn, request_: Any) -> None:
    try:
        record = lumyn.decide(request_)
    except LumynError as exc:
        assert exc.reason_code and exc.one_line()
        return
    validate_record(record)
    assert record["reason_codes"] != ["STORAGE_UNAVAILABLE"]


SUPPORT = bundled_policy_path("support").read_text()
yaml_fragments = st.sampled_from([
    "rules:\n  - id: X\n", "  if: {amount_usd_gt: x}\n", "&a [*a]\n", "!!python/object:os.system\n",
    "{", "- - - -\n", "thresholds: {a: .nan}\n", "\t\t", "key: !!binary AAAA\n", "? [a, b]\n: c\n",
    "a: " + "[" * 200 + "]" * 200 + "\n", "defaults: null\n", "rules: 7\n", "\x00", "%YAML 9.9\n",
])


@st.composite
def hostile_policies(draw: Any) -> str:
    base = draw(st.sampled_from([SUPPORT, "", "schema_version: policy.v0\n"]))
    pieces = [base]
    for _ in range(draw(st.integers(0, 4))):
        cut = draw(st.integers(0, len(pieces[0])))
        choice = draw(st.one_of(yaml_fragments, st.text(max_size=40)))
        pieces[0] = pieces[0][:cut] + choice + pieces[0][cut:]
    return pieces[0]


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile_policies())
def test_policy_compiler_only_ever_raises_policy_invalid(text: str) -> None:
    started = time.monotonic()
    try:
        compile_policy(text)
    except PolicyInvalid as exc:
        assert exc.problems
    assert time.monotonic() - started < 5


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = LumynConfig(store_path=str(tmp_path_factory.mktemp("svc") / "lumyn.db"),
                         max_body_bytes=64 * 1024)
    with TestClient(create_app(config)) as test_client:
        yield test_client


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"[]", b"{}", b"NaN", b'{"a": Infinity}', b"\xff\xfe",
                     b'"\\ud800"', b"[" * 5000 + b"]" * 5000, b"1" * 400, b'{"a":' * 300]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(raw_bodies, hostile_requests().map(lambda r: _dumps(r))),
       st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""]))
def test_service_never_answers_5xx_to_bad_input(client: TestClient, body: bytes,
                                                content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/v0/decide", "/v0/decisions/01ARZ3NDEKTSV4RRFFQ69G5FAV/events"):
        response = client.post(path, content=body, headers=headers)
        assert response.status_code < 500 or (
            response.status_code == 503 and response.json().get("verdict") == "ABSTAIN"
        ), (path, response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert response.json()["error"]["reason_code"]


def _dumps(value: Any) -> bytes:
    import json

    try:
        return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return b"{}"
