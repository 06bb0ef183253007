"""`lumyn verify`: walk each tenant's chain against the stored rows; report the first break.

The walk recomputes every entry from its row and checks every link, so an attacker who edits a
row and recomputes that entry's own hash is caught at the next link, whose `prev_hash` still
names the old hash. What the walk cannot see by itself (the tail cut off, or the whole chain
rebuilt from scratch) a published head catches: `--head` prints one, `--against` checks it.

Problem kinds: edited (a row no longer matches its entry), moved (an event now points at
another decision), deleted (an entry's row, or entries, are gone), inserted (a row that is not
in the chain, or an entry the next link skips), reordered (an entry chained after a different
one), rewritten (an entry's hash was replaced), truncated / diverged (against a published head).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from lumyn.contracts.ids import utc_now
from lumyn.errors import LumynError
from lumyn.integrity.chain import DECISION_PREFIX, DECISION_SUFFIX, GENESIS, Entry, event_row_bytes

T = TypeVar("T")

Row = tuple[Any, ...]


class ChainView(Protocol):
    """One consistent read of a store's chain and rows (a single read transaction). Every
    method takes `tenant_id`, None meaning every tenant; the stores do the joins in SQL."""

    def decisions(self, tenant_id: str | None) -> Iterable[Row]:
        """Every decision row with its entry, in storage order: (tenant_id, decision_id,
        record_json, seq, prev_hash, entry_hash), the entry's columns None when it has none."""
        ...

    def events(self, tenant_id: str | None) -> Iterable[Row]:
        """Every event row with its entry: (its decision's tenant_id, event_id, decision_id,
        at, type, data, seq, prev_hash, entry_hash)."""
        ...

    def orphans(self, tenant_id: str | None) -> Iterable[Row]:
        """Entries whose row is gone, or whose event now sits under another decision:
        (tenant_id, seq, decision_id, event_id, the event row's decision_id or None)."""
        ...

    def broken_links(self, tenant_id: str | None) -> Iterable[Row]:
        """Entries not linked to the entry before them (or, at seq 1, to genesis), in
        (tenant, seq) order: (tenant_id, seq, decision_id, prev_hash, previous entry's seq or
        None, previous entry's decision_id or None)."""
        ...

    def heads(self, tenant_id: str | None) -> Iterable[Row]:
        """Each tenant's last entry: (tenant_id, seq, entry_hash, decision_id)."""
        ...

    def entry_with_hash(self, tenant_id: str, entry_hash: bytes) -> tuple[int, str] | None:
        """(seq, decision_id) of the tenant's entry with this hash."""
        ...

    def entry_at(self, tenant_id: str, seq: int) -> bytes | None:
        """The hash of the tenant's entry at `seq`."""
        ...


class ChainStore(Protocol):
    def read_chain(self, fn: Callable[[ChainView], T]) -> T: ...

    def chain_entries(self, decision_id: str) -> list[Entry]: ...


class HeadError(LumynError):
    reason_code = "HEAD_INVALID"


@dataclass
class Problem:
    kind: str
    seq: int | None
    decision_id: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "decision_id": self.decision_id,
                "detail": self.detail}


@dataclass
class TenantChain:
    tenant_id: str
    count: int = 0
    head_hash: str = GENESIS.hex()
    last_decision_id: str | None = None
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def head(self) -> dict[str, Any]:
        """What `lumyn verify --head` publishes."""
        return {"tenant_id": self.tenant_id, "count": self.count, "hash": self.head_hash,
                "decision_id": self.last_decision_id, "at": utc_now()}

    def as_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "ok": self.ok, "count": self.count,
                "head_hash": self.head_hash,
                "problem": self.problem.as_dict() if self.problem else None}


@dataclass
class VerifyReport:
    tenants: list[TenantChain] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tenants)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "tenants": [t.as_dict() for t in self.tenants]}


def verify(store: ChainStore, tenant_id: str | None = None,
           against: list[dict[str, Any]] | None = None) -> VerifyReport:
    """Verify every tenant's chain (or one), optionally against published heads.

    The rows are read in storage order, each with its own entry (joined in SQL), and
    recomputed against it (`prev_hash` is in the entry, so order does not matter); the links
    between entries are checked by a self-join in SQL that returns only the broken ones. The
    first problem by chain position is reported per tenant."""
    heads = {h["tenant_id"]: h for h in against or []}

    def run(view: ChainView) -> VerifyReport:
        tenants: dict[str, _Tenant] = {}

        def of(name: str) -> _Tenant:
            found = tenants.get(name)
            if found is None:
                found = tenants[name] = _Tenant(name)
            return found

        for name, seq, entry_hash, decision_id in view.heads(tenant_id):
            of(name).head = (int(seq), bytes(entry_hash), decision_id)
        for name, seq, decision_id, prev_hash, prev_seq, prev_decision in view.broken_links(
                tenant_id):
            walk = of(name)
            if walk.link is None:
                walk.link = _broken_link(view, name, int(seq), decision_id, bytes(prev_hash),
                                         prev_seq, prev_decision)
        for name, seq, decision_id, event_id, moved_to in view.orphans(tenant_id):
            of(name).found(_orphan(int(seq), decision_id, event_id, moved_to))
        _check_decisions(view.decisions(tenant_id), of)
        _check_events(view.events(tenant_id), of)
        if tenant_id is not None:
            of(tenant_id)
        for published in heads:
            if tenant_id is None or published == tenant_id:
                of(published)
        report = VerifyReport()
        for name in sorted(tenants):
            chain = tenants[name].result()
            if chain.ok and name in heads:
                chain.problem = check_head(view, chain, heads[name])
            report.tenants.append(chain)
        return report

    return store.read_chain(run)


class _Tenant:
    """What verification found for one tenant."""

    __slots__ = ("head", "link", "rows", "tenant_id", "unchained")

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.head: tuple[int, bytes, str] | None = None  # the last entry: seq, hash, decision
        self.link: Problem | None = None  # the first broken link
        self.rows: Problem | None = None  # the row problem with the lowest position
        self.unchained: list[tuple[str, str | None]] = []

    def found(self, problem: Problem) -> None:
        if self.rows is None or (problem.seq or 0) < (self.rows.seq or 0):
            self.rows = problem

    def result(self) -> TenantChain:
        chain = TenantChain(self.tenant_id)
        problems = [p for p in (self.rows, self.link) if p is not None]
        if problems:
            chain.problem = min(problems, key=lambda p: p.seq or 0)
        elif self.unchained:
            decision_id, event_id = self.unchained[0]
            what = (f"event {event_id} of decision {decision_id}" if event_id
                    else f"decision {decision_id}")
            more = (f" (and {len(self.unchained) - 1} more row(s))"
                    if len(self.unchained) > 1 else "")
            chain.problem = Problem("inserted", None, decision_id,
                                    f"{what} was inserted: it is not in the chain{more}")
        if self.head is not None and chain.problem is None:
            chain.count, chain.head_hash = self.head[0], self.head[1].hex()
            chain.last_decision_id = self.head[2]
        return chain


def _check_decisions(rows: Iterable[Row], of: Callable[[str], _Tenant]) -> None:
    sha256, join = hashlib.sha256, b"".join
    for tenant, decision_id, record, seq, prev_hash, entry_hash in rows:
        if seq is None:
            of(tenant).unchained.append((decision_id, None))
        elif sha256(join((prev_hash, DECISION_PREFIX, record, DECISION_SUFFIX))).digest() \
                != entry_hash:
            of(tenant).found(Problem("edited", seq, decision_id,
                                     f"decision {decision_id} (entry {seq}) was edited: its row "
                                     "no longer matches its chain entry"))


def _check_events(rows: Iterable[Row], of: Callable[[str], _Tenant]) -> None:
    sha256 = hashlib.sha256
    for tenant, event_id, decision_id, at, event_type, data, seq, prev_hash, entry_hash in rows:
        name = tenant if tenant is not None else "(no tenant: its decision is gone)"
        if seq is None:
            of(name).unchained.append((decision_id, event_id))
        elif sha256(bytes(prev_hash) + event_row_bytes(decision_id, event_id, at, event_type,
                                                       bytes(data))).digest() != entry_hash:
            of(name).found(Problem("edited", seq, decision_id,
                                   f"event {event_id} of decision {decision_id} (entry {seq}) was "
                                   "edited: its row no longer matches its chain entry"))


def _orphan(seq: int, decision_id: str, event_id: str | None, moved_to: str | None) -> Problem:
    if event_id is None:
        return Problem("deleted", seq, decision_id,
                       f"decision {decision_id} (entry {seq}) was deleted")
    if moved_to is not None:
        return Problem("moved", seq, decision_id,
                       f"event {event_id} (entry {seq}) was moved from decision {decision_id} "
                       f"to decision {moved_to}")
    return Problem("deleted", seq, decision_id,
                   f"event {event_id} of decision {decision_id} (entry {seq}) was deleted")


def _broken_link(view: ChainView, tenant_id: str, seq: int, decision_id: str,
                 stored_prev: bytes, prev_seq: int | None, prev: str | None) -> Problem:
    """Entry `seq` is not chained onto entry seq-1: say which row that implicates."""
    if seq > 1 and prev_seq is None:
        return Problem("deleted", seq - 1, decision_id,
                       f"entry {seq - 1} is missing: chained rows were removed before decision "
                       f"{decision_id} (entry {seq})")
    found = view.entry_with_hash(tenant_id, stored_prev)
    if found is not None and found[0] == seq - 2 and seq > 1:
        return Problem("inserted", seq - 1, prev,
                       f"decision {prev} (entry {seq - 1}) was inserted: entry {seq} "
                       f"(decision {decision_id}) is chained past it to entry {seq - 2}")
    if found is not None:
        return Problem("reordered", seq, decision_id,
                       f"decision {decision_id} (entry {seq}) was moved: it is chained after "
                       f"entry {found[0]} (decision {found[1]}), not entry {seq - 1}")
    if seq == 1:
        return Problem("deleted", seq, decision_id,
                       f"the chain does not start at genesis: entries before decision "
                       f"{decision_id} were removed and the rest renumbered")
    return Problem("rewritten", seq - 1, prev,
                   f"entry {seq - 1} ({_named(prev)}) was rewritten: entry {seq} "
                   f"(decision {decision_id}) is chained to a hash it no longer has (its row "
                   "was edited and its hash recomputed, or an entry after it was removed)")


def _named(decision_id: str | None) -> str:
    return f"decision {decision_id}" if decision_id else "the start of the chain"


def check_head(view: ChainView, chain: TenantChain, head: dict[str, Any]) -> Problem | None:
    """Nothing up to a published head changed: the entry at its count still has its hash."""
    count, published = int(head["count"]), str(head["hash"])
    last = head.get("decision_id")
    if chain.count < count:
        return Problem("truncated", chain.count + 1, last,
                       f"the chain has {chain.count} entries but the published head "
                       f"({head.get('at')}) had {count}: entries {chain.count + 1}..{count} "
                       f"were removed, the last being decision {last}")
    found = view.entry_at(chain.tenant_id, count) if count > 0 else None
    if count > 0 and (found is None or found.hex() != published):
        return Problem("diverged", count, last,
                       f"entry {count} (decision {last}) no longer has the published hash "
                       f"{published[:16]}…: the chain up to the head ({head.get('at')}) was "
                       "rewritten")
    return None


def parse_heads(data: Any, source: str) -> list[dict[str, Any]]:
    """Heads from a HEAD_FILE: one head object, a list of them, or `verify --head --json`."""
    if isinstance(data, dict) and "heads" in data:
        data = data["heads"]
    heads = [data] if isinstance(data, dict) else data
    if not isinstance(heads, list) or not heads:
        raise HeadError(f"{source} holds no chain head", field="against")
    for head in heads:
        if not isinstance(head, dict):
            raise HeadError(f"{source}: a head must be an object", field="against")
        for name, kind in (("tenant_id", str), ("count", int), ("hash", str)):
            if not isinstance(head.get(name), kind):
                raise HeadError(f"{source}: head field '{name}' is missing or not a "
                                f"{kind.__name__}", field="against")
        try:
            if len(bytes.fromhex(head["hash"])) != 32:
                raise ValueError
        except ValueError:
            raise HeadError(f"{source}: head hash must be 64 hex digits",
                            field="against") from None
    return heads
