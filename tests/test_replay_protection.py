"""Replayed signatures and repeated events (issue 14, item 7): a captured `v1` request that
writes is accepted once (on PostgreSQL, once across replicas), and an event sent with an
`event_id` is stored once however often it arrives."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from _builders import support_refund
from fastapi.testclient import TestClient

from lumyn import Lumyn, LumynConfig
from lumyn.errors import EventIdConflict, InvalidEvent
from lumyn.service import create_app
from lumyn.service.auth import v1_signature
from lumyn.service.nonces import MemoryNonces

SECRET = "replay-secret"


def signed(method: str, path: str, body: bytes = b"") -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"content-type": "application/json", "x-lumyn-timestamp": stamp,
            "x-lumyn-signature": v1_signature(SECRET, stamp, method, path, body)}


def v1_app(**settings: Any) -> TestClient:
    return TestClient(create_app(LumynConfig(signing_secret=SECRET, signing_scheme="v1",
                                             **settings)))


def _replays(first: TestClient, second: TestClient) -> None:
    body = orjson.dumps(support_refund())  # no request_id: a replay would be a new decision
    headers = signed("POST", "/v0/decide", body)
    ok = first.post("/v0/decide", content=body, headers=headers)
    assert ok.status_code == 200
    again = second.post("/v0/decide", content=body, headers=headers)
    assert again.status_code == 401
    assert again.json()["error"]["reason_code"] == "SIGNATURE_REPLAYED"
    decision = ok.json()["decision_id"]
    path = f"/v0/decisions/{decision}/events"
    event = orjson.dumps({"type": "note", "data": {"text": "checked"}})
    event_headers = signed("POST", path, event)
    assert first.post(path, content=event, headers=event_headers).status_code == 201
    replayed = second.post(path, content=event, headers=event_headers)
    assert replayed.json()["error"]["reason_code"] == "SIGNATURE_REPLAYED"
    read_path = f"/v0/decisions/{decision}"
    read = signed("GET", read_path)
    for client in (first, second, first):  # reads change nothing: not remembered
        response = client.get(read_path, headers=read)
        assert response.status_code == 200
        assert len(response.json()["decision_event_log"]) == 1


def test_a_captured_v1_write_is_accepted_once(tmp_path: Path) -> None:
    with v1_app(store_path=str(tmp_path / "lumyn.db")) as client:
        _replays(client, client)


def test_replicas_on_postgresql_share_the_replay_cache(pg_url: str) -> None:
    with v1_app(storage_url=pg_url) as one, v1_app(storage_url=pg_url) as two:
        _replays(one, two)


def test_memory_cache_is_bounded_and_fails_closed() -> None:
    cache = MemoryNonces(capacity=3)
    later = time.time() + 60
    assert all(cache.first_use(bytes([n]), later) for n in range(3))
    assert not cache.first_use(bytes([1]), later)
    with pytest.raises(Exception, match="replay window"):
        cache.first_use(bytes([9]), later)
    expired = MemoryNonces(capacity=2)
    expired.first_use(b"a", time.time() - 1)
    expired.first_use(b"b", time.time() - 1)
    assert expired.first_use(b"c", later)  # expired signatures make room


def test_an_event_id_makes_events_idempotent(store_url: str) -> None:
    with Lumyn(LumynConfig(storage_url=store_url)) as lumyn:
        decision = lumyn.decide(support_refund())["decision_id"]
        first = lumyn.append_event(decision, "label", {"label": "failure", "summary": "fraud"},
                                   event_id="evt-1")
        again = lumyn.append_event(decision, "label", {"label": "failure", "summary": "fraud"},
                                   event_id="evt-1")
        assert again == first
        note = lumyn.append_event(decision, "note", {"text": "x"}, event_id="evt-2")
        assert lumyn.append_event(decision, "note", {"text": "x"}, event_id="evt-2") == note
        events = lumyn.get_decision(decision)["decision_event_log"]
        assert [e["event_id"] for e in events] == ["evt-1", "evt-2"]
        assert len(lumyn.store.memory_items_since("acme", "support.refund", 0)) == 1
        with pytest.raises(EventIdConflict):
            lumyn.append_event(decision, "note", {"text": "different"}, event_id="evt-2")
        other = lumyn.decide(support_refund(ticket_id="ZD-9", order_id="9"))["decision_id"]
        with pytest.raises(EventIdConflict):  # the id names an event of another decision
            lumyn.append_event(other, "note", {"text": "x"}, event_id="evt-2")
        with pytest.raises(InvalidEvent):
            lumyn.append_event(decision, "note", {}, event_id="no spaces allowed")
        assert len(lumyn.get_decision(other).get("decision_event_log", [])) == 0


def test_event_id_over_http(tmp_path: Path) -> None:
    with TestClient(create_app(LumynConfig(store_path=str(tmp_path / "lumyn.db")))) as client:
        decision = client.post("/v0/decide", json=support_refund()).json()["decision_id"]
        path = f"/v0/decisions/{decision}/events"
        body = {"type": "label", "data": {"label": "failure"}, "event_id": "01J0EVENT"}
        first = client.post(path, json=body)
        second = client.post(path, json=body)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        clash = client.post(path, json={**body, "data": {"label": "success"}})
        assert (clash.status_code, clash.json()["error"]["reason_code"]) == (
            409, "EVENT_ID_CONFLICT")
        bad = client.post(path, json={**body, "event_id": 7})
        assert (bad.status_code, bad.json()["error"]["field"]) == (422, "event_id")
