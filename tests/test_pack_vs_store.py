"""`lumyn replay` in a workspace that holds the decision compares the pack with the stored
record and events (issue 14, item 6): a forged but self-consistent pack fails."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli_kit import cli
from test_packs_replay import Workspace, jbytes, member, tamper, ws  # noqa: F401  (fixture)

from lumyn.integrity.packchain import CHAIN_FILE
from lumyn.packs import RECORD_FILE, replay_pack


def _write(root: Path, name: str, data: bytes) -> str:
    path = root / name
    path.write_bytes(data)
    return str(path)


def test_a_genuine_pack_matches_the_store(ws: Workspace) -> None:  # noqa: F811
    pack = _write(ws.root, "genuine.zip", ws.pack())
    result = cli("replay", pack, "--json")
    assert result.exit_code == 0, result.stderr
    checks = {c["name"]: c["ok"] for c in json.loads(result.stdout)["checks"]}
    assert checks["store"] is True
    # exported before a later event: still the store's decision
    ws.lumyn.label(ws.escalated["decision_id"], "success", "was fine")
    assert cli("replay", pack).exit_code == 0


def test_forged_self_consistent_packs_fail_against_the_store(ws: Workspace) -> None:  # noqa: F811
    record = member(ws.pack(ws.trusted["decision_id"]), RECORD_FILE)
    forgeries = {
        "time": {**record, "created_at": "2020-01-01T00:00:00.000000Z"},
        "events": {**record, "decision_event_log": [
            {**record["decision_event_log"][0],
             "data": {**record["decision_event_log"][0]["data"], "label": "success"}}]},
        "explanation": {**record, "explanation": {**record["explanation"],
                                                  "summary": "approved by the CFO"}},
    }
    for kind, forged in forgeries.items():
        # With the pack's chain entries kept, they no longer recompute: replay alone tells.
        kept = tamper(ws.pack(ws.trusted["decision_id"]), record=jbytes(forged))
        assert not next(c for c in replay_pack(kept).checks if c.name == "chain").ok, kind
        # A forger drops the optional chain.json: self-consistent, replay alone cannot tell.
        pack = tamper(ws.pack(ws.trusted["decision_id"]), drop=(CHAIN_FILE,), record=jbytes(forged))
        assert replay_pack(pack).ok, kind
        result = cli("replay", _write(ws.root, f"{kind}.zip", pack))
        assert result.exit_code == 1, kind
        assert "store: differs from the decision the store holds" in result.stderr, kind


def test_a_pack_of_another_workspace_is_checked_for_consistency_only(
    ws: Workspace, tmp_path: Path,  # noqa: F811
) -> None:
    pack = _write(ws.root, "elsewhere.zip", ws.pack())
    result = cli("replay", pack, "--workspace", str(tmp_path / "empty"), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert "store" not in {c["name"] for c in report["checks"]}
    assert any("consistency only" in note for note in report["notes"])
