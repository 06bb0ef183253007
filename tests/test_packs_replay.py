"""Decision packs and true replay (SPEC §7): export, verify, re-evaluate, diff.

Replay must pass for an untouched pack, even after the workspace's policy and memory changed,
and fail with a precise diff for every kind of tampering.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_cli_kit import assert_one_line_error, clean_env, cli, refund

from lumyn import Lumyn, LumynConfig
from lumyn.packs import (
    MANIFEST_FILE,
    MEMORY_FILE,
    PACK_FILES,
    POLICY_FILE,
    README_FILE,
    RECORD_FILE,
    REQUEST_FILE,
    Difference,
    PackError,
    ReplayReport,
    diff_values,
    export_pack,
    manifest_for,
    read_pack,
    replay_pack,
    sha256_hex,
    zip_files,
)
from lumyn.policy import bundled_policy_path

SUPPORT_TEXT = bundled_policy_path().read_text(encoding="utf-8")
STRICTER_TEXT = SUPPORT_TEXT.replace("refund_trust_max_usd: 25", "refund_trust_max_usd: 5")
LAXER_TEXT = SUPPORT_TEXT.replace("failure_similarity_escalate: 0.35", "failure_similarity_escalate: 0.95")


@dataclass
class Workspace:
    root: Path
    lumyn: Lumyn
    trusted: dict[str, Any]  # first refund: TRUST, then labeled a failure
    escalated: dict[str, Any]  # similar refund: ESCALATE because of that failure

    def pack(self, decision_id: str | None = None) -> bytes:
        return export_pack(self.lumyn.store, decision_id or self.escalated["decision_id"])


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    lumyn = Lumyn(LumynConfig(store_path=str(tmp_path / ".lumyn" / "lumyn.db")))
    trusted = lumyn.decide(refund())
    lumyn.label(trusted["decision_id"], "failure", "stolen card, chargeback")
    escalated = lumyn.decide(refund(14.0, ticket_id="ZD-2", order_id="99", customer_id="C-2"))
    assert trusted["verdict"] == "TRUST"
    assert escalated["verdict"] == "ESCALATE"
    assert "FAILURE_MEMORY_SIMILAR_ESCALATE" in escalated["reason_codes"]
    yield Workspace(tmp_path, lumyn, trusted, escalated)
    lumyn.close()


def tamper(pack: bytes, *, update_manifest: bool = True, drop: tuple[str, ...] = (),
           **changes: bytes) -> bytes:
    files, problems = read_pack(pack)
    assert not problems
    for name in drop:
        del files[name]
    for key, data in changes.items():
        files[{"record": RECORD_FILE, "request": REQUEST_FILE, "policy": POLICY_FILE,
               "memory": MEMORY_FILE, "readme": README_FILE}.get(key, key)] = data
    if update_manifest:
        try:
            record = json.loads(files[RECORD_FILE])
        except (KeyError, ValueError):
            record = {}
        files[MANIFEST_FILE] = json.dumps(manifest_for(files, record)).encode()
    return zip_files(files)


def member(pack: bytes, name: str) -> Any:
    files, _ = read_pack(pack)
    data = files[name]
    return data.decode() if name.endswith((".yml", ".txt")) else json.loads(data)


def jbytes(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode()


def failing(report: ReplayReport) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if not c.ok}


def paths(report: ReplayReport) -> list[str]:
    return [d.path for d in report.differences]


# -- untouched packs --------------------------------------------------------------------------------


def test_untouched_pack_replays(ws: Workspace) -> None:
    report = replay_pack(ws.pack())
    assert report.ok, report.failures()
    assert [c.name for c in report.checks] == [
        "files", "manifest", "record schema", "request", "policy hash", "memory", "re-evaluation",
        "chain",
    ]
    assert report.differences == []
    assert report.replayed is not None
    assert report.replayed["verdict"] == "ESCALATE"
    assert report.replayed["determinism"]["inputs_digest"] == ws.escalated["determinism"]["inputs_digest"]


def test_pack_contents(ws: Workspace) -> None:
    pack = ws.pack()
    names = zipfile.ZipFile(io.BytesIO(pack)).namelist()
    assert sorted(names) == sorted([*PACK_FILES, "chain.json"])
    record = member(pack, RECORD_FILE)
    assert record["decision_id"] == ws.escalated["decision_id"]
    assert member(pack, REQUEST_FILE) == record["request"]
    policy_text = member(pack, POLICY_FILE)
    assert policy_text == ws.lumyn.store.get_policy_text(record["policy"]["policy_hash"])
    assert policy_text == SUPPORT_TEXT  # exact text, comments and all
    memory = member(pack, MEMORY_FILE)
    assert [m["memory_id"] for m in memory] == record["explanation"]["details"]["memory_considered"]
    assert memory[0]["source_decision_id"] == ws.trusted["decision_id"]
    assert memory[0]["label"] == "failure"
    manifest = member(pack, MANIFEST_FILE)
    files, _ = read_pack(pack)
    assert set(manifest["files"]) == {*PACK_FILES, "chain.json"} - {MANIFEST_FILE}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_hex(files[name])
    assert "lumyn replay" in member(pack, README_FILE)


def test_export_is_deterministic(ws: Workspace) -> None:
    assert ws.pack() == ws.pack()


def test_pack_with_events_replays(ws: Workspace) -> None:
    pack = ws.pack(ws.trusted["decision_id"])  # this one carries the label event
    record = member(pack, RECORD_FILE)
    assert record["decision_event_log"][0]["type"] == "label"
    assert replay_pack(pack).ok


def test_pack_survives_later_policy_and_memory_changes(ws: Workspace) -> None:
    decision_id = ws.escalated["decision_id"]
    before = ws.pack()
    (ws.root / "before.zip").write_bytes(before)

    # The workspace moves on: a new policy, more memory (similar successes and failures), a
    # label on the packed decision itself, and new decisions.
    (ws.root / "stricter.yml").write_text(STRICTER_TEXT)
    changed = Lumyn(LumynConfig(store_path=str(ws.root / ".lumyn" / "lumyn.db"),
                                policy_path=str(ws.root / "stricter.yml")))
    try:
        for i in range(3):
            other = changed.decide(refund(13.0 + i, ticket_id=f"ZD-9{i}", order_id=f"9{i}"))
            changed.label(other["decision_id"], "success" if i % 2 else "failure", f"later {i}")
        changed.label(decision_id, "near_miss", "caught by a human")
        redecided = changed.decide(refund(14.0, ticket_id="ZD-2", order_id="99", customer_id="C-2"))
        assert redecided["policy"]["policy_hash"] != ws.escalated["policy"]["policy_hash"]
        assert redecided["determinism"]["memory_snapshot"] != ws.escalated["determinism"]["memory_snapshot"]

        # The untouched pack from before still replays.
        report = replay_pack(ws.root / "before.zip")
        assert report.ok, report.failures()
        # And exporting the old decision now yields the same policy and memory as before.
        after = export_pack(changed.store, decision_id)
        assert member(after, POLICY_FILE) == member(before, POLICY_FILE)
        assert member(after, MEMORY_FILE) == member(before, MEMORY_FILE)
        assert member(after, RECORD_FILE)["decision_event_log"][0]["data"]["label"] == "near_miss"
        assert replay_pack(after).ok
        # The newer decision replays against its own (stricter) policy too.
        assert replay_pack(export_pack(changed.store, redecided["decision_id"])).ok
    finally:
        changed.close()


@pytest.mark.parametrize("kind", ["TRUST", "ESCALATE", "QUERY", "ABSTAIN"])
def test_every_verdict_kind_replays(ws: Workspace, kind: str) -> None:
    requests = {
        "TRUST": refund(tenant="other"),
        "ESCALATE": refund(500.0),
        "QUERY": refund(order_id=None, customer_id=""),
        "ABSTAIN": refund(payment_instrument_risk="high"),
    }
    record = ws.lumyn.decide(requests[kind])
    assert record["verdict"] == kind
    report = replay_pack(ws.pack(record["decision_id"]))
    assert report.ok, report.failures()
    if kind == "QUERY":
        assert report.replayed is not None and report.replayed["queries"] == record["queries"]


# -- tampering ---------------------------------------------------------------------------------------


def test_edited_policy_fails_on_policy_hash(ws: Workspace) -> None:
    bad = tamper(ws.pack(), policy=LAXER_TEXT.encode())
    report = replay_pack(bad)
    assert not report.ok
    problems = failing(report)
    assert "policy hash" in problems
    assert ws.escalated["policy"]["policy_hash"] in problems["policy hash"]
    assert "manifest" not in problems  # the manifest was updated: the hash is what catches it


def test_reformatted_policy_keeps_its_hash(ws: Workspace) -> None:
    commented = ("# re-commented by hand\n" + SUPPORT_TEXT).encode()
    report = replay_pack(tamper(ws.pack(), policy=commented))
    assert report.ok, report.failures()


def test_edited_verdict_fails_with_a_precise_diff(ws: Workspace) -> None:
    record = member(ws.pack(), RECORD_FILE)
    record["verdict"] = "TRUST"
    report = replay_pack(tamper(ws.pack(), record=jbytes(record)))
    assert not report.ok
    assert report.differences == [Difference("verdict", "TRUST", "ESCALATE")]
    assert failing(report) == {
        "re-evaluation": "1 field(s) differ from the record: verdict",
        "chain": f"entry 3 (decision {record['decision_id']}) does not recompute from the pack",
    }


def test_edited_reason_codes_fail(ws: Workspace) -> None:
    record = member(ws.pack(), RECORD_FILE)
    record["reason_codes"] = ["REFUND_SMALL_LOW_RISK"]
    report = replay_pack(tamper(ws.pack(), record=jbytes(record)))
    assert not report.ok
    (diff,) = report.differences
    assert diff.path == "reason_codes"
    assert diff.recorded == ["REFUND_SMALL_LOW_RISK"]
    assert diff.replayed == ["FAILURE_MEMORY_SIMILAR_ESCALATE", "REFUND_SMALL_LOW_RISK"]


def test_edited_matched_rules_and_risk_signals_fail(ws: Workspace) -> None:
    record = member(ws.pack(), RECORD_FILE)
    record["matched_rules"] = [r for r in record["matched_rules"] if r["rule_id"] != "R013"]
    record["risk_signals"]["failure_similarity"]["score"] = 0.01
    report = replay_pack(tamper(ws.pack(), record=jbytes(record)))
    assert not report.ok
    assert paths(report) == ["matched_rules[rule_id=R013]", "risk_signals.failure_similarity.score"]
    assert report.differences[0].recorded_present is False


def test_edited_inputs_digest_fails(ws: Workspace) -> None:
    record = member(ws.pack(), RECORD_FILE)
    record["determinism"]["inputs_digest"] = "sha256:" + "0" * 64
    report = replay_pack(tamper(ws.pack(), record=jbytes(record)))
    assert paths(report) == ["determinism.inputs_digest"]


def test_edited_request_fails(ws: Workspace) -> None:
    pack = ws.pack()
    record = member(pack, RECORD_FILE)
    record["request"]["action"]["amount"]["value"] = 900
    # request.json edited alike, manifest updated: the re-evaluation catches it.
    report = replay_pack(tamper(pack, record=jbytes(record), request=jbytes(record["request"])))
    assert not report.ok
    assert "verdict" not in paths(report)  # still ESCALATE, but for other reasons
    assert "reason_codes" in paths(report)
    assert "determinism.inputs_digest" in paths(report)
    # request.json alone edited: it no longer equals the record's request.
    request = member(pack, REQUEST_FILE)
    request["evidence"]["customer_id"] = "C-666"
    alone = replay_pack(tamper(pack, request=jbytes(request)))
    assert "request.evidence.customer_id" in failing(alone)["request"]


def test_manifest_mismatch_fails(ws: Workspace) -> None:
    record = member(ws.pack(), RECORD_FILE)
    record["verdict"] = "TRUST"
    report = replay_pack(tamper(ws.pack(), update_manifest=False, record=jbytes(record)))
    assert not report.ok
    assert "decision_record.json sha256 mismatch" in failing(report)["manifest"]


def test_manifest_must_cover_every_file(ws: Workspace) -> None:
    extra = tamper(ws.pack(), update_manifest=False, **{"notes.txt": b"smuggled"})
    # a smuggled member is named (never read) by the layout check, so the pack fails
    assert "unexpected file 'notes.txt'" in failing(replay_pack(extra))["files"]
    files, _ = read_pack(ws.pack())
    manifest = json.loads(files[MANIFEST_FILE])
    del manifest["files"][MEMORY_FILE]
    unlisted = tamper(ws.pack(), update_manifest=False, **{MANIFEST_FILE: jbytes(manifest)})
    assert "memory.json is not listed in the manifest" in failing(replay_pack(unlisted))["manifest"]


@pytest.mark.parametrize("name", PACK_FILES)
def test_missing_file_fails(ws: Workspace, name: str) -> None:
    report = replay_pack(tamper(ws.pack(), update_manifest=False, drop=(name,)))
    assert not report.ok
    assert f"missing {name}" in failing(report)["files"]


def test_memory_tampering_fails(ws: Workspace) -> None:
    pack = ws.pack()
    memory = member(pack, MEMORY_FILE)
    memory[0]["label"] = "success"  # rewrite history: the failure becomes a success
    report = replay_pack(tamper(pack, memory=jbytes(memory)))
    assert not report.ok
    assert {"verdict", "reason_codes", "determinism.memory_snapshot"} <= set(paths(report))
    emptied = replay_pack(tamper(pack, memory=b"[]"))
    assert "but the record considered" in failing(emptied)["memory"]
    garbage = replay_pack(tamper(pack, memory=b'[{"memory_id": 1}]'))
    assert "malformed" in failing(garbage)["memory"]


def test_schema_invalid_record_fails(ws: Workspace) -> None:
    record = member(ws.pack(), RECORD_FILE)
    record["verdict"] = "MAYBE"
    report = replay_pack(tamper(ws.pack(), record=jbytes(record)))
    assert "record schema" in failing(report)
    assert failing(report)["re-evaluation"].startswith("skipped")
    not_json = replay_pack(tamper(ws.pack(), record=b"{nope"))
    assert "not valid JSON" in failing(not_json)["record"]


def test_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="not a zip archive"):
        replay_pack(b"garbage bytes, not a zip")
    (tmp_path / "x.zip").write_text("hello")
    with pytest.raises(PackError, match="not a zip archive"):
        replay_pack(tmp_path / "x.zip")
    with pytest.raises(PackError, match="does not exist"):
        replay_pack(tmp_path / "missing.zip")


def test_truncated_zip(ws: Workspace) -> None:
    pack = ws.pack()
    try:
        report = replay_pack(pack[: len(pack) // 2])
    except PackError:
        return
    assert not report.ok


# -- what-if -------------------------------------------------------------------------------------


def test_what_if_policy_shows_the_difference(ws: Workspace) -> None:
    report = replay_pack(ws.pack(), policy_text=LAXER_TEXT, policy_source="laxer.yml")
    assert report.ok  # the pack itself verifies
    assert report.what_if is not None
    assert report.what_if.outcome["verdict"] == "TRUST"
    assert report.what_if.outcome["reason_codes"] == ["REFUND_SMALL_LOW_RISK"]
    assert "verdict" in [d.path for d in report.what_if.differences]
    assert report.what_if.policy["policy_hash"] != ws.escalated["policy"]["policy_hash"]
    same = replay_pack(ws.pack(), policy_text=SUPPORT_TEXT)
    assert same.what_if is not None and same.what_if.differences == []


# -- the CLI prints what replay returns --------------------------------------------------------------


def test_cli_replay_exit_codes_and_diff(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    (ws.root / "good.zip").write_bytes(ws.pack())
    record = member(ws.pack(), RECORD_FILE)
    record["verdict"] = "TRUST"
    (ws.root / "bad.zip").write_bytes(tamper(ws.pack(), record=jbytes(record)))
    (ws.root / "laxer.yml").write_text(LAXER_TEXT)

    good = cli("replay", "good.zip")
    assert good.exit_code == 0 and good.stdout.startswith("Replay of good.zip: PASS")

    bad = cli("replay", "bad.zip")
    assert bad.exit_code == 1
    assert "Replay of bad.zip: FAIL" in bad.stdout
    assert '  verdict: "TRUST" -> "ESCALATE"' in bad.stdout
    assert_one_line_error(bad.stderr, "REPLAY_FAILED", "bad.zip", "verdict")
    md = cli("replay", "bad.zip", "--markdown")
    assert md.exit_code == 1
    assert "| `verdict` | `\"TRUST\"` | `\"ESCALATE\"` |" in md.stdout

    what_if = cli("replay", "good.zip", "--policy", "laxer.yml")
    assert what_if.exit_code == 0, what_if.stderr
    assert "What-if: laxer.yml" in what_if.stdout
    assert '    verdict: "ESCALATE" -> "TRUST"' in what_if.stdout

    broken_what_if = cli("replay", "bad.zip", "--policy", "laxer.yml")
    assert broken_what_if.exit_code == 1  # the pack itself still fails


def test_cli_exports_replayable_packs_for_demo_records(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    records = json.loads(cli("demo").stdout)
    for i, record in enumerate(records):
        assert cli("export", record["decision_id"], "--pack", "--out", f"p{i}.zip").exit_code == 0
        result = cli("replay", f"p{i}.zip")
        assert result.exit_code == 0, (record["verdict"], result.stdout)


# -- the diff itself ----------------------------------------------------------------------------------


def test_diff_values() -> None:
    assert diff_values(12, 12.0, "x") == []  # one JSON number
    assert diff_values(True, 1, "x") == [Difference("x", True, 1)]  # a boolean is not a number
    assert diff_values({"a": [1, 2]}, {"a": [1, 3]}, "r") == [Difference("r.a", [1, 2], [1, 3])]
    assert diff_values({"a": [1, 2.0]}, {"a": [1.0, 2]}, "r") == []
    assert diff_values([{"v": 1}], [{"v": 2}], "o") == [Difference("o[0].v", 1, 2)]
    assert diff_values({"a": 1}, {"b": 1}, "r") == [
        Difference("r.a", 1, None, True, False), Difference("r.b", None, 1, False, True),
    ]
    rules = [{"rule_id": "A", "stage": "S"}, {"rule_id": "B", "stage": "S"}]
    assert diff_values(rules, list(reversed(rules)), "m") == [Difference("m order", ["A", "B"], ["B", "A"])]
    assert diff_values([1], [1, 2], "l") == [Difference("l", [1], [1, 2])]
