"""PostgreSQL-specific behaviour of PostgresStore (the shared contract is in
test_store_contract.py): schema migration, seq = commit order for memory items, the JSONB
mirror and U+0000, connection recovery, URL handling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import psycopg
import pytest

from lumyn import Lumyn, LumynConfig
from lumyn.contracts import canonical_bytes
from lumyn.contracts.ids import new_id, utc_now
from lumyn.errors import ConfigError, InvalidEvent, RequestInvalid, StorageUnavailable
from lumyn.memory.item import MemoryItem
from lumyn.store import open_store
from lumyn.store.base import SCHEMA_VERSION
from lumyn.store.postgres import MEMORY_LOCK, PostgresStore

RawSql = Callable[..., list[tuple[Any, ...]]]


def refund(**evidence: Any) -> dict[str, Any]:
    return {
        "schema_version": "decision_request.v0",
        "subject": {"type": "agent", "id": "support-bot", "tenant_id": "acme"},
        "action": {"type": "support.refund", "intent": "Refund duplicate charge",
                   "amount": {"value": 12.0, "currency": "USD"}, "tags": ["duplicate_charge"]},
        "evidence": {"ticket_id": "ZD-1", "order_id": "1", "customer_id": "C-9",
                     "customer_age_days": 180, "previous_refund_count_90d": 0,
                     "chargeback_risk": 0.05, "payment_instrument_risk": "low", **evidence},
        "context": {"mode": "digest_only", "digest": "sha256:" + "a" * 64},
    }


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(pg_url)
    yield opened
    opened.close()


@pytest.fixture
def lumyn(pg_url: str) -> Iterator[Lumyn]:
    with Lumyn(LumynConfig(storage_url=pg_url)) as instance:
        yield instance


# -- schema and migration ------------------------------------------------------------------------


def test_ensure_schema_migrates_once_and_reports(pg_url: str, raw_sql: RawSql) -> None:
    store = PostgresStore(pg_url)
    try:
        every = range(1, SCHEMA_VERSION + 1)
        assert store.ensure_schema() == [f"applied schema migration {v}" for v in every]
        assert store.ensure_schema() == []
        assert store.schema_version() == SCHEMA_VERSION
        rows = raw_sql(pg_url, "SELECT version FROM schema_version ORDER BY version")
        assert rows == [(v,) for v in every]
        assert raw_sql(pg_url, "SELECT data_type FROM information_schema.columns "
                               "WHERE table_name = 'decisions' AND column_name = 'record'") \
            == [("jsonb",)]
    finally:
        store.close()


def test_replicas_starting_together_migrate_exactly_once(pg_url: str, raw_sql: RawSql) -> None:
    stores = [PostgresStore(pg_url) for _ in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def first_use(s: PostgresStore) -> None:
        barrier.wait()
        try:
            assert s.schema_version() == SCHEMA_VERSION
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == []
    # one row per migration: each was applied once
    assert raw_sql(pg_url, "SELECT count(*) FROM schema_version") == [(SCHEMA_VERSION,)]


def test_check_reports_a_dropped_trigger_and_ensure_schema_restores_it(
    store: PostgresStore, pg_url: str, raw_sql: RawSql
) -> None:
    assert store.check() == []
    raw_sql(pg_url, "DROP TRIGGER decisions_no_delete ON decisions")
    problems = store.check()
    assert problems == ["missing append-only triggers: decisions_no_delete"]
    done = store.ensure_schema()
    assert done == ["recreated missing objects: decisions_no_delete"]
    assert store.check() == []


def test_a_newer_schema_is_refused(pg_url: str, raw_sql: RawSql) -> None:
    PostgresStore(pg_url).ensure_schema()
    raw_sql(pg_url, "INSERT INTO schema_version VALUES (%s, 'later')", (SCHEMA_VERSION + 1,))
    store = PostgresStore(pg_url)
    try:
        with pytest.raises(StorageUnavailable, match="newer than this Lumyn"):
            store.get_decision("x")
    finally:
        store.close()


# -- memory items: sequence order equals commit order ----------------------------------------------


def _memory_item(decision_id: str) -> MemoryItem:
    return MemoryItem(new_id(), "acme", "support.refund", "failure", "s",
                      ("action:support.refund",), decision_id, utc_now())


def test_a_later_label_cannot_commit_before_an_earlier_one(
    store: PostgresStore, lumyn: Lumyn, pg_url: str
) -> None:
    """The hazard: seq values are drawn at INSERT, visibility comes at COMMIT. Hold an
    insert open (with the same advisory lock the store takes) and show that a concurrent
    label waits for it, so a reader can never see seq n+1 without seq n."""
    decision_id = lumyn.decide(refund())["decision_id"]
    assert store.memory_items_since("acme", "support.refund", 0) == []
    slow = psycopg.connect(pg_url)  # a labeler paused between its INSERT and its COMMIT
    slow.execute("SELECT pg_advisory_xact_lock(%s)", (MEMORY_LOCK,))
    early = _memory_item(decision_id)
    slow.execute(
        "INSERT INTO memory_items (memory_id, tenant_id, action_type, label, summary, "
        "source_decision_id, features, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (early.memory_id, early.tenant_id, early.action_type, early.label, early.summary,
         early.source_decision_id, orjson.dumps(list(early.features)), early.created_at),
    )
    late = _memory_item(decision_id)
    done = threading.Event()

    def label_now() -> None:
        event = {"event_id": new_id(), "at": utc_now(), "type": "label",
                 "data": {"label": "failure", "summary": "s", "memory_id": late.memory_id}}
        store.append_event(decision_id, event, late)
        done.set()

    worker = threading.Thread(target=label_now)
    worker.start()
    time.sleep(0.5)
    assert not done.is_set(), "the second label must wait for the first to commit"
    assert store.memory_items_since("acme", "support.refund", 0) == []
    slow.commit()
    slow.close()
    worker.join(10)
    assert done.is_set()
    rows = store.memory_items_since("acme", "support.refund", 0)
    assert [item.memory_id for _, item in rows] == [early.memory_id, late.memory_id]
    assert rows[0][0] < rows[1][0]


def test_decide_sees_a_label_committed_elsewhere_without_a_catch_up_query(
    lumyn: Lumyn, pg_url: str, raw_sql: RawSql
) -> None:
    """decide() on PostgreSQL evaluates against the memory it has indexed and lets the insert
    check that nothing newer exists; a label from another replica makes it decide again."""
    first = lumyn.decide(refund())
    assert lumyn.decide(refund(ticket_id="ZD-2"))["verdict"] == "TRUST"
    with Lumyn(LumynConfig(storage_url=pg_url)) as other:  # another replica
        other.label(first["decision_id"], "failure", "chargeback after refund")
    calls: list[str] = []
    store: Any = lumyn.store
    since = store.memory_items_since

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append("catch-up")
        return since(*args, **kwargs)

    store.memory_items_since = counted
    try:
        again = lumyn.decide(refund(ticket_id="ZD-3"))
        assert again["verdict"] == "ESCALATE"
        assert calls == ["catch-up"]  # once, after the insert found newer memory
        calm = lumyn.decide(refund(ticket_id="ZD-4"))
        assert calm["verdict"] == "ESCALATE" and calls == ["catch-up"]  # no query when current
    finally:
        del store.memory_items_since
    ids = {r[0] for r in raw_sql(pg_url, "SELECT decision_id FROM decisions")}
    assert again["decision_id"] in ids and calm["decision_id"] in ids
    assert len(ids) == 4  # the evaluation made against stale memory was never written


# -- records: canonical bytes and the JSONB mirror --------------------------------------------------


def test_jsonb_mirror_is_queryable_and_equals_the_record(lumyn: Lumyn, pg_url: str,
                                                         raw_sql: RawSql) -> None:
    record = lumyn.decide(refund())
    rows = raw_sql(pg_url, "SELECT record->>'verdict', record::text, record_json FROM decisions "
                           "WHERE decision_id = %s", (record["decision_id"],))
    verdict, mirror, exact = rows[0]
    assert verdict == "TRUST"
    assert bytes(exact) == canonical_bytes(record)
    assert canonical_bytes(orjson.loads(mirror)) == canonical_bytes(record)


def test_u0000_survives_in_records_and_events_and_is_refused_in_identifiers(
    lumyn: Lumyn, pg_url: str, raw_sql: RawSql
) -> None:
    record = lumyn.decide(refund(note="a\u0000b"))
    assert record["request"]["evidence"]["note"] == "a\u0000b"
    assert lumyn.get_decision(record["decision_id"]) == record
    mirror = raw_sql(pg_url, "SELECT record->'request'->'evidence'->>'note' FROM decisions")
    assert mirror == [("a\ufffdb",)]  # the JSONB mirror cannot hold U+0000
    event = lumyn.append_event(record["decision_id"], "note", {"text": "x\u0000y"})
    assert lumyn.get_decision(record["decision_id"])["decision_event_log"] == [event]

    bad_tenant = refund()
    bad_tenant["subject"]["tenant_id"] = "ac\u0000me"
    with pytest.raises(RequestInvalid) as info:  # refused by the request schema, any backend
        lumyn.decide(bad_tenant)
    assert info.value.field == "subject.tenant_id"
    with pytest.raises(InvalidEvent, match="U\\+0000"):
        lumyn.label(record["decision_id"], "failure", "bad\u0000summary")
    assert lumyn.store.get_decision("a\u0000b") is None


def test_reappending_a_committed_row_returns_it(store: PostgresStore, lumyn: Lumyn) -> None:
    """What a retry after a lost COMMIT acknowledgement does: the row is found, not doubled."""
    record = lumyn.decide(refund())
    from lumyn.store import DecisionRow, DecisionWrite, PolicySnapshot

    raw = canonical_bytes(record)
    row = DecisionRow.from_record(record, "acme", raw)
    policy = PolicySnapshot(lumyn.policy.policy_hash, lumyn.policy.policy_id,
                            lumyn.policy.policy_version, lumyn.policy.text)
    assert store.append_decisions([DecisionWrite(row, None, policy)]) == [raw]
    event = {"event_id": new_id(), "at": utc_now(), "type": "note", "data": {}}
    store.append_event(record["decision_id"], event, None)
    store.append_event(record["decision_id"], event, None)  # a retried event: one row
    assert store.list_events(record["decision_id"]) == [event]


# -- connections -----------------------------------------------------------------------------------


def test_killed_connections_are_replaced_transparently(lumyn: Lumyn, pg_url: str,
                                                       raw_sql: RawSql) -> None:
    record = lumyn.decide(refund())
    killed = raw_sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'lumyn' AND datname = current_database()")
    assert killed and all(ok for (ok,) in killed)
    assert lumyn.get_decision(record["decision_id"]) == record  # no StorageUnavailable
    assert lumyn.decide(refund(ticket_id="ZD-2"))["verdict"] == "TRUST"


def test_durability_is_enforced_per_connection(pg_url: str, raw_sql: RawSql) -> None:
    name = pg_url.split("?")[0].rsplit("/", 1)[1]
    raw_sql(pg_url, f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    store = PostgresStore(pg_url)
    try:
        setting = store._run(lambda conn: conn.execute("SHOW synchronous_commit").fetchone())
        assert setting == ("on",)
    finally:
        store.close()


def test_url_pool_options_are_stripped_and_password_masked(pg_url: str) -> None:
    store = PostgresStore(pg_url + "&lumyn_pool_max=3&lumyn_pool_timeout=2.5&lumyn_pool_min=2")
    try:
        assert (store.min_size, store.max_size, store.timeout) == (2, 3, 2.5)
        assert "lumyn_" not in store.url
        assert store.schema_version() == SCHEMA_VERSION  # psycopg accepted the rest
    finally:
        store.close()
    masked = PostgresStore("postgresql://app:s3cret@db.example:5432/lumyn?sslmode=require")
    assert masked.url == "postgresql://app:***@db.example:5432/lumyn?sslmode=require"
    masked.close()
    assert isinstance(open_store("postgres://u@/x?host=/nowhere"), PostgresStore)


def test_bad_pool_options_are_config_errors() -> None:
    for option in ("lumyn_pool_max=many", "lumyn_pool_timeout=soon", "lumyn_pool_sizes=3"):
        with pytest.raises(ConfigError):
            PostgresStore(f"postgresql://u@/x?host=/nowhere&{option}")


def test_a_bad_url_is_a_storage_error_not_a_crash() -> None:
    store = PostgresStore("postgresql://u@/x?host=/nowhere&bogus_option=1")
    with pytest.raises(StorageUnavailable, match="bad storage URL"):
        store.schema_version()
    store.close()
