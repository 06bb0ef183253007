"""Opening a database written before the evidence chain builds the chain once, in order, with a
clear message, and changes no record."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from _builders import support_refund

from lumyn import Lumyn, LumynConfig
from lumyn.integrity.verify import verify
from lumyn.packs import export_pack, replay_pack
from lumyn.store import open_store
from lumyn.store.schema import CHAIN_MIGRATION


def rows(url: str, raw_sql: Any) -> list[Any]:
    record = "record" if url.startswith("sqlite") else "record_json"
    data = "data" if url.startswith("sqlite") else "data_json"
    return [
        [tuple(bytes(c) if isinstance(c, (bytes, memoryview)) else c for c in r)
         for r in raw_sql(url, f"SELECT decision_id, {record} FROM decisions ORDER BY 1")],
        [tuple(bytes(c) if isinstance(c, (bytes, memoryview)) else c for c in r)
         for r in raw_sql(url, f"SELECT event_id, decision_id, {data} FROM decision_events "
                          "ORDER BY 1")],
    ]


def make_old(url: str, raw_sql: Any) -> list[str]:
    """A store as the previous release left it: every migration before the chain's, no chain,
    and event data in orjson's key order (what that release wrote)."""
    with Lumyn(LumynConfig(storage_url=url)) as lumyn:
        ids = [lumyn.decide(support_refund(order_id=f"o-{i}"))["decision_id"] for i in range(3)]
        lumyn.label(ids[0], "failure", "chargeback")
        other = support_refund()
        other["subject"]["tenant_id"] = "globex"
        ids.append(lumyn.decide(other)["decision_id"])
    for table in ("chain_heads", "chain_entries"):
        raw_sql(url, f"DROP TABLE IF EXISTS {table}")
    raw_sql(url, "DELETE FROM schema_version WHERE version >= %s", (CHAIN_MIGRATION,))
    unsorted = orjson.dumps({"text": "by hand", "by": "ops"})  # not canonical: keys unsorted
    if url.startswith("sqlite"):
        raw_sql(url, "INSERT INTO decision_events (event_id, decision_id, at, type, data) "
                "VALUES ('01M8VT0000000000000000OLD1', %s, '2030-01-01T00:00:00.000Z', 'note', %s)",
                (ids[1], unsorted))
    else:
        raw_sql(url, "INSERT INTO decision_events (event_id, decision_id, at, type, data, data_json) "
                "VALUES ('01M8VT0000000000000000OLD1', %s, '2030-01-01T00:00:00.000Z', 'note', "
                "%s::jsonb, %s)", (ids[1], unsorted.decode(), unsorted))
    return ids


def test_an_older_store_gets_its_chain_once_and_no_record_changes(
    store_url: str, raw_sql: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ids = make_old(store_url, raw_sql)
    before = rows(store_url, raw_sql)
    store = open_store(store_url)
    try:
        with caplog.at_level(logging.WARNING, logger="lumyn.integrity"):
            done = store.ensure_schema()
        assert done[0] == f"applied schema migration {CHAIN_MIGRATION}"
        message = ("built the evidence chain over 4 existing decision(s) and 2 event(s) of "
                   "2 tenant(s); no record was changed")
        assert done[1] == message
        assert message in caplog.text
        assert rows(store_url, raw_sql) == before
        report = verify(store)  # type: ignore[arg-type]
        assert report.ok, report.as_dict()
        assert {t.tenant_id: t.count for t in report.tenants} == {"acme": 5, "globex": 1}
        # In time order: the three decisions, the label, then the hand-written note.
        entries = store.chain_entries(ids[1])  # type: ignore[attr-defined]
        assert [(e.seq, e.kind) for e in entries] == [(2, "decision"), (5, "event")]
        # A pack of a decision with an old-format event still carries entries that recompute.
        report_pack = replay_pack(export_pack(store, ids[1]))
        assert report_pack.ok, report_pack.failures()
        assert next(c for c in report_pack.checks if c.name == "chain").ok
        assert store.ensure_schema() == []  # once
    finally:
        store.close()
    # New rows chain on after the built entries.
    with Lumyn(LumynConfig(storage_url=store_url)) as lumyn:
        lumyn.decide(support_refund(order_id="after"))
        report = verify(lumyn.store, "acme")  # type: ignore[arg-type]
        assert report.ok and report.tenants[0].count == 6
