"""`lumyn.client.Client` against a real `lumyn serve`: the same shapes and errors as `Lumyn`."""

from __future__ import annotations

import copy
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from _builders import SUPPORT_REFUND
from test_service_http import free_port, start_server

from lumyn.client import Client, ServiceError, ServiceUnreachable
from lumyn.config import LumynConfig
from lumyn.errors import DecisionNotFound, IdempotencyConflict, InvalidEvent, RequestInvalid
from lumyn.sdk import Lumyn

SECRET = "client-secret"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`lumyn serve` with body signing and a tenant key; (base URL, database path)."""
    root = tmp_path_factory.mktemp("client")
    config = root / "lumyn.toml"
    config.write_text('[lumyn.tenant_keys]\n"key-acme" = "acme"\n')
    process, base = start_server(root / ".lumyn", {"LUMYN_SIGNING_SECRET": SECRET,
                                                   "LUMYN_CONFIG_PATH": str(config)})
    yield base, root / ".lumyn" / "lumyn.db"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)


@pytest.fixture
def client(served: tuple[str, Path]) -> Iterator[Client]:
    with Client(served[0], signing_secret=SECRET, tenant_key="key-acme") as remote:
        yield remote


def acme_request(request_id: str) -> dict[str, object]:
    body = copy.deepcopy(SUPPORT_REFUND)
    body["tenant"] = {"tenant_id": "acme"}
    body["request_id"] = request_id
    return body


def test_the_client_returns_what_lumyn_returns(client: Client, served: tuple[str, Path]) -> None:
    record = client.decide(acme_request("client-1"))
    assert record["verdict"] == "TRUST"
    event = client.append_event(record["decision_id"], "outcome", {"status": "success"})
    label = client.label(record["decision_id"], "success", "went fine")
    with Lumyn(LumynConfig(storage_url=f"sqlite:///{served[1]}")) as local:
        stored = local.get_decision(record["decision_id"])
    assert client.get_decision(record["decision_id"]) == stored
    assert [e["event_id"] for e in stored["decision_event_log"]] == [event["event_id"],
                                                                     label["event_id"]]
    assert label["data"]["label"] == "success" and label["data"]["summary"] == "went fine"
    assert "decision_event_log" not in client.get_decision(record["decision_id"],
                                                           with_events=False)


def test_errors_are_the_sdk_errors(client: Client) -> None:
    with pytest.raises(DecisionNotFound):
        client.get_decision("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    with pytest.raises(InvalidEvent):
        client.append_event(client.decide(acme_request("client-2"))["decision_id"], "shout")
    broken = acme_request("client-3")
    del broken["action"]
    with pytest.raises(RequestInvalid) as invalid:
        client.decide(broken)
    assert invalid.value.reason_code == "INVALID_REQUEST_SCHEMA"
    changed = acme_request("client-2")
    changed["evidence"]["ticket_id"] = "ZD-other"  # type: ignore[index]
    with pytest.raises(IdempotencyConflict) as conflict:
        client.decide(changed)
    assert conflict.value.existing_decision_id


def test_keys_and_signatures_are_checked(served: tuple[str, Path]) -> None:
    base = served[0]
    with Client(base, signing_secret=SECRET, tenant_key="wrong") as wrong_key, \
            pytest.raises(ServiceError) as caught:
        wrong_key.decide(acme_request("client-4"))
    assert caught.value.reason_code == "API_KEY_INVALID" and caught.value.status == 401
    with Client(base, signing_secret="not-the-secret", tenant_key="key-acme") as bad_sig, \
            pytest.raises(ServiceError) as unsigned:
        bad_sig.decide(acme_request("client-5"))
    assert unsigned.value.reason_code == "SIGNATURE_INVALID"
    other = acme_request("client-6")
    other["tenant"] = {"tenant_id": "globex"}
    with Client(base, signing_secret=SECRET, tenant_key="key-acme") as remote, \
            pytest.raises(ServiceError) as mismatch:
        remote.decide(other)
    assert mismatch.value.reason_code == "TENANT_MISMATCH"


def test_an_unreachable_service_fails_closed() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", timeout=2) as nobody, \
            pytest.raises(ServiceUnreachable) as caught:
        nobody.decide(acme_request("client-7"))
    assert caught.value.reason_code == "SERVICE_UNREACHABLE"
