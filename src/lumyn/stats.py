"""Verdict mix over stored decisions, and a drift test between two windows.

Pure over what the store's keyset pages yield (`Store.decisions_page`): the CLI (`lumyn
stats`, `lumyn monitor`) only parses flags and prints. Time windows become decision-id bounds,
because a ULID starts with its creation time: a window is a primary-key range, no table scan.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from lumyn.contracts.ids import encode_time
from lumyn.engine.normalize import tenant_of
from lumyn.errors import LumynError
from lumyn.store.base import Store
from lumyn.store.scan import Scope

VERDICTS = ("TRUST", "QUERY", "ESCALATE", "ABSTAIN")
GROUPS = ("action_type", "tenant", "rule")


class StatsError(LumynError):
    reason_code = "INVALID_ARGUMENT"


def id_floor(moment: datetime) -> str:
    """The smallest ULID made at or after `moment` (to the millisecond)."""
    return encode_time(int(moment.timestamp() * 1000)) + "0" * 16


class Row(NamedTuple):
    """A stored decision as the counts need it."""

    decision_id: str
    tenant_id: str
    action_type: str
    verdict: str
    record: dict[str, Any]


def iter_decisions(
    store: Store, start: datetime, end: datetime | None = None, *, tenant_id: str | None = None,
    action_type: str | None = None, page: int = 1000,
) -> Iterator[Row]:
    """Every stored decision created in [start, end), oldest first, a keyset page at a time
    (`Store.decisions_page`). The window is an id range: the scan starts at the first id of
    `start` and stops at the first id of `end`, so it reads nothing outside it."""
    after = id_floor(start)[:-1]  # just below the floor, so ids made at exactly `start` count
    stop = id_floor(end) if end is not None else None
    scope = Scope(tenant_id=tenant_id, action_type=action_type)
    while True:
        rows = store.decisions_page(scope, after, page)
        for decision_id, record_json in rows:
            if stop is not None and decision_id >= stop:
                return
            record = orjson.loads(record_json)
            request = record.get("request", {})
            yield Row(decision_id, tenant_of(request), request.get("action", {}).get("type", ""),
                      record.get("verdict", ""), record)
        if len(rows) < page:
            return
        after = rows[-1][0]


@dataclass
class Mix:
    """Counts of one window: per verdict, per group and verdict, per hour and verdict."""

    by: str = "action_type"
    verdicts: Counter[str] = field(default_factory=Counter)
    groups: dict[str, Counter[str]] = field(default_factory=dict)
    hours: dict[str, Counter[str]] = field(default_factory=dict)
    reason_codes: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.verdicts.values())

    def add(self, row: Row) -> None:
        record = row.record
        verdict = row.verdict
        self.verdicts[verdict] += 1
        self.reason_codes.update(record.get("reason_codes", ()))
        hour = str(record.get("created_at", ""))[:13] + ":00Z"
        self.hours.setdefault(hour, Counter())[verdict] += 1
        for key in self._group_keys(row, record):
            self.groups.setdefault(key, Counter())[verdict] += 1

    def _group_keys(self, row: Row, record: dict[str, Any]) -> list[str]:
        if self.by == "tenant":
            return [row.tenant_id or "(none)"]
        if self.by == "rule":
            return [str(m.get("rule_id")) for m in record.get("matched_rules", ())] or ["(none)"]
        return [row.action_type]

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "verdicts": {v: self.verdicts.get(v, 0) for v in VERDICTS},
            "by": self.by,
            "groups": {k: dict(sorted(c.items())) for k, c in sorted(self.groups.items())},
            "hourly": [{"hour": h, **{v: c.get(v, 0) for v in VERDICTS}}
                       for h, c in sorted(self.hours.items())],
            "top_reason_codes": [{"reason_code": code, "count": n}
                                 for code, n in self.top_reason_codes()],
        }

    def top_reason_codes(self, n: int = 10) -> list[tuple[str, int]]:
        return sorted(self.reason_codes.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def collect(rows: Iterator[Row], by: str = "action_type") -> Mix:
    if by not in GROUPS:
        raise StatsError(f"--by must be one of {', '.join(GROUPS)}", field="--by")
    mix = Mix(by=by)
    for row in rows:
        mix.add(row)
    return mix


# -- drift ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """Chi-square test of homogeneity between the baseline's and the window's verdict mix."""

    baseline: dict[str, int]
    window: dict[str, int]
    statistic: float
    dof: int
    p_value: float
    max_shift: float  # the largest change in one verdict's share (0..1)
    drifted: bool
    note: str

    def as_json(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "window": self.window,
                "chi_square": round(self.statistic, 6), "dof": self.dof,
                "p_value": self.p_value, "max_share_shift": round(self.max_shift, 6),
                "drifted": self.drifted, "note": self.note}


def drift_test(baseline: Counter[str], window: Counter[str], *, alpha: float = 0.01,
               min_count: int = 30, min_shift: float = 0.05) -> Drift:
    """Flag drift when both windows hold at least `min_count` decisions, the chi-square test
    rejects "same verdict mix" at level `alpha`, and some verdict's share moved by at least
    `min_shift` (so that huge samples do not flag a negligible change)."""
    base = {v: baseline.get(v, 0) for v in VERDICTS}
    recent = {v: window.get(v, 0) for v in VERDICTS}
    nb, nw = sum(base.values()), sum(recent.values())
    if nb < min_count or nw < min_count:
        return Drift(base, recent, 0.0, 0, 1.0, 0.0, False,
                     f"not enough decisions to test (need {min_count} in each window; "
                     f"baseline {nb}, window {nw})")
    used = [v for v in VERDICTS if base[v] + recent[v] > 0]
    total = nb + nw
    statistic = 0.0
    for v in used:
        column = base[v] + recent[v]
        for observed, n in ((base[v], nb), (recent[v], nw)):
            expected = n * column / total
            statistic += (observed - expected) ** 2 / expected
    dof = len(used) - 1
    p_value = chi2_sf(statistic, dof) if dof > 0 else 1.0
    shift = max(abs(recent[v] / nw - base[v] / nb) for v in VERDICTS)
    drifted = p_value < alpha and shift >= min_shift
    note = (f"verdict mix changed (p={p_value:.2g} < {alpha}, largest share shift "
            f"{shift:.1%})" if drifted else "no significant change")
    return Drift(base, recent, statistic, dof, p_value, shift, drifted, note)


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square variable with integer `dof` degrees of freedom (closed form:
    a finite series for even dof, the same plus an erfc term for odd dof)."""
    if x <= 0:
        return 1.0
    half = x / 2.0
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, dof // 2):
            term *= half / k
            total += term
        return min(1.0, math.exp(-half) * total)
    total = math.erfc(math.sqrt(half))
    term = math.sqrt(half) * math.exp(-half) / math.gamma(1.5)
    for k in range(1, (dof + 1) // 2):
        total += term
        term *= half / (k + 0.5)
    return min(1.0, total)


def windows(now: datetime, baseline: timedelta, window: timedelta) -> tuple[datetime, datetime]:
    """(baseline start, window start): the baseline is the span just before the window."""
    window_start = now - window
    return window_start - baseline, window_start


def utc(moment: datetime | None = None) -> datetime:
    return (moment or datetime.now(UTC)).astimezone(UTC)
