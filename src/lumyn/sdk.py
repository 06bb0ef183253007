"""The public SDK: `Lumyn` holds the compiled policy and an open store; `decide()` uses it.

`Lumyn` owns the decide path. It runs the engine's two pure steps (lumyn.engine.pipeline:
admit, conclude) around its own I/O: a memory lookup between them, one store write after.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import orjson

from lumyn.config import LumynConfig
from lumyn.contracts.canonical import canonical_bytes
from lumyn.contracts.ids import new_id, utc_now
from lumyn.engine.assess import request_features
from lumyn.engine.normalize import tenant_of
from lumyn.engine.pipeline import Admitted, Decided, admit, conclude, unavailable
from lumyn.errors import DecisionNotFound, InvalidEvent, LumynError, StorageUnavailable
from lumyn.event_ids import check_event_id, earlier_event
from lumyn.memory.index import LABELS, MemoryItem, Similarity
from lumyn.memory.view import MemoryView, index_directory, utc_text
from lumyn.policy import CompiledPolicy, bundled_policy_path, load_policy
from lumyn.shadow import shadow_extension
from lumyn.store import DecisionWrite, PolicySnapshot, Store, open_store
from lumyn.store.base import WriteOutcome
from lumyn.telemetry.tracing import get_tracer, record_decision, step

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

EVENT_TYPES = ("outcome", "label", "note", "override")
MAX_SUMMARY = 2000
MAX_LABELS = 100  # per decision: each label is a memory item every later decide may score
MAX_CACHED = 8  # Lumyn instances decide() keeps, one per configuration, least recently used out


class _Pending:
    """A concluded decision waiting for its write."""

    __slots__ = ("admitted", "decided", "write")

    def __init__(self, admitted: Admitted, decided: Decided, write: DecisionWrite) -> None:
        self.admitted, self.decided, self.write = admitted, decided, write

    def result(self, stored: bytes) -> dict[str, Any]:
        if stored is self.decided.record_json:
            return self.decided.record
        # An identical earlier or concurrent request holds this key: return its record.
        found: dict[str, Any] = orjson.loads(stored)
        return found


# What prepare_many yields per request: a finished record (dry run, storage trouble), the
# error decide() would raise, or a record waiting for its write.
Prepared = dict[str, Any] | LumynError | _Pending


class Lumyn:
    """A decision gateway: compiled policy + durable store + Experience Memory.

    Create once and reuse; it is safe to share between threads. A context manager: leaving
    the block closes the store.
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
        # Shadow mode: also evaluated on every decision, recorded, never enforced.
        self.shadow = (load_policy(self.config.shadow_policy_path)
                       if self.config.shadow_policy_path else None)
        self.store = store or open_store(self.config.url, busy_timeout_ms=self.config.busy_timeout_ms)
        self.memory = MemoryView(self.store, index_directory(self.config.memory_index_dir, self.store),
                                 self.config.memory_retention_days)
        self._tracer = get_tracer() if self.config.tracing else None
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
        tracer = self._tracer
        if tracer is None:
            return self._decide(request, None)
        with tracer.start_as_current_span("lumyn.decide") as span:
            record = self._decide(request, tracer)
            record_decision(span, record)
            return record

    def _decide(self, request: Any, tracer: Tracer | None) -> dict[str, Any]:
        with step(tracer, "validate"):
            admitted = self._admit(request)
        # A store that checks memory at the write is tried first against the memory already
        # indexed; when memory moved meanwhile nothing was written: catch up, decide again.
        for at_write in (True, False) if self.store.checks_memory_at_write else (False,):
            prepared = self._prepare(admitted, at_write=at_write, tracer=tracer)
            if not isinstance(prepared, _Pending):
                return prepared
            with step(tracer, "commit"):
                outcome = self.store.append_decisions([prepared.write])[0]
            if isinstance(outcome, bytes):
                return prepared.result(outcome)
            if isinstance(outcome, StorageUnavailable):
                return self._unavailable(admitted, outcome)
            if outcome is not None:
                raise outcome
        raise AssertionError("an unconditional write answered nothing")

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
                prepared.append(self._prepare(self._admit(request), refreshed=refreshed))
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
        outcomes = iter(self.store.append_decisions([p.write for p in pending]) if pending else ())
        results: list[dict[str, Any] | bytes | LumynError] = []
        for p in prepared:
            if isinstance(p, _Pending):
                results.append(self._result(p, next(outcomes), encoded=encoded))
            else:
                results.append(p)
        return results

    def _admit(self, request: Any) -> Admitted:
        return admit(request, self.policy, self.config.redaction_profile, self.config.mode)

    def _prepare(
        self, admitted: Admitted, refreshed: set[tuple[str, str]] | None = None,
        *, at_write: bool = False, tracer: Tracer | None = None,
    ) -> dict[str, Any] | _Pending:
        """Memory lookup and the engine's conclusion: a finished record (dry run, storage
        trouble) or the write to make. `refreshed` collects the memory groups already caught
        up in this batch. `at_write` evaluates against the memory already indexed and has
        the write check it is still the newest (Store.checks_memory_at_write)."""
        group = (admitted.tenant_id, admitted.action_type)
        top_k = self.config.top_k
        memory_seq: int | None = None
        try:
            similarity: Similarity
            with step(tracer, "memory"):
                if at_write and not admitted.dry_run:
                    similarity, memory_seq = self.memory.lookup_indexed(
                        *group, admitted.features, top_k)
                else:
                    refresh = refreshed is None or group not in refreshed
                    similarity = self.memory.lookup(*group, admitted.features, top_k,
                                                    refresh=refresh)
                    if refreshed is not None:
                        refreshed.add(group)
        except StorageUnavailable as exc:
            return self._unavailable(admitted, exc)
        with step(tracer, "evaluate"):
            shadow = (None if self.shadow is None else {"shadow": shadow_extension(
                self.shadow, admitted.request, admitted.tenant_id, similarity)})
            decided = conclude(self.policy, admitted, similarity, top_k, new_id(), utc_now(),
                               extensions=shadow)
        if decided.row is None:
            return decided.record  # a dry run: nothing to write
        return _Pending(admitted, decided,
                        DecisionWrite(decided.row, admitted.key, self._snapshot, memory_seq))

    def _result(self, pending: _Pending, outcome: WriteOutcome,
                *, encoded: bool = False) -> dict[str, Any] | bytes | LumynError:
        if isinstance(outcome, bytes):
            return outcome if encoded else pending.result(outcome)
        if isinstance(outcome, StorageUnavailable):
            return self._unavailable(pending.admitted, outcome)
        if outcome is None:  # only a memory-checked write declines, and only decide() makes one
            raise AssertionError("a batch write was declined")
        return outcome

    def _unavailable(self, admitted: Admitted, exc: Exception) -> dict[str, Any]:
        return unavailable(self.policy, admitted.request, admitted.mode, str(exc), new_id(),
                           utc_now())

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
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """Append an outcome, label, note or override event. A label feeds Experience Memory.
        `event_id` (optional) makes the call idempotent (lumyn.event_ids)."""
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
                extra=data, event_id=event_id,
            )
        try:
            canonical_bytes(data)
        except ValueError as exc:
            raise InvalidEvent(str(exc), field="data") from None
        record = self.get_decision(decision_id, tenant_id=tenant_id, with_events=False)
        if event_id is not None:
            earlier = self._earlier_event(decision_id, event_id, event_type, data)
            if earlier is not None:
                return earlier
        event = {"event_id": event_id or new_id(), "at": utc_now(), "type": event_type,
                 "data": data}
        self.store.append_event(record["decision_id"], event, None)
        return event

    def _earlier_event(self, decision_id: str, event_id: str, event_type: str,
                       data: dict[str, Any]) -> dict[str, Any] | None:
        check_event_id(event_id)
        return earlier_event(self.store.list_events(decision_id), event_id, event_type, data)

    def label(
        self,
        decision_id: str,
        label: Any,
        summary: Any = "",
        *,
        tenant_id: str | None = None,
        extra: dict[str, Any] | None = None,
        event_id: str | None = None,
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
        if event_id is not None:
            earlier = self._earlier_event(decision_id, event_id, "label", data)
            if earlier is not None:
                return earlier
        labels = sum(e.get("type") == "label" for e in self.store.list_events(decision_id))
        if labels >= MAX_LABELS:
            raise InvalidEvent(f"a decision takes at most {MAX_LABELS} labels", field="label")
        event = {"event_id": event_id or new_id(), "at": now, "type": "label", "data": data}
        self.store.append_event(decision_id, event, item)
        return event

    def memory_items(self, memory_ids: list[str]) -> list[MemoryItem]:
        return self.store.get_memory_items(memory_ids)

    def prune_memory(self, older_than_days: float, tenant_id: str | None = None) -> dict[str, Any]:
        """Retire memory items created more than `older_than_days` ago (of one tenant, or of
        every tenant) from similarity. The items and the decisions' events stay stored."""
        if isinstance(older_than_days, bool) or not isinstance(older_than_days, int | float) \
                or not 0 < older_than_days < 100_000:
            raise InvalidEvent("older_than must be a positive number of days", field="older_than")
        before = utc_text(time.time() - older_than_days * 86400)
        items = self.store.prune_memory(before, tenant_id)
        return {"before": before, "tenant_id": tenant_id, "items": items}

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Lumyn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_instances: OrderedDict[tuple[Any, ...], Lumyn] = OrderedDict()
_instances_lock = threading.Lock()


def _cache_key(config: LumynConfig) -> tuple[Any, ...]:
    policy = str(Path(config.policy_path).resolve()) if config.policy_path else None
    shadow = str(Path(config.shadow_policy_path).resolve()) if config.shadow_policy_path else None
    return (config.url, policy, shadow, config.mode, config.redaction_profile, config.top_k,
            config.busy_timeout_ms)


def decide(request: Any, config: LumynConfig | None = None) -> dict[str, Any]:
    """Decide with a process-wide Lumyn per configuration (policy compiled and store opened
    once, reused by later calls with an equal config). At most MAX_CACHED are kept: the least
    recently used is closed when another is needed, and all are closed at exit."""
    config = config or LumynConfig()
    key = _cache_key(config)
    evicted: Lumyn | None = None
    with _instances_lock:
        instance = _instances.get(key)
        if instance is None:
            instance = _instances[key] = Lumyn(config)
            if len(_instances) > MAX_CACHED:
                evicted = _instances.popitem(last=False)[1]
        else:
            _instances.move_to_end(key)
    if evicted is not None:
        evicted.close()  # a caller still inside its decide() gets a fail-closed ABSTAIN
    return instance.decide(request)


@atexit.register
def close_cached() -> None:
    """Close every Lumyn that decide() opened (their stores, PostgreSQL pools included)."""
    with _instances_lock:
        instances = list(_instances.values())
        _instances.clear()
    for instance in instances:
        instance.close()
