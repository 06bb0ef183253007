"""The Store protocol every backend implements, and the types that cross it.

The engine talks only to this protocol. Both backends (SQLite, PostgreSQL) pass the same
contract test suite (tests/test_store_contract.py).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from lumyn.errors import LumynError
from lumyn.memory.item import MemoryItem
from lumyn.store.scan import Scope

SCHEMA_VERSION = 4


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


class DecisionWrite(NamedTuple):
    """One decision to append: its row, idempotency key and policy snapshot. With
    `memory_seq`, the write happens only while no memory item of the row's tenant and action
    type has a sequence number above it (the memory the decision was evaluated against is
    still the newest); otherwise nothing is written and the slot's outcome is None."""

    row: DecisionRow
    key: IdempotencyKey | None
    policy: PolicySnapshot
    memory_seq: int | None = None


# One slot of Store.append_decisions: the stored record's canonical JSON, None when a
# memory-checked write found newer memory, or that write's own error.
WriteOutcome = bytes | None | LumynError


class Store(Protocol):
    """Durable, append-only storage of decisions, events, memory items and policy snapshots.

    Every method raises lumyn.errors.StorageUnavailable when the backend cannot serve it
    (append_decisions puts it in every slot instead). Both backends accept and refuse the same
    inputs; the contract suite (tests/test_store_contract.py) runs against each.
    """

    url: str

    # True when a memory catch-up query would cost a round trip of its own (PostgreSQL):
    # decide() then evaluates against the memory already indexed and makes its write
    # conditional on it (DecisionWrite.memory_seq). False: catching up is cheap here (see
    # memory_change_token), decide() catches up first and writes unconditionally.
    checks_memory_at_write: bool

    def append_decisions(self, writes: Sequence[DecisionWrite]) -> list[WriteOutcome]:
        """The one write path: every write in ONE transaction (one commit), durable before
        returning, each slot answered in order.

        A key already used for the same request digest writes nothing and answers the stored
        record's JSON (a retry); for a different digest, IdempotencyConflict. An identifier
        the store cannot hold, RequestInvalid. When the transaction cannot commit, every slot
        holds StorageUnavailable; nothing is raised for it.
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
        Raises DecisionNotFound when the decision does not exist, InvalidEvent for text the
        store cannot hold (U+0000 in a label summary)."""
        ...

    def list_events(self, decision_id: str) -> list[dict[str, Any]]: ...

    def decisions_page(self, scope: Scope, after_id: str | None,
                       limit: int) -> list[tuple[str, bytes]]:
        """Up to `limit` (decision_id, record JSON) in `scope` with ids above `after_id`, by
        id ascending: one keyset page of a scan (lumyn.store.scan)."""
        ...

    def count_decisions(self, scope: Scope) -> int: ...

    def memory_items_since(
        self, tenant_id: str, action_type: str, after_seq: int, limit: int | None = None
    ) -> list[tuple[int, MemoryItem]]:
        """Items of one tenant and action type with sequence number > after_seq, ascending (the
        first `limit` of them); each with `supersedes_seq`, the same decision's previous item."""
        ...

    def memory_change_token(self) -> Hashable | None:
        """A value that changes whenever memory items may have changed, or None when the
        backend cannot tell cheaply (memory then asks memory_items_since every time)."""
        ...

    def memory_prune_cutoff(self, tenant_id: str) -> str | None:
        """The latest `prune_memory` cutoff that covers the tenant (created_at text), or None."""
        ...

    def prune_memory(self, before: str, tenant_id: str | None = None) -> int:
        """Retire items created before `before` (of one tenant, or every tenant) from
        similarity; nothing is deleted. Returns how many items that covers."""
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
