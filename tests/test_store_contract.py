"""The store contract, run against both backends (SQLite and a real PostgreSQL via pgserver).

Every test takes `store_url` (or `store`), parametrized over ["sqlite", "postgres"] in
conftest.py, so both backends pass exactly the same suite.
"""

from __future__ import annotations

import copy
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from _builders import support_refund

from lumyn import Lumyn, LumynConfig
from lumyn.contracts import canonical_bytes, validate_record
from lumyn.contracts.ids import new_id, utc_now
from lumyn.errors import (
    DecisionNotFound,
    IdempotencyConflict,
    InvalidEvent,
    RequestInvalid,
    StorageUnavailable,
)
from lumyn.memory import MemoryItem
from lumyn.policy import bundled_policy_path, load_policy
from lumyn.store import DecisionRow, DecisionWrite, IdempotencyKey, PolicySnapshot, Store, open_store
from lumyn.store.base import SCHEMA_VERSION, WriteOutcome
from lumyn.store.schema import EXPECTED_TABLES

RawSql = Callable[..., list[tuple[Any, ...]]]


def refund(**evidence: Any) -> dict[str, Any]:
    """A small, clean USD refund that the bundled support pack trusts."""
    return support_refund(**evidence)


def with_request_id(request: dict[str, Any], request_id: str) -> dict[str, Any]:
    out = copy.deepcopy(request)
    out["request_id"] = request_id
    return out


@pytest.fixture
def lumyn(store_url: str) -> Iterator[Lumyn]:
    instance = Lumyn(LumynConfig(storage_url=store_url))
    yield instance
    instance.close()


def _snapshot() -> PolicySnapshot:
    policy = load_policy(bundled_policy_path())
    return PolicySnapshot(policy.policy_hash, policy.policy_id, policy.policy_version, policy.text)


# -- schema -------------------------------------------------------------------------------------


def test_schema_is_created_with_version_and_is_healthy(store: Store, store_url: str,
                                                       raw_sql: RawSql) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    assert store.check() == []
    assert store.ensure_schema() == []  # nothing left to do on a current schema
    if store_url.startswith("sqlite"):
        names = {r[0] for r in raw_sql(store_url, "SELECT name FROM sqlite_master")}
    else:
        names = {r[0] for r in raw_sql(
            store_url,
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "UNION SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "UNION SELECT viewname FROM pg_views WHERE schemaname = current_schema()")}
    for name in (*EXPECTED_TABLES, "idempotency_keys", "decisions_tenant_action",
                 "decisions_verdict", "decisions_context_digest", "decisions_idempotency",
                 "decision_events_decision", "memory_items_group"):
        assert name in names


# -- durable append and read back -----------------------------------------------------------------


def test_decision_is_durable_and_reads_back_byte_identical(store_url: str) -> None:
    with Lumyn(LumynConfig(storage_url=store_url)) as first:
        record = first.decide(refund())
        validate_record(record)
        assert record["verdict"] == "TRUST"
    # a new store object (new connections) sees exactly the bytes decide() returned
    reopened = open_store(store_url)
    try:
        found = reopened.get_decision(record["decision_id"])
        assert found == ("acme", canonical_bytes(record))
    finally:
        reopened.close()
    with Lumyn(LumynConfig(storage_url=store_url)) as second:
        assert second.get_decision(record["decision_id"]) == record


AWKWARD_EVIDENCE: dict[str, Any] = {
    "big": 1e21,  # JCS writes 1e+21
    "tiny": 1e-7,  # JCS writes 1e-7
    "integral_float": 201.0,  # JCS writes 201
    "tenth": 0.1,
    "max_safe": 9007199254740991,
    "neg": -0.5,
    "nul": "a\u0000b",  # PostgreSQL JSONB cannot hold U+0000
    "emoji": "refund 😀 ✓",
    "😀key": "astral key",
    "quote": "\"\\/\b\f\n\r\t\u001f",
    "nested": {"z": [1, 2.5, None, True, {"b": 1, "a": 2}], "a": ""},
}


def test_append_decision_returns_the_canonical_bytes_for_awkward_values(
    store: Store, lumyn: Lumyn
) -> None:
    record = lumyn.decide(refund(**AWKWARD_EVIDENCE))
    expected = canonical_bytes(record)
    assert lumyn.store.get_decision(record["decision_id"]) == ("acme", expected)
    # the store-level call returns the canonical bytes itself; both backends hold the same
    row_record = dict(record, decision_id=new_id())
    raw = canonical_bytes(row_record)
    row = DecisionRow.from_record(row_record, "acme", raw)
    assert store.append_decisions([DecisionWrite(row, None, _snapshot())]) == [raw]
    assert store.get_decision(row_record["decision_id"]) == ("acme", raw)
    assert orjson.loads(raw)["request"]["evidence"]["nul"] == "a\u0000b"


def test_unknown_ids_are_not_found(store: Store, lumyn: Lumyn) -> None:
    assert store.get_decision("01NOTAREALDECISIONID000000") is None
    assert store.find_idempotent("acme", "nope") is None
    assert store.list_events("01NOTAREALDECISIONID000000") == []
    assert store.get_memory_items(["01NOTAREALMEMORYID00000000"]) == []
    assert store.get_memory_items([]) == []
    with pytest.raises(DecisionNotFound):
        lumyn.get_decision("01NOTAREALDECISIONID000000")
    event = {"event_id": new_id(), "at": utc_now(), "type": "note", "data": {}}
    with pytest.raises(DecisionNotFound):
        store.append_event("01NOTAREALDECISIONID000000", event, None)


# -- events -----------------------------------------------------------------------------------------


def test_events_append_in_order_and_read_back(store_url: str, lumyn: Lumyn) -> None:
    record = lumyn.decide(refund())
    did = record["decision_id"]
    outcome = lumyn.append_event(did, "outcome", {"status": "refunded", "amount": 12.5})
    note = lumyn.append_event(did, "note", {"text": "customer happy \u0000 😀", "n": 1e21})
    override = lumyn.append_event(did, "override", {"by": "ops"})
    with Lumyn(LumynConfig(storage_url=store_url)) as other:
        log = other.get_decision(did)["decision_event_log"]
    assert log == [outcome, note, override]
    assert [e["type"] for e in log] == ["outcome", "note", "override"]
    assert lumyn.get_decision(did, with_events=False).get("decision_event_log") is None
    validate_record(lumyn.get_decision(did))


# -- memory -------------------------------------------------------------------------------------------


def test_memory_items_since_is_incremental_and_ordered(store: Store, lumyn: Lumyn) -> None:
    records = [lumyn.decide(refund(ticket_id=f"ZD-{i}")) for i in range(5)]
    labels = ["failure", "success", "near_miss", "failure", "success"]
    events = [lumyn.label(r["decision_id"], lab, f"case {i}")
              for i, (r, lab) in enumerate(zip(records, labels, strict=True))]
    memory_ids = [e["data"]["memory_id"] for e in events]

    rows = store.memory_items_since("acme", "support.refund", 0)
    assert [item.memory_id for _, item in rows] == memory_ids
    seqs = [seq for seq, _ in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [item.label for _, item in rows] == labels
    first = rows[0][1]
    assert first.source_decision_id == records[0]["decision_id"]
    assert first.summary == "case 0"
    assert "action:support.refund" in first.features or first.features  # features kept

    assert [i.memory_id for _, i in store.memory_items_since("acme", "support.refund", seqs[2])] \
        == memory_ids[3:]
    assert store.memory_items_since("acme", "support.refund", seqs[-1]) == []
    assert store.memory_items_since("globex", "support.refund", 0) == []
    assert store.memory_items_since("acme", "support.close_ticket", 0) == []

    got = store.get_memory_items([memory_ids[3], memory_ids[0], "missing"])
    assert [i.memory_id for i in got] == sorted([memory_ids[0], memory_ids[3]])
    assert {i.memory_id: i for i in got}[memory_ids[0]] == first
    assert lumyn.memory_items([memory_ids[1]])[0].label == "success"


def test_concurrent_labels_are_never_skipped_by_an_incremental_reader(store_url: str) -> None:
    """Writers label from two Lumyn instances (two pools) while a reader pulls with
    memory_items_since(after_seq) as the engine does; the reader must end with every item."""
    writers = [Lumyn(LumynConfig(storage_url=store_url)) for _ in range(2)]
    reader = open_store(store_url)
    try:
        decisions = [writers[0].decide(refund(ticket_id=f"ZD-{i}"))["decision_id"]
                     for i in range(24)]
        seen: dict[str, int] = {}
        last = 0
        stop = threading.Event()

        def pull() -> None:
            nonlocal last
            for seq, item in reader.memory_items_since("acme", "support.refund", last):
                assert seq > last
                seen[item.memory_id] = seq
                last = seq

        def poll() -> None:
            while not stop.is_set():
                pull()

        def label(k: int) -> None:
            for did in decisions[k::4]:
                writers[k % 2].label(did, "failure", "race")

        poller = threading.Thread(target=poll)
        poller.start()
        threads = [threading.Thread(target=label, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        poller.join()
        pull()
        everything = reader.memory_items_since("acme", "support.refund", 0)
        assert len(everything) == 24
        assert seen == {item.memory_id: seq for seq, item in everything}
    finally:
        reader.close()
        for w in writers:
            w.close()


def test_failure_label_escalates_the_next_similar_request_compounding(store_url: str) -> None:
    """Compounding: label a TRUSTed decision a failure; the next similar request is ESCALATEd
    with the bundled support pack, also when decided by another instance (replica)."""
    first = Lumyn(LumynConfig(storage_url=store_url))
    second = Lumyn(LumynConfig(storage_url=store_url))
    try:
        before = first.decide(refund())
        also_before = second.decide(refund(ticket_id="ZD-1002"))  # primes second's memory view
        assert before["verdict"] == also_before["verdict"] == "TRUST"
        assert before["risk_signals"]["failure_similarity"]["score"] == 0
        event = first.label(before["decision_id"], "failure", "refund went to a fraudster")
        memory_id = event["data"]["memory_id"]

        for instance in (first, second):
            after = instance.decide(refund(ticket_id="ZD-1003"))
            assert after["verdict"] == "ESCALATE"
            assert "FAILURE_MEMORY_SIMILAR_ESCALATE" in after["reason_codes"]
            similarity = after["risk_signals"]["failure_similarity"]
            assert similarity["score"] >= 0.35
            assert similarity["top_k"][0]["memory_id"] == memory_id
            assert similarity["top_k"][0]["label"] == "failure"
            assert after["explanation"]["details"]["memory_considered"] == [memory_id]
            validate_record(after)
        other_tenant = second.decide(refund() | {"subject": {"type": "agent", "id": "b",
                                                              "tenant_id": "globex"}})
        assert other_tenant["verdict"] == "TRUST"  # memory is per tenant
    finally:
        first.close()
        second.close()


def test_labeling_a_decision_again_supersedes_its_earlier_label_in_memory(
        store: Store, store_url: str) -> None:
    """failure, failure, then success on one decision: memory holds one item for it (the
    latest label wins, here and in a replica that had indexed the earlier ones), while the
    event log keeps all three labels."""
    first = Lumyn(LumynConfig(storage_url=store_url))
    replica = Lumyn(LumynConfig(storage_url=store_url))
    try:
        decided = first.decide(refund())
        did = decided["decision_id"]
        other = first.decide(refund(ticket_id="ZD-7"))["decision_id"]
        first.label(other, "near_miss", "another decision's label stays")
        events = [first.label(did, "failure", "chargeback")]
        assert replica.decide(refund(ticket_id="ZD-8"))["verdict"] == "ESCALATE"
        events.append(first.label(did, "failure", "chargeback, confirmed"))
        events.append(replica.label(did, "success", "chargeback reversed: refund was right"))
        ids = [e["data"]["memory_id"] for e in events]

        rows = store.memory_items_since("acme", "support.refund", 0)
        seq_of = {item.memory_id: seq for seq, item in rows}
        supersedes = {item.memory_id: item.supersedes_seq for _, item in rows}
        assert supersedes == {rows[0][1].memory_id: None, ids[0]: None,
                              ids[1]: seq_of[ids[0]], ids[2]: seq_of[ids[1]]}

        for instance in (first, replica):
            after = instance.decide(refund(ticket_id="ZD-9"))
            top = after["risk_signals"]["failure_similarity"]["top_k"]
            from_did = [m["memory_id"] for m in top if m["memory_id"] in ids]
            assert from_did == [ids[2]], top
            assert after["risk_signals"]["failure_similarity"]["score"] == 0
            assert after["verdict"] == "TRUST"
        assert [e["data"]["label"] for e in first.store.list_events(did)] == ["failure", "failure", "success"]
        assert len(store.get_memory_items(ids)) == 3  # the items themselves are never deleted
    finally:
        first.close()
        replica.close()


def test_prune_and_retention_leave_old_items_out_of_similarity(
        store: Store, store_url: str, raw_sql: RawSql) -> None:
    """`prune_memory` retires a tenant's items created before a cutoff from similarity, here
    and (within a second) in a replica; `memory_retention_days` does it by age. Items and
    events stay."""
    first = Lumyn(LumynConfig(storage_url=store_url))
    replica = Lumyn(LumynConfig(storage_url=store_url))
    globex = {"subject": {"type": "agent", "id": "b", "tenant_id": "globex"}}
    try:
        acme_id = first.decide(refund())["decision_id"]
        globex_id = first.decide(refund() | globex)["decision_id"]
        first.label(acme_id, "failure", "fraud")
        first.label(globex_id, "failure", "fraud")
        assert replica.decide(refund(ticket_id="ZD-2"))["verdict"] == "ESCALATE"

        time.sleep(0.3)
        pruned = first.prune_memory(1e-6, tenant_id="acme")  # all but the last 86 ms
        assert pruned["items"] == 1 and pruned["tenant_id"] == "acme"
        assert first.decide(refund(ticket_id="ZD-3"))["verdict"] == "TRUST"
        time.sleep(1.1)  # the replica looks at the store's prune cutoff once a second
        assert replica.decide(refund(ticket_id="ZD-4"))["verdict"] == "TRUST"
        assert replica.decide(refund(ticket_id="ZD-5") | globex)["verdict"] == "ESCALATE"
        assert [e["type"] for e in store.list_events(acme_id)] == ["label"]
        assert len(store.memory_items_since("acme", "support.refund", 0)) == 1
        with pytest.raises(InvalidEvent):
            first.prune_memory(0)

        old = MemoryItem(new_id(), "initech", "support.refund", "failure", "long ago",
                         first.memory_items([store.memory_items_since(
                             "acme", "support.refund", 0)[0][1].memory_id])[0].features)
        raw_sql(store_url, "INSERT INTO memory_items (memory_id, tenant_id, action_type, label, "
                "summary, features, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (old.memory_id, old.tenant_id, old.action_type, old.label, old.summary,
                 orjson.dumps(list(old.features)), "2020-01-01T00:00:00.000Z"))
        initech = {"subject": {"type": "agent", "id": "c", "tenant_id": "initech"}}
        assert first.decide(refund(ticket_id="ZD-6") | initech)["verdict"] == "ESCALATE"
        with Lumyn(LumynConfig(storage_url=store_url, memory_retention_days=365)) as recent:
            assert recent.decide(refund(ticket_id="ZD-7") | initech)["verdict"] == "TRUST"
    finally:
        first.close()
        replica.close()


# -- policy snapshots ----------------------------------------------------------------------------------


def test_policy_snapshot_holds_the_exact_text(store: Store, lumyn: Lumyn) -> None:
    record = lumyn.decide(refund())
    policy_hash = record["policy"]["policy_hash"]
    assert store.get_policy_text(policy_hash) == lumyn.policy.text
    assert store.get_policy_text("sha256:" + "0" * 64) is None
    # a second decision under the same policy keeps one snapshot
    lumyn.decide(refund(ticket_id="ZD-2"))
    assert store.get_policy_text(policy_hash) == lumyn.policy.text


def test_policy_snapshot_is_written_with_the_first_decision_of_each_policy(
    store_url: str, tmp_path: Path
) -> None:
    text = Path(bundled_policy_path()).read_text().replace('policy_version: "0.1.0"',
                                                            'policy_version: "0.1.1"')
    other = tmp_path / "other.yml"
    other.write_text(text)
    with Lumyn(LumynConfig(storage_url=store_url)) as a, \
            Lumyn(LumynConfig(storage_url=store_url, policy_path=str(other))) as b:
        ra, rb = a.decide(refund()), b.decide(refund())
        assert ra["policy"]["policy_hash"] != rb["policy"]["policy_hash"]
        assert a.store.get_policy_text(rb["policy"]["policy_hash"]) == text
        assert b.store.get_policy_text(ra["policy"]["policy_hash"]) == a.policy.text


def test_one_batch_under_two_policies_keeps_both_snapshots(store: Store) -> None:
    first = _snapshot()
    second = PolicySnapshot("sha256:" + "5" * 64, first.policy_id, "9.9.9", first.text + "\n")
    with Lumyn(LumynConfig()) as scratch:  # only to build a realistic record body
        body = scratch.decide(refund() | {"hints": {"dry_run": True}})
    body.pop("extensions", None)
    writes = []
    for snapshot in (first, second, first, second):
        record = dict(body, decision_id=new_id())
        writes.append(DecisionWrite(DecisionRow.from_record(record, "acme", canonical_bytes(record)),
                                    None, snapshot))
    assert store.append_decisions(writes) == [write.row.record_json for write in writes]
    assert store.get_policy_text(first.policy_hash) == first.text
    assert store.get_policy_text(second.policy_hash) == second.text


# -- idempotency ----------------------------------------------------------------------------------------


def test_idempotent_retry_returns_the_stored_record(store: Store, lumyn: Lumyn) -> None:
    first = lumyn.decide(with_request_id(refund(), "req-1"))
    retry = lumyn.decide(with_request_id(refund(), "req-1"))
    assert retry == first
    found = store.find_idempotent("acme", "req-1")
    assert found is not None and found[1] == canonical_bytes(first)
    other_tenant = with_request_id(refund(), "req-1")
    other_tenant["subject"]["tenant_id"] = "globex"
    assert lumyn.decide(other_tenant)["decision_id"] != first["decision_id"]


def test_reused_request_id_with_a_different_request_conflicts(lumyn: Lumyn) -> None:
    first = lumyn.decide(with_request_id(refund(), "req-2"))
    with pytest.raises(IdempotencyConflict) as info:
        lumyn.decide(with_request_id(refund(ticket_id="ZD-other"), "req-2"))
    assert info.value.existing_decision_id == first["decision_id"]
    assert info.value.field == "request_id"
    assert info.value.reason_code == "IDEMPOTENCY_CONFLICT"


def test_store_level_idempotency_same_and_different_digest(store: Store) -> None:
    snapshot = _snapshot()
    with Lumyn(LumynConfig()) as scratch:  # only to build a realistic record body
        body = scratch.decide(with_request_id(refund(), "k") | {"hints": {"dry_run": True}})
    body.pop("extensions", None)

    def row_for(decision_id: str) -> DecisionRow:
        record = dict(body, decision_id=decision_id)
        return DecisionRow.from_record(record, "acme", canonical_bytes(record))

    def append(row: DecisionRow, key: IdempotencyKey) -> WriteOutcome:
        return store.append_decisions([DecisionWrite(row, key, snapshot)])[0]

    key = IdempotencyKey("acme", "k", "sha256:" + "1" * 64)
    first = row_for(new_id())
    assert append(first, key) is first.record_json
    again = append(row_for(new_id()), key)
    assert again == first.record_json  # the stored record, nothing new written
    conflict = append(row_for(new_id()), IdempotencyKey("acme", "k", "sha256:" + "2" * 64))
    assert isinstance(conflict, IdempotencyConflict)
    assert conflict.existing_decision_id == first.decision_id


def test_a_memory_checked_write_lands_only_against_current_memory(
    store: Store, lumyn: Lumyn, raw_sql: RawSql, store_url: str
) -> None:
    """DecisionWrite.memory_seq: the write happens only while no memory item of the row's
    tenant and action type is newer; idempotency and conflicts still apply. Alone and in a
    batch, on every backend."""
    first = lumyn.decide(refund())
    snapshot = _snapshot()

    def write(seq: int | None, key: IdempotencyKey | None = None) -> DecisionWrite:
        record = {**first, "decision_id": new_id()}
        return DecisionWrite(DecisionRow.from_record(record, "acme", canonical_bytes(record)),
                             key, snapshot, seq)

    def count() -> int:
        return int(raw_sql(store_url, "SELECT count(*) FROM decisions")[0][0])

    assert store.append_decisions([write(0)])[0] is not None
    assert count() == 2
    lumyn.label(first["decision_id"], "failure", "went wrong")
    seq = store.memory_items_since("acme", "support.refund", 0)[0][0]
    stale, current, unchecked = write(seq - 1), write(seq), write(None)
    outcomes = store.append_decisions([stale, current, unchecked])
    assert outcomes == [None, current.row.record_json, unchecked.row.record_json]
    assert store.append_decisions([write(seq - 1)]) == [None]
    assert count() == 4  # nothing written for decisions made against older memory
    assert store.get_decision(stale.row.decision_id) is None

    key = IdempotencyKey("acme", "req-checked", "sha256:" + "1" * 64)
    stored = store.append_decisions([write(seq, key)])[0]
    assert store.append_decisions([write(seq, key)]) == [stored]  # a retry: the stored record
    other = IdempotencyKey("acme", "req-checked", "sha256:" + "2" * 64)
    assert isinstance(store.append_decisions([write(seq, other)])[0], IdempotencyConflict)
    assert count() == 5


def test_both_backends_refuse_u0000_in_identifiers_and_label_summaries(
    store: Store, lumyn: Lumyn
) -> None:
    """PostgreSQL text cannot hold U+0000; every backend refuses it alike, so the input
    contract does not depend on the store. Records and event data keep it."""
    record = lumyn.decide(refund(note="a\u0000b"))
    assert lumyn.get_decision(record["decision_id"]) == record
    with pytest.raises(InvalidEvent, match="U\\+0000") as info:
        lumyn.label(record["decision_id"], "failure", "bad\u0000summary")
    assert info.value.field == "summary"
    assert store.memory_items_since("acme", "support.refund", 0) == []
    assert lumyn.get_decision(record["decision_id"]) == record  # no event written either

    body = {**record, "decision_id": new_id()}
    row = DecisionRow.from_record(body, "ac\u0000me", canonical_bytes(body))
    key = IdempotencyKey("acme", "r\u0000", "sha256:" + "1" * 64)
    fine = DecisionRow.from_record({**body, "decision_id": new_id()}, "acme",
                                   canonical_bytes({**body, "decision_id": new_id()}))
    outcomes = store.append_decisions([DecisionWrite(row, None, _snapshot()),
                                       DecisionWrite(fine, key, _snapshot())])
    assert [type(o) for o in outcomes] == [RequestInvalid, RequestInvalid]
    assert [o.field for o in outcomes if isinstance(o, RequestInvalid)] == ["tenant_id",
                                                                            "request_id"]
    assert store.get_decision(row.decision_id) is None
    assert store.get_decision("a\u0000b") is None
    assert store.find_idempotent("ac\u0000me", "r") is None
    assert store.list_events("a\u0000b") == []


def count_decisions(raw_sql: RawSql, url: str, request_id: str) -> int:
    rows = raw_sql(url, "SELECT count(*) FROM decisions WHERE request_id = %s", (request_id,))
    return int(rows[0][0])


def test_concurrent_same_request_id_makes_exactly_one_decision(
    store_url: str, raw_sql: RawSql
) -> None:
    """16 threads over two Lumyn instances (two pools, like two replicas) decide the same
    request with the same request_id at once: one decision row, every caller gets it."""
    instances = [Lumyn(LumynConfig(storage_url=store_url)) for _ in range(2)]
    for instance in instances:  # warm: the cold-start race is its own test below
        instance.decide(refund(ticket_id="ZD-warm"))
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results.append(instances[i % 2].decide(with_request_id(refund(), "race")))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for instance in instances:
            instance.close()
    assert errors == []
    assert len(results) == 16
    assert len({r["decision_id"] for r in results}) == 1
    assert len({canonical_bytes(r) for r in results}) == 1
    assert count_decisions(raw_sql, store_url, "race") == 1


def test_concurrent_first_use_of_an_empty_store(store_url: str,
                                                request: pytest.FixtureRequest) -> None:
    """Two instances (think: two replicas starting) make their very first decisions at the
    same moment on an empty store: none may fail for storage reasons."""
    for _attempt in range(5):  # the race is narrow; a few cold starts make it likely
        fresh = store_url if _attempt == 0 else _fresh_url(store_url, request, _attempt)
        instances = [Lumyn(LumynConfig(storage_url=fresh)) for _ in range(2)]
        results: list[dict[str, Any]] = []
        barrier = threading.Barrier(8)

        def worker(i: int, instances: list[Lumyn] = instances,
                    results: list[dict[str, Any]] = results, barrier: Any = barrier) -> None:
            barrier.wait()
            results.append(instances[i % 2].decide(refund(ticket_id=f"ZD-{i}")))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for instance in instances:
            instance.close()
        assert [r["verdict"] for r in results] == ["TRUST"] * 8, [
            r["explanation"].get("details") for r in results if r["verdict"] != "TRUST"]


def _fresh_url(store_url: str, request: pytest.FixtureRequest, n: int) -> str:
    if store_url.startswith("sqlite:///"):
        return store_url.replace("/ws/lumyn.db", f"/ws{n}/lumyn.db")
    server = request.getfixturevalue("pg_server")
    name = server.create_database()
    request.addfinalizer(lambda: server.drop_database(name))
    return str(server.uri(name))


def test_concurrent_conflicting_requests_one_wins_the_rest_conflict(store_url: str,
                                                                    raw_sql: RawSql) -> None:
    lumyn = Lumyn(LumynConfig(storage_url=store_url))
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            lumyn.decide(with_request_id(refund(ticket_id=f"ZD-{i}"), "contested"))
            outcomes.append("decided")
        except IdempotencyConflict:
            outcomes.append("conflict")

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        lumyn.close()
    assert sorted(outcomes) == ["conflict"] * 7 + ["decided"]
    assert count_decisions(raw_sql, store_url, "contested") == 1


# -- batches (Lumyn.decide_many → store.append_decisions, as the service uses them) -------------


def test_decide_many_is_per_slot_and_durable(lumyn: Lumyn, raw_sql: RawSql,
                                             store_url: str) -> None:
    stored_before = lumyn.decide(with_request_id(refund(ticket_id="ZD-0"), "b-0"))
    bad = refund()
    bad["action"]["type"] = "Bad"
    results = lumyn.decide_many([
        with_request_id(refund(ticket_id="ZD-1"), "b-1"),
        with_request_id(refund(ticket_id="ZD-1"), "b-1"),  # a retry inside the batch
        with_request_id(refund(ticket_id="ZD-x"), "b-1"),  # same key, other request
        with_request_id(refund(ticket_id="ZD-0"), "b-0"),  # a retry of a stored decision
        with_request_id(refund(ticket_id="ZD-y"), "b-0"),  # conflicts with the stored one
        bad,
        refund(ticket_id="ZD-2"),
        refund(ticket_id="ZD-3", payment_instrument_risk="high"),
    ])
    assert isinstance(results[0], dict) and results[0] == results[1]
    assert isinstance(results[2], IdempotencyConflict)
    assert results[2].existing_decision_id == results[0]["decision_id"]
    assert results[3] == stored_before
    assert isinstance(results[4], IdempotencyConflict)
    assert isinstance(results[5], RequestInvalid)
    assert isinstance(results[6], dict) and results[6]["verdict"] == "TRUST"
    assert isinstance(results[7], dict) and results[7]["verdict"] == "ABSTAIN"
    for record in (results[0], results[6], results[7]):
        assert isinstance(record, dict)
        assert lumyn.get_decision(record["decision_id"], with_events=False) == record
    assert count_decisions(raw_sql, store_url, "b-1") == 1
    assert raw_sql(store_url, "SELECT count(*) FROM decisions") == [(4,)]


def test_a_batch_over_one_insert_statement_settles_a_late_retry(
    lumyn: Lumyn, raw_sql: RawSql, store_url: str
) -> None:
    """A batch is written a statement of up to 100 rows at a time; a retry and a conflict in
    a later statement leave the earlier rows written and get their own answers."""
    stored = lumyn.decide(with_request_id(refund(ticket_id="ZD-old"), "late-old"))
    batch = [with_request_id(refund(ticket_id=f"ZD-{i}"), f"late-{i}") for i in range(150)]
    batch[120] = with_request_id(refund(ticket_id="ZD-old"), "late-old")  # a retry
    batch[130] = with_request_id(refund(ticket_id="ZD-new"), "late-old")  # a conflict
    results = lumyn.decide_many(batch)
    assert results[120] == stored
    assert isinstance(results[130], IdempotencyConflict)
    fresh = [r for i, r in enumerate(results) if i not in (120, 130)]
    assert all(isinstance(r, dict) for r in fresh)
    ids = {r["decision_id"] for r in fresh if isinstance(r, dict)}
    assert len(ids) == 148 and stored["decision_id"] not in ids
    assert raw_sql(store_url, "SELECT count(*) FROM decisions") == [(149,)]
    for record in (fresh[0], fresh[-1]):
        assert isinstance(record, dict)
        assert lumyn.get_decision(record["decision_id"], with_events=False) == record


def test_concurrent_batches_from_two_instances_make_one_decision_per_key(
    store_url: str, raw_sql: RawSql
) -> None:
    instances = [Lumyn(LumynConfig(storage_url=store_url)) for _ in range(2)]
    for instance in instances:
        instance.decide(refund(ticket_id="ZD-warm"))
    batch = [with_request_id(refund(ticket_id=f"ZD-{i}"), f"k-{i}") for i in range(20)]
    outcomes: list[list[Any]] = []
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        barrier.wait()
        outcomes.append(instances[n % 2].decide_many(batch[n % 3:] + batch[: n % 3]))

    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for instance in instances:
            instance.close()
    by_key: dict[str, set[str]] = {}
    for results in outcomes:
        for record in results:
            assert isinstance(record, dict), record
            by_key.setdefault(record["request"]["request_id"], set()).add(record["decision_id"])
    assert len(by_key) == 20 and all(len(ids) == 1 for ids in by_key.values())
    assert raw_sql(store_url, "SELECT count(*) FROM decisions WHERE request_id LIKE 'k-%%'") \
        == [(20,)]


# -- append-only -----------------------------------------------------------------------------------------


def _driver_error(url: str) -> tuple[type[BaseException], ...]:
    return (sqlite3.DatabaseError,) if url.startswith("sqlite") else (psycopg.Error,)


@pytest.mark.parametrize(
    ("table", "update"),
    [("decisions", "verdict = 'TRUST'"), ("decision_events", "type = 'note'"),
     ("memory_items", "label = 'success'")],
)
def test_append_only_update_and_delete_fail_at_the_database(
    store_url: str, lumyn: Lumyn, raw_sql: RawSql, table: str, update: str
) -> None:
    record = lumyn.decide(refund(payment_instrument_risk="high"))
    lumyn.label(record["decision_id"], "failure", "blocked anyway")
    before = raw_sql(store_url, f"SELECT count(*) FROM {table}")
    assert before[0][0] >= 1
    with pytest.raises(_driver_error(store_url), match="append-only"):
        raw_sql(store_url, f"UPDATE {table} SET {update}")
    with pytest.raises(_driver_error(store_url), match="append-only"):
        raw_sql(store_url, f"DELETE FROM {table}")
    if not store_url.startswith("sqlite"):
        with pytest.raises(psycopg.Error, match="append-only"):
            raw_sql(store_url, f"TRUNCATE {table}")
    assert raw_sql(store_url, f"SELECT count(*) FROM {table}") == before
    assert lumyn.get_decision(record["decision_id"])["verdict"] == "ABSTAIN"


def test_the_store_has_no_update_or_delete_path(store: Store) -> None:
    names = {n for n in dir(store) if not n.startswith("_")}
    assert not {n for n in names if n.startswith(("update", "delete", "remove", "drop"))}


# -- storage failure ------------------------------------------------------------------------------------


def assert_storage_unavailable(record: dict[str, Any]) -> None:
    validate_record(record)
    assert record["verdict"] == "ABSTAIN"
    assert record["reason_codes"] == ["STORAGE_UNAVAILABLE"]


def test_storage_failure_abstains_then_recovers(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """decide() never raises for storage trouble: it returns ABSTAIN STORAGE_UNAVAILABLE, and
    the store heals by itself once the fault clears."""
    if backend == "sqlite":
        _sqlite_failure_and_recovery(tmp_path)
    else:
        _postgres_failure_and_recovery(request.getfixturevalue("private_pg_server"))


def _sqlite_failure_and_recovery(tmp_path: Path) -> None:
    db = tmp_path / "ws" / "lumyn.db"
    with Lumyn(LumynConfig(store_path=str(db), busy_timeout_ms=50)) as lumyn:
        ok = lumyn.decide(refund())
        assert ok["verdict"] == "TRUST"
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            assert_storage_unavailable(lumyn.decide(refund(ticket_id="ZD-locked")))
            for record in lumyn.decide_many([refund(ticket_id="ZD-l1"), refund(ticket_id="ZD-l2")]):
                assert isinstance(record, dict)
                assert_storage_unavailable(record)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert lumyn.decide(refund(ticket_id="ZD-after"))["verdict"] == "TRUST"
        assert lumyn.get_decision(ok["decision_id"]) == ok

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")  # the workspace cannot be created (works as root too)
    with Lumyn(LumynConfig(store_path=str(not_a_dir / "ws" / "lumyn.db"))) as blocked:
        assert_storage_unavailable(blocked.decide(refund()))
        with pytest.raises(StorageUnavailable):
            blocked.get_decision(ok["decision_id"])


def _postgres_failure_and_recovery(server: Any) -> None:
    """Stop a (private) PostgreSQL server while decisions are being made, then restart it on
    the same data directory."""
    url = server.uri(server.create_database()) + "&lumyn_pool_timeout=1"
    lumyn = Lumyn(LumynConfig(storage_url=url))
    try:
        ok = lumyn.decide(refund())
        assert ok["verdict"] == "TRUST"
        lumyn.label(ok["decision_id"], "failure", "fraud ring")

        results: list[dict[str, Any]] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def keep_deciding() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    results.append(lumyn.decide(refund(ticket_id=f"ZD-run-{i}")))
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

        runner = threading.Thread(target=keep_deciding)
        runner.start()
        time.sleep(0.3)
        server.stop()  # mid-run
        time.sleep(0.5)
        down = lumyn.decide(refund(ticket_id="ZD-down"))
        assert_storage_unavailable(down)
        for record in lumyn.decide_many([refund(ticket_id="ZD-b1"), refund(ticket_id="ZD-b2")]):
            assert isinstance(record, dict)
            assert_storage_unavailable(record)
        with pytest.raises(StorageUnavailable):
            lumyn.get_decision(ok["decision_id"])
        with pytest.raises(StorageUnavailable):
            lumyn.label(ok["decision_id"], "success", "")
        with pytest.raises(StorageUnavailable):
            lumyn.store.check()

        server.start()
        deadline = time.monotonic() + 20
        while True:
            back = lumyn.decide(refund(ticket_id="ZD-back"))
            if back["reason_codes"] != ["STORAGE_UNAVAILABLE"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        stop.set()
        runner.join()

        assert errors == []
        assert back["verdict"] == "ESCALATE"  # recovered, memory intact: the label still counts
        assert "FAILURE_MEMORY_SIMILAR_ESCALATE" in back["reason_codes"]
        assert lumyn.get_decision(ok["decision_id"], with_events=False) == ok
        unavailable = [r for r in results if r["reason_codes"] == ["STORAGE_UNAVAILABLE"]]
        stored = [r for r in results if r["reason_codes"] != ["STORAGE_UNAVAILABLE"]]
        assert unavailable, "the server stopped while decisions were being made"
        assert stored, "decisions were made before the stop"
        for record in stored:  # every decision returned as made is durable
            assert lumyn.get_decision(record["decision_id"], with_events=False) == record
        for record in unavailable:  # and an ABSTAIN for storage was never stored
            with pytest.raises(DecisionNotFound):
                lumyn.get_decision(record["decision_id"])
    finally:
        lumyn.close()


def test_a_postgres_store_constructs_without_a_server_and_fails_closed(tmp_path: Path) -> None:
    url = f"postgresql://nobody@/nodb?host={tmp_path}&lumyn_pool_timeout=0.5"
    store = open_store(url)  # never fails at construction; the pool opens lazily
    try:
        with pytest.raises(StorageUnavailable):
            store.get_decision("x")
        with Lumyn(LumynConfig(storage_url=url), store=store) as lumyn:
            assert_storage_unavailable(lumyn.decide(refund()))
    finally:
        store.close()
    with pytest.raises(StorageUnavailable):
        store.schema_version()  # closed
