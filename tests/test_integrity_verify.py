"""`lumyn verify` against a store changed behind Lumyn's back with plain SQL, on both backends.

Each test tampers the way someone with write access to the database would (dropping the
append-only triggers first) and asserts that verify names the tampered decision and the kind
of change. Hashes the attacker forges are computed here with hashlib from the documented
formula, not with Lumyn's own code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from _builders import support_refund

from lumyn import Lumyn, LumynConfig
from lumyn.integrity.verify import Problem, VerifyReport, verify

GENESIS = bytes(32)


def forged_hash(prev: bytes, record_json: bytes) -> bytes:
    return hashlib.sha256(prev + b'{"kind":"decision","record":' + record_json + b"}").digest()


@dataclass
class Scene:
    url: str
    lumyn: Lumyn
    decisions: list[str]  # tenant acme, in decide order
    other: str  # tenant globex
    labeled: str  # acme decision with a label event
    noted: str  # acme decision with a note event
    sql: Any

    @property
    def sqlite(self) -> bool:
        return self.url.startswith("sqlite:///")

    def run(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.sql(self.url, statement, params)
        return rows

    def drop_guards(self) -> None:
        if self.sqlite:
            for name in ("decisions_no_update", "decisions_no_delete", "events_no_update",
                         "events_no_delete", "chain_no_update", "chain_no_delete"):
                self.run(f"DROP TRIGGER IF EXISTS {name}")
        else:
            for table in ("decisions", "decision_events", "chain_entries"):
                self.run(f"ALTER TABLE {table} DISABLE TRIGGER USER")

    @property
    def record_col(self) -> str:
        return "record" if self.sqlite else "record_json"

    def record_json(self, decision_id: str) -> bytes:
        return bytes(self.run(f"SELECT {self.record_col} FROM decisions WHERE decision_id = %s",
                              decision_id)[0][0])

    def replace_in_record(self, decision_id: str, old: str, new: str) -> bytes:
        if self.sqlite:
            self.run("UPDATE decisions SET record = CAST(replace(CAST(record AS TEXT), %s, %s) "
                     "AS BLOB) WHERE decision_id = %s", old, new, decision_id)
        else:
            self.run("UPDATE decisions SET record_json = convert_to(replace(convert_from("
                     "record_json, 'UTF8'), %s, %s), 'UTF8') WHERE decision_id = %s",
                     old, new, decision_id)
        return self.record_json(decision_id)

    def entry(self, decision_id: str) -> tuple[int, bytes, bytes]:
        seq, prev, entry_hash = self.run(
            "SELECT seq, prev_hash, entry_hash FROM chain_entries "
            "WHERE decision_id = %s AND kind = 'decision'", decision_id)[0]
        return int(seq), bytes(prev), bytes(entry_hash)

    def report(self) -> VerifyReport:
        return verify(self.lumyn.store, "acme")  # type: ignore[arg-type]

    def problem(self) -> Problem:
        report = self.report()
        assert not report.ok
        problem = report.tenants[0].problem
        assert problem is not None
        # Other tenants' chains are untouched and still verify.
        others = verify(self.lumyn.store, "globex")  # type: ignore[arg-type]
        assert others.ok, others.as_dict()
        return problem


@pytest.fixture
def scene(store_url: str, raw_sql: Any) -> Iterator[Scene]:
    lumyn = Lumyn(LumynConfig(storage_url=store_url))
    ids = [lumyn.decide(support_refund(order_id=f"o-{i}"))["decision_id"] for i in range(4)]
    lumyn.label(ids[1], "failure", "refund went to a stolen card")
    lumyn.append_event(ids[2], "note", {"by": "ops", "text": "checked by hand"})
    ids += [lumyn.decide(support_refund(order_id=f"o-{i}"))["decision_id"] for i in range(4, 6)]
    other_request = support_refund()
    other_request["subject"]["tenant_id"] = "globex"
    other = lumyn.decide(other_request)["decision_id"]
    yield Scene(store_url, lumyn, ids, other, ids[1], ids[2], raw_sql)
    lumyn.close()


def test_an_untouched_store_verifies_tenant_by_tenant(scene: Scene) -> None:
    report = verify(scene.lumyn.store)  # type: ignore[arg-type]
    assert report.ok, report.as_dict()
    counts = {t.tenant_id: t.count for t in report.tenants}
    assert counts == {"acme": 8, "globex": 1}  # 6 decisions + 2 events; 1 decision
    entries = scene.lumyn.store.chain_entries(scene.labeled)  # type: ignore[attr-defined]
    assert [(e.seq, e.kind) for e in entries] == [(2, "decision"), (5, "event")]


def test_a_verdict_edited_inside_the_stored_json_is_named(scene: Scene) -> None:
    target = scene.decisions[3]
    verdict = scene.lumyn.get_decision(target)["verdict"]
    scene.drop_guards()
    scene.replace_in_record(target, f'"verdict":"{verdict}"', '"verdict":"ABSTAIN"')
    problem = scene.problem()
    assert (problem.kind, problem.decision_id, problem.seq) == ("edited", target, 4)


def test_an_edit_with_its_own_hash_recomputed_is_caught_at_the_next_link(scene: Scene) -> None:
    target = scene.decisions[3]
    verdict = scene.lumyn.get_decision(target)["verdict"]
    seq, prev, _ = scene.entry(target)
    scene.drop_guards()
    edited = scene.replace_in_record(target, f'"verdict":"{verdict}"', '"verdict":"ABSTAIN"')
    scene.run("UPDATE chain_entries SET entry_hash = %s WHERE tenant_id = 'acme' AND seq = %s",
              forged_hash(prev, edited), seq)
    problem = scene.problem()
    assert (problem.kind, problem.decision_id, problem.seq) == ("rewritten", target, seq)


def test_an_edited_event_names_its_decision(scene: Scene) -> None:
    scene.drop_guards()
    column = "data" if scene.sqlite else "data_json"
    scene.run(f"UPDATE decision_events SET {column} = %s WHERE decision_id = %s",
              b'{"by":"ops","text":"never happened"}', scene.noted)
    problem = scene.problem()
    assert (problem.kind, problem.decision_id) == ("edited", scene.noted)
    assert "event" in problem.detail


def test_an_event_moved_to_another_decision(scene: Scene) -> None:
    scene.drop_guards()
    scene.run("UPDATE decision_events SET decision_id = %s WHERE decision_id = %s",
              scene.decisions[0], scene.noted)
    problem = scene.problem()
    assert (problem.kind, problem.decision_id) == ("moved", scene.noted)
    assert scene.decisions[0] in problem.detail


def test_a_deleted_decision_is_named(scene: Scene) -> None:
    target = scene.decisions[2]
    scene.drop_guards()
    scene.run("DELETE FROM decisions WHERE decision_id = %s", target)
    problem = scene.problem()
    assert (problem.kind, problem.decision_id) == ("deleted", target)


def test_a_decision_deleted_with_its_chain_entry_leaves_a_gap(scene: Scene) -> None:
    target = scene.decisions[4]  # entry 7, between decisions[3]'s events and decisions[5]
    scene.drop_guards()
    scene.run("DELETE FROM decisions WHERE decision_id = %s", target)
    scene.run("DELETE FROM chain_entries WHERE decision_id = %s", target)
    problem = scene.problem()
    assert (problem.kind, problem.seq) == ("deleted", 7)
    assert problem.decision_id == scene.decisions[5]  # the first row after the gap


def test_two_swapped_rows_are_reported_as_reordered(scene: Scene) -> None:
    a, b = scene.decisions[0], scene.decisions[3]
    seq_a, seq_b = scene.entry(a)[0], scene.entry(b)[0]
    scene.drop_guards()
    scene.run("UPDATE chain_entries SET seq = -1 WHERE tenant_id = 'acme' AND seq = %s", seq_a)
    scene.run("UPDATE chain_entries SET seq = %s WHERE tenant_id = 'acme' AND seq = %s",
              seq_a, seq_b)
    scene.run("UPDATE chain_entries SET seq = %s WHERE tenant_id = 'acme' AND seq = -1", seq_b)
    problem = scene.problem()
    assert problem.kind == "reordered"
    assert (problem.decision_id, problem.seq) == (b, seq_a)  # b now sits in a's place


def test_a_forged_row_with_a_correct_own_hash_is_named(scene: Scene) -> None:
    # Copy a real record under a new id, chain it correctly after entry 3, shift the rest.
    source = scene.decisions[2]
    forged_id = "01ZZZZZZZZZZZZZZZZZZZZZZZZ"
    forged = scene.record_json(source).replace(source.encode(), forged_id.encode())
    _, _, hash_3 = scene.entry(source)
    scene.drop_guards()
    if scene.sqlite:
        scene.run("INSERT INTO decisions SELECT %s, created_at, tenant_id, action_type, verdict, "
                  "policy_hash, context_digest, NULL, NULL, %s FROM decisions "
                  "WHERE decision_id = %s", forged_id, forged, source)
    else:
        scene.run("INSERT INTO decisions (decision_id, created_at, tenant_id, action_type, "
                  "verdict, policy_hash, context_digest, record, record_json) "
                  "SELECT %s, created_at, tenant_id, action_type, verdict, policy_hash, "
                  "context_digest, record, %s FROM decisions WHERE decision_id = %s",
                  forged_id, forged, source)
    scene.run("UPDATE chain_entries SET seq = seq + 1000 WHERE tenant_id = 'acme' AND seq > 3")
    scene.run("UPDATE chain_entries SET seq = seq - 999 WHERE tenant_id = 'acme' AND seq > 1000")
    scene.run("INSERT INTO chain_entries VALUES ('acme', 4, 'decision', %s, NULL, %s, %s)",
              forged_id, hash_3, forged_hash(hash_3, forged))
    problem = scene.problem()
    assert (problem.kind, problem.decision_id, problem.seq) == ("inserted", forged_id, 4)


def test_a_forged_row_outside_the_chain_is_named(scene: Scene) -> None:
    source = scene.decisions[0]
    forged_id = "01ZZZZZZZZZZZZZZZZZZZZZZZY"
    forged = scene.record_json(source).replace(source.encode(), forged_id.encode())
    if scene.sqlite:
        scene.run("INSERT INTO decisions SELECT %s, created_at, tenant_id, action_type, verdict, "
                  "policy_hash, context_digest, NULL, NULL, %s FROM decisions "
                  "WHERE decision_id = %s", forged_id, forged, source)
    else:
        scene.run("INSERT INTO decisions (decision_id, created_at, tenant_id, action_type, "
                  "verdict, policy_hash, context_digest, record, record_json) "
                  "SELECT %s, created_at, tenant_id, action_type, verdict, policy_hash, "
                  "context_digest, record, %s FROM decisions WHERE decision_id = %s",
                  forged_id, forged, source)
    problem = scene.problem()
    assert (problem.kind, problem.decision_id) == ("inserted", forged_id)


def test_truncating_the_tail_after_a_published_head_is_detected(scene: Scene) -> None:
    head = scene.report().tenants[0].head()
    last = scene.decisions[-1]
    assert head["decision_id"] == last and head["count"] == 8
    scene.drop_guards()
    scene.run("DELETE FROM decisions WHERE decision_id = %s", last)
    scene.run("DELETE FROM chain_entries WHERE decision_id = %s", last)
    if not scene.sqlite:  # a careful attacker also winds the head row back
        scene.run("UPDATE chain_heads SET seq = seq - 1, head_hash = prev_hash "
                  "WHERE tenant_id = 'acme'")
    assert scene.report().ok  # a shorter chain is still a chain ...
    report = verify(scene.lumyn.store, "acme", [head])  # type: ignore[arg-type]
    problem = report.tenants[0].problem  # ... but not the one that was published
    assert problem is not None
    assert (problem.kind, problem.decision_id) == ("truncated", last)


def test_a_chain_rebuilt_from_scratch_diverges_from_the_published_head(scene: Scene) -> None:
    head = scene.report().tenants[0].head()
    target = scene.decisions[0]
    verdict = scene.lumyn.get_decision(target)["verdict"]
    scene.drop_guards()
    scene.replace_in_record(target, f'"verdict":"{verdict}"', '"verdict":"ABSTAIN"')
    # Recompute every entry of the tenant from its (now edited) rows, as an attacker could.
    rows = scene.run("SELECT seq, kind, decision_id FROM chain_entries "
                     "WHERE tenant_id = 'acme' ORDER BY seq")
    prev = GENESIS
    for seq, kind, decision_id in rows:
        if kind == "decision":
            entry_hash = forged_hash(prev, scene.record_json(decision_id))
        else:
            entry_hash = hashlib.sha256(prev + b"x").digest()  # events: any hash will do here
            continue
        scene.run("UPDATE chain_entries SET prev_hash = %s, entry_hash = %s "
                  "WHERE tenant_id = 'acme' AND seq = %s", prev, entry_hash, seq)
        prev = entry_hash
    report = verify(scene.lumyn.store, "acme", [head])  # type: ignore[arg-type]
    assert not report.ok
