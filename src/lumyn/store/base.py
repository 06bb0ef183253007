"""The Store protocol every backend implements, and the types that cross it.

The engine talks only to this protocol. Both backends (SQLite, PostgreSQL) pass the same
contract test suite (tests/test_store_contract.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from lumyn.memory.item import MemoryItem

SCHEMA_VERSION = 1


class IdempotencyKey(NamedTuple):
    tenant_id: str
    request_id: str
    request_digest: str


@dataclass(frozen=True)
class PolicySnapshot:
    policy_hash: str
    policy_id: str
    policy_version: str
    text: str


class DecisionRow(NamedTuple):
    """What a backend needs to index a record; the record itself is stored as canonical JSON.
    (Named tuples: one is built per decision, and a frozen dataclass costs several times more.)"""

    decision_id: str
    created_at: str
    tenant_id: str
    action_type: str
    verdict: str
    policy_hash: str
    context_digest: str
    request_id: str | None
    request_digest: str | None
    record_json: bytes

    @classmethod
    def from_record(
        cls,
        record: dict[str, Any],
        tenant_id: str,
        record_json: bytes,
        request_digest: str | None = None,
    ) -> DecisionRow:
        request = record["request"]
        return cls(
            decision_id=record["decision_id"],
            created_at=record["created_at"],
            tenant_id=tenant_id,
            action_type=request["action"]["type"],
            verdict=record["verdict"],
            policy_hash=record["policy"]["policy_hash"],
            context_digest=request["context"]["digest"],
            request_id=request.get("request_id"),
            request_digest=request_digest,
            record_json=record_json,
        )


class Store(Protocol):
    """Durable, append-only storage of decisions, events, memory items and policy snapshots.

    Every method raises lumyn.errors.StorageUnavailable when the backend cannot serve it.

    Optional, looked up by name: `append_decisions` (a batch in one transaction),
    `memory_change_token()` (lets memory skip a catch-up query when nothing changed) and
    `append_decision_if_memory_at` (decide() then skips the catch-up and the insert checks
    that memory is unchanged, PostgreSQL).
    """

    url: str

    def append_decision(
        self, row: DecisionRow, key: IdempotencyKey | None, policy: PolicySnapshot
    ) -> bytes:
        """Durably commit the decision (and its policy snapshot) before returning.

        With a key already used for the same request digest, nothing is written and the stored
        record's JSON is returned; with a different digest, IdempotencyConflict is raised.
        Returns the canonical JSON of the record that is now stored under this id/key.
        """
        ...

    def find_idempotent(self, tenant_id: str, request_id: str) -> tuple[str, bytes] | None:
        """(request_digest, record JSON) stored for this key, or None."""
        ...

    def get_decision(self, decision_id: str) -> tuple[str, bytes] | None:
        """(tenant_id, record JSON) or None."""
        ...

    def append_event(self, decision_id: str, event: dict[str, Any], memory: MemoryItem | None) -> None:
        """Append an event (and the memory item a label creates) in one transaction.
        Raises DecisionNotFound when the decision does not exist."""
        ...

    def list_events(self, decision_id: str) -> list[dict[str, Any]]: ...

    def memory_items_since(
        self, tenant_id: str, action_type: str, after_seq: int
    ) -> list[tuple[int, MemoryItem]]:
        """Items of one tenant and action type with sequence number > after_seq, ascending."""
        ...

    def get_memory_items(self, memory_ids: list[str]) -> list[MemoryItem]: ...

    def get_policy_text(self, policy_hash: str) -> str | None: ...

    def schema_version(self) -> int | None: ...

    def check(self) -> list[str]:
        """Integrity problems found (empty when healthy)."""
        ...

    def ensure_schema(self) -> list[str]:
        """Create or migrate tables; returns what was done."""
        ...

    def close(self) -> None: ...
