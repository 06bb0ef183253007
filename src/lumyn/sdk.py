"""The public SDK: `Lumyn` holds the compiled policy and an open store; `decide()` uses it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal, overload

import orjson

from lumyn.config import LumynConfig
from lumyn.contracts.canonical import canonical_bytes
from lumyn.contracts.ids import new_id, utc_now
from lumyn.engine.assess import (
    assess,
    record_json,
    request_features,
    resolve_mode,
    storage_unavailable_body,
)
from lumyn.engine.memory import MemoryView
from lumyn.engine.normalize import normalize_request, tenant_of
from lumyn.errors import (
    DecisionNotFound,
    InvalidEvent,
    LumynError,
    RequestInvalid,
    StorageUnavailable,
)
from lumyn.memory.index import LABELS, MemoryItem
from lumyn.policy import CompiledPolicy, bundled_policy_path, load_policy
from lumyn.store import DecisionRow, IdempotencyKey, PolicySnapshot, Store, open_store

RECORD_SCHEMA_VERSION = "decision_record.v0"
EVENT_TYPES = ("outcome", "label", "note", "override")
MAX_SUMMARY = 2000


class _Pending:
    """A decided record waiting for its write."""

    __slots__ = ("key", "memory_seq", "mode", "record", "record_json", "request", "row")

    def __init__(self, record: dict[str, Any], record_json: bytes, row: DecisionRow,
                 key: IdempotencyKey | None, request: dict[str, Any], mode: str,
                 memory_seq: int | None = None) -> None:
        self.record, self.record_json, self.row = record, record_json, row
        self.key, self.request, self.mode = key, request, mode
        # The memory sequence number evaluated against, when memory was not caught up first.
        self.memory_seq = memory_seq

    def result(self, stored: bytes) -> dict[str, Any]:
        if stored is self.record_json:
            return self.record
        # An identical earlier or concurrent request holds this key: return its record.
        found: dict[str, Any] = orjson.loads(stored)
        return found


# What prepare_many yields per request: a finished record (dry run, storage trouble), the
# error decide() would raise, or a record waiting for its write.
Prepared = dict[str, Any] | LumynError | _Pending


class Lumyn:
    """A decision gateway: compiled policy + durable store + Experience Memory.

    Create once and reuse; it is safe to share between threads.
    """

    def __init__(
        self,
        config: LumynConfig | None = None,
        *,
        store: Store | None = None,
        policy: CompiledPolicy | None = None,
    ) -> None:
        self.config = config or LumynConfig()
        self.policy = policy or load_policy(self.config.policy_path or bundled_policy_path())
        self.store = store or open_store(self.config.url, busy_timeout_ms=self.config.busy_timeout_ms)
        self.memory = MemoryView(self.store)
        # A backend that can make the write conditional on memory being unchanged (PostgreSQL:
        # a catch-up query would be a round trip of its own) is not asked before evaluating.
        self._append_if_memory_at = getattr(self.store, "append_decision_if_memory_at", None)
        self._snapshot = PolicySnapshot(
            self.policy.policy_hash, self.policy.policy_id, self.policy.policy_version,
            self.policy.text,
        )

    # -- deciding ------------------------------------------------------------------------------

    def decide(self, request: Any) -> dict[str, Any]:
        """Evaluate a DecisionRequest and durably record the decision before returning it.

        Raises RequestInvalid (INVALID_REQUEST_SCHEMA, CONTEXT_DIGEST_MISMATCH, POLICY_MISMATCH)
        for bad input and IdempotencyConflict for a reused request_id. Never raises for storage
        trouble: returns an ABSTAIN record with STORAGE_UNAVAILABLE instead.
        """
        guarded = self._append_if_memory_at
        pending = self._evaluate(request, memory_check_at_write=guarded is not None)
        if isinstance(pending, dict):
            return pending
        if guarded is not None and pending.memory_seq is not None:
            try:
                stored = guarded(pending.row, pending.key, self._snapshot, pending.memory_seq)
            except StorageUnavailable as exc:
                return self._unavailable(pending.request, pending.mode, exc)
            if stored is not None:
                return pending.result(stored)
            # Memory moved since it was indexed (a label, here or elsewhere): catch up and
            # decide again; nothing of the first evaluation was written.
            pending = self._evaluate(request)
            if isinstance(pending, dict):
                return pending
        try:
            stored = self.store.append_decision(pending.row, pending.key, self._snapshot)
        except StorageUnavailable as exc:
            return self._unavailable(pending.request, pending.mode, exc)
        return pending.result(stored)

    def decide_many(self, requests: list[Any]) -> list[dict[str, Any] | LumynError]:
        """Decide several requests and make them all durable in one transaction (one fsync).

        Each slot holds that request's record, or the LumynError decide() would have raised.
        Results are the same as calling decide() on each request in order.
        """
        return self.commit_many(self.prepare_many(requests))

    def prepare_many(self, requests: list[Any]) -> list[Prepared]:
        """The first half of decide_many: evaluate without writing. Pipelining callers (the
        service) evaluate the next batch while the previous one commits; commit_many must
        then be called on the results, in the order they were prepared."""
        prepared: list[Prepared] = []
        refreshed: set[tuple[str, str]] = set()  # memory catch-up once per group per batch
        for request in requests:
            try:
                prepared.append(self._evaluate(request, refreshed))
            except LumynError as exc:
                prepared.append(exc)
        return prepared

    @overload
    def commit_many(self, prepared: list[Prepared]) -> list[dict[str, Any] | LumynError]: ...

    @overload
    def commit_many(
        self, prepared: list[Prepared], *, encoded: Literal[True]
    ) -> list[dict[str, Any] | bytes | LumynError]: ...

    def commit_many(
        self, prepared: list[Prepared], *, encoded: bool = False
    ) -> list[dict[str, Any] | bytes | LumynError] | list[dict[str, Any] | LumynError]:
        """The second half of decide_many: write every pending record in one transaction.

        `encoded=True` gives each stored record as the canonical JSON bytes the store holds
        (what the service sends) instead of a dict; records that were not stored (dry runs,
        storage trouble) stay dicts."""
        pending = [p for p in prepared if isinstance(p, _Pending)]
        stored: list[bytes | LumynError] = []
        if pending:
            writes = [(p.row, p.key, self._snapshot) for p in pending]
            append_many = getattr(self.store, "append_decisions", None)
            if append_many is not None:
                stored = append_many(writes)
            else:
                for row, key, snapshot in writes:
                    try:
                        stored.append(self.store.append_decision(row, key, snapshot))
                    except LumynError as exc:
                        stored.append(exc)
        outcomes = iter(stored)  # one per pending record, in order
        results: list[dict[str, Any] | bytes | LumynError] = []
        for p in prepared:
            if not isinstance(p, _Pending):
                results.append(p)
                continue
            outcome = next(outcomes)
            if isinstance(outcome, StorageUnavailable):
                results.append(self._unavailable(p.request, p.mode, outcome))
            elif isinstance(outcome, LumynError):
                results.append(outcome)
            else:
                results.append(outcome if encoded else p.result(outcome))
        return results

    def _evaluate(
        self, request: Any, refreshed: set[tuple[str, str]] | None = None,
        *, memory_check_at_write: bool = False,
    ) -> dict[str, Any] | _Pending:
        """Everything up to the write: a finished record (dry run, storage trouble) or the
        row to persist. Raises RequestInvalid for bad input. `refreshed` collects the memory
        groups already caught up in this batch. `memory_check_at_write` evaluates against the
        memory already indexed and records its sequence number in the pending row, for a
        write that checks it (append_decision_if_memory_at)."""
        normalized = normalize_request(request, self.config.redaction_profile)
        persisted, tenant = normalized.persisted, normalized.tenant_id
        self._check_policy_pin(persisted)
        mode = resolve_mode(persisted, self.config.mode, self.policy)
        dry_run = bool((persisted.get("hints") or {}).get("dry_run"))
        request_id = persisted.get("request_id")
        key = (
            IdempotencyKey(tenant, request_id, normalized.request_digest)
            if request_id and not dry_run
            else None
        )
        try:
            # Idempotency is settled inside the write transaction (append_decision), which
            # returns the stored record for a retry; no separate read on the hot path.
            tokens = request_features(persisted)
            group = (tenant, persisted["action"]["type"])
            memory_seq: int | None = None
            if memory_check_at_write and not dry_run:
                similarity, memory_seq = self.memory.lookup_indexed(*group, tokens,
                                                                    self.config.top_k)
            else:
                refresh = refreshed is None or group not in refreshed
                similarity = self.memory.lookup(*group, tokens, self.config.top_k,
                                                refresh=refresh)
                if refreshed is not None:
                    refreshed.add(group)
        except StorageUnavailable as exc:
            return self._unavailable(persisted, mode, exc)
        record = self._new_record(
            assess(self.policy, persisted, tenant, similarity, mode, self.config.top_k, tokens,
                   normalized.canonical)
        )
        if dry_run:
            record["extensions"] = {"lumyn": {"dry_run": True, "persisted": False}}
            return record
        encoded = record_json(record, normalized.canonical, self.policy)
        row = DecisionRow.from_record(record, tenant, encoded)
        return _Pending(record, encoded, row, key, persisted, mode, memory_seq)

    def _new_record(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "schema_version": RECORD_SCHEMA_VERSION,
            "decision_id": new_id(),
            "created_at": utc_now(),
            **body,
        }

    def _unavailable(self, request: dict[str, Any], mode: str, exc: Exception) -> dict[str, Any]:
        return self._new_record(storage_unavailable_body(self.policy, request, mode, str(exc)))

    def _check_policy_pin(self, request: dict[str, Any]) -> None:
        pin = request.get("policy") or {}
        for name, actual in (("policy_id", self.policy.policy_id),
                             ("policy_version", self.policy.policy_version)):
            if pin.get(name) is not None and pin[name] != actual:
                raise RequestInvalid(
                    f"request asks for {name} '{pin[name]}' but the loaded policy is '{actual}'",
                    field=f"policy.{name}",
                    reason_code="POLICY_MISMATCH",
                )

    # -- reading and events -----------------------------------------------------------------------

    def get_decision(
        self, decision_id: str, *, tenant_id: str | None = None, with_events: bool = True
    ) -> dict[str, Any]:
        """The stored record, with its event log. `tenant_id` restricts to one tenant:
        another tenant's decision is reported as not found, so ids do not leak."""
        found = self.store.get_decision(decision_id)
        if found is None or (tenant_id is not None and found[0] != tenant_id):
            raise DecisionNotFound(f"no decision {decision_id}", field="decision_id")
        record: dict[str, Any] = orjson.loads(found[1])
        if with_events:
            events = self.store.list_events(decision_id)
            if events:
                record["decision_event_log"] = events
        return record

    def append_event(
        self,
        decision_id: str,
        event_type: str,
        data: dict[str, Any] | None = None,
        *,
        tenant_id: str | None = None,
    ) -> dict[str, Any]:
        """Append an outcome, label, note or override event. A label feeds Experience Memory."""
        if event_type not in EVENT_TYPES:
            raise InvalidEvent(
                f"event type must be one of {', '.join(EVENT_TYPES)}", field="type"
            )
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise InvalidEvent("event data must be a JSON object", field="data")
        if event_type == "label":
            return self.label(
                decision_id, data.get("label"), data.get("summary") or "", tenant_id=tenant_id,
                extra=data,
            )
        try:
            canonical_bytes(data)
        except ValueError as exc:
            raise InvalidEvent(str(exc), field="data") from None
        record = self.get_decision(decision_id, tenant_id=tenant_id, with_events=False)
        event = {"event_id": new_id(), "at": utc_now(), "type": event_type, "data": data}
        self.store.append_event(record["decision_id"], event, None)
        return event

    def label(
        self,
        decision_id: str,
        label: Any,
        summary: Any = "",
        *,
        tenant_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Label a decision's outcome. Appends a label event and a memory item atomically."""
        if label not in LABELS:
            raise InvalidEvent(f"label must be one of {', '.join(LABELS)}", field="label")
        if not isinstance(summary, str) or len(summary) > MAX_SUMMARY:
            raise InvalidEvent(f"summary must be text of at most {MAX_SUMMARY} characters",
                               field="summary")
        record = self.get_decision(decision_id, tenant_id=tenant_id, with_events=False)
        request = record["request"]
        now = utc_now()
        item = MemoryItem(
            memory_id=new_id(),
            tenant_id=tenant_of(request),
            action_type=request["action"]["type"],
            label=label,
            summary=summary,
            features=request_features(request),
            source_decision_id=decision_id,
            created_at=now,
        )
        data = {k: v for k, v in (extra or {}).items() if k not in ("label", "summary", "memory_id")}
        try:
            canonical_bytes(data)
        except ValueError as exc:
            raise InvalidEvent(str(exc), field="data") from None
        data.update({"label": label, "summary": summary, "memory_id": item.memory_id})
        event = {"event_id": new_id(), "at": now, "type": "label", "data": data}
        self.store.append_event(decision_id, event, item)
        return event

    def memory_items(self, memory_ids: list[str]) -> list[MemoryItem]:
        return self.store.get_memory_items(memory_ids)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Lumyn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_instances: dict[tuple[Any, ...], Lumyn] = {}
_instances_lock = threading.Lock()


def _cache_key(config: LumynConfig) -> tuple[Any, ...]:
    policy = str(Path(config.policy_path).resolve()) if config.policy_path else None
    return (config.url, policy, config.mode, config.redaction_profile, config.top_k,
            config.busy_timeout_ms)


def decide(request: Any, config: LumynConfig | None = None) -> dict[str, Any]:
    """Decide with a process-wide Lumyn per configuration (policy compiled and store opened
    once, reused by later calls with an equal config)."""
    config = config or LumynConfig()
    key = _cache_key(config)
    with _instances_lock:
        instance = _instances.get(key)
        if instance is None:
            instance = _instances[key] = Lumyn(config)
    return instance.decide(request)
