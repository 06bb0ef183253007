"""Keyset pages over stored decisions, for scans that must stay flat in memory (backtests,
shadow summaries): each page is one short query ordered by decision_id (a ULID, so time
order), resuming after the last id seen. No cursor or transaction stays open between pages,
so a long scan never holds back SQLite checkpoints or a PostgreSQL vacuum."""

from __future__ import annotations

from typing import Any, NamedTuple


class Scope(NamedTuple):
    """Which decisions a scan covers; None means no limit."""

    since: str | None = None  # created_at lower bound (RFC 3339, compared as text)
    tenant_id: str | None = None
    action_type: str | None = None

    def values(self) -> list[str]:
        return [v for v in self if v is not None]


def scan_where(scope: Scope, mark: str, after_id: str | None = None) -> tuple[str, list[Any]]:
    """The WHERE clause (with `mark` as the placeholder) and its parameters."""
    terms, params = [], []
    for column, value in (("created_at >=", scope.since), ("tenant_id =", scope.tenant_id),
                          ("action_type =", scope.action_type), ("decision_id >", after_id)):
        if value is not None:
            terms.append(f"{column} {mark}")
            params.append(value)
    return (" WHERE " + " AND ".join(terms)) if terms else "", params
