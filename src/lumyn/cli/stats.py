"""`lumyn stats` and `lumyn monitor`: the verdict mix of stored decisions, drift, a live tail.

Thin: flags → lumyn.stats (pure counting and the drift test) over the store's keyset scan →
Rich tables, or JSON.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from datetime import datetime, timedelta
from typing import Any

import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lumyn import stats
from lumyn.cli.common import emit_json, open_existing_store, workspace_config
from lumyn.durations import parse_duration
from lumyn.store.base import Store

STYLE = {"TRUST": "green", "QUERY": "cyan", "ESCALATE": "yellow", "ABSTAIN": "red"}
CHART_WIDTH = 40


def cmd_stats(since: str, by: str, baseline: str | None, window: str, json_output: bool,
              fail_on_drift: bool, tenant: str | None, action_type: str | None, workspace: str,
              config_path: str | None) -> int:
    span = parse_duration(since, field="--since")
    recent = parse_duration(window, field="--window")
    base_span = parse_duration(baseline, field="--baseline") if baseline else None
    if by not in stats.GROUPS:
        raise stats.StatsError(f"--by must be one of {', '.join(stats.GROUPS)}", field="--by")
    now = stats.utc()
    store = open_existing_store(workspace_config(workspace, config_path), workspace)
    try:
        mix = stats.collect(stats.iter_decisions(store, now - span, tenant_id=tenant,
                                                 action_type=action_type), by)
        drift = None
        if base_span is not None:
            base_start, window_start = stats.windows(now, base_span, recent)
            counts = [stats.collect(stats.iter_decisions(store, start, end, tenant_id=tenant,
                                                         action_type=action_type)).verdicts
                      for start, end in ((base_start, window_start), (window_start, now))]
            drift = stats.drift_test(counts[0], counts[1])
    finally:
        store.close()
    if json_output:
        emit_json({"since": _iso(now - span), "until": _iso(now), **mix.as_json(),
                   "latency": None, "drift": drift.as_json() if drift else None})
    else:
        _print_stats(Console(), mix, since, drift, baseline, window)
    return 1 if fail_on_drift and drift is not None and drift.drifted else 0


def _print_stats(console: Console, mix: stats.Mix, since: str, drift: stats.Drift | None,
                 baseline: str | None, window: str) -> None:
    console.print(f"[bold]{mix.total}[/] decisions in the last {since}")
    if not mix.total:
        return
    table = Table(title="Verdict mix", title_justify="left")
    table.add_column("verdict")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for verdict in stats.VERDICTS:
        n = mix.verdicts.get(verdict, 0)
        table.add_row(Text(verdict, style=STYLE[verdict]), str(n), f"{n / mix.total:.1%}")
    console.print(table)

    groups = Table(title=f"By {mix.by}", title_justify="left")
    groups.add_column(mix.by)
    for verdict in stats.VERDICTS:
        groups.add_column(verdict, justify="right", style=STYLE[verdict])
    groups.add_column("total", justify="right")
    for key, counts in sorted(mix.groups.items(), key=lambda kv: -sum(kv[1].values())):
        groups.add_row(key, *(str(counts.get(v, 0)) for v in stats.VERDICTS),
                       str(sum(counts.values())))
    console.print(groups)

    codes = Table(title="Top reason codes", title_justify="left")
    codes.add_column("reason code")
    codes.add_column("count", justify="right")
    for code, n in mix.top_reason_codes():
        codes.add_row(code, str(n))
    console.print(codes)

    console.print(Text("Verdict mix per hour (UTC)", style="italic"))
    for hour, counts in sorted(mix.hours.items()):
        console.print(Text.assemble(f"{hour[5:16].replace('T', ' ')} ", chart_bar(counts),
                                    f" {sum(counts.values())}"))
    console.print(Text.assemble("legend: ", *((f"█ {v}  ", STYLE[v]) for v in stats.VERDICTS)))
    console.print("latency: not stored in Decision Records; see lumyn_decide_seconds at "
                  "/metrics of `lumyn serve`", style="dim")
    if drift is not None:
        style = "bold red" if drift.drifted else "green"
        console.print(Text(f"Drift (last {window} vs the {baseline} before): {drift.note}",
                           style=style))
        if drift.dof:
            console.print(f"  chi-square {drift.statistic:.2f}, dof {drift.dof}, "
                          f"p {drift.p_value:.3g}; baseline {drift.baseline}, window {drift.window}")


def chart_bar(counts: Counter[str], width: int = CHART_WIDTH) -> Text:
    """One stacked bar: each verdict's share of `width` cells, in its colour."""
    total = sum(counts.values()) or 1
    bar = Text()
    used = 0
    for i, verdict in enumerate(stats.VERDICTS):
        last = i == len(stats.VERDICTS) - 1
        cells = width - used if last else round(width * counts.get(verdict, 0) / total)
        cells = max(0, min(cells, width - used)) if counts.get(verdict, 0) else 0
        bar.append("█" * cells, style=STYLE[verdict])
        used += cells
    return bar


# -- monitor ------------------------------------------------------------------------------------

LOOKBACK = timedelta(seconds=5)  # re-read this far back: commits can land out of id order


def cmd_monitor(since: str, interval: float, duration: float | None, json_output: bool,
                tenant: str | None, workspace: str, config_path: str | None) -> int:
    start = stats.utc() - parse_duration(since, field="--since")
    if not 0.05 <= interval <= 60:
        raise stats.StatsError("--interval must be between 0.05 and 60 seconds", field="--interval")
    store = open_existing_store(workspace_config(workspace, config_path), workspace)
    tail = Tail(store, start, tenant)
    live = sys.stdout.isatty() and not json_output
    deadline = None if duration is None else time.monotonic() + duration
    try:
        if live:
            with Live(tail.view(), refresh_per_second=4, console=Console()) as screen:
                while _more(deadline):
                    tail.poll()
                    screen.update(tail.view())
                    time.sleep(interval)
        else:
            while _more(deadline):
                for row, record in tail.poll():
                    _print_line(row, record, json_output)
                sys.stdout.flush()
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    if not live and not json_output:
        print(tail.summary())
    return 0


def _more(deadline: float | None) -> bool:
    return deadline is None or time.monotonic() < deadline


class Tail:
    """New decisions since the last poll, each once, counts kept per verdict."""

    def __init__(self, store: Store, start: datetime, tenant: str | None) -> None:
        self.store = store
        self.tenant = tenant
        self.cursor = start
        self.seen: dict[str, datetime] = {}
        self.counts: Counter[str] = Counter()
        self.latest: deque[tuple[stats.Row, dict[str, Any]]] = deque(maxlen=15)

    def poll(self) -> list[tuple[stats.Row, dict[str, Any]]]:
        now = stats.utc()
        fresh = []
        for row in stats.iter_decisions(self.store, self.cursor - LOOKBACK, tenant_id=self.tenant):
            if row.decision_id in self.seen:
                continue
            self.seen[row.decision_id] = now
            record = row.record
            self.counts[row.verdict] += 1
            self.latest.appendleft((row, record))
            fresh.append((row, record))
        self.cursor = max(self.cursor, now - LOOKBACK)
        horizon = now - 2 * LOOKBACK
        for decision_id in [d for d, at in self.seen.items() if at < horizon]:
            del self.seen[decision_id]
        return fresh

    def summary(self) -> str:
        total = sum(self.counts.values())
        parts = ", ".join(f"{v} {self.counts.get(v, 0)}" for v in stats.VERDICTS)
        return f"{total} decisions seen ({parts})"

    def view(self) -> Table:
        table = Table(title=self.summary(), title_justify="left")
        for column in ("created_at", "decision_id", "tenant", "action_type", "verdict",
                       "reason codes"):
            table.add_column(column)
        for row, record in self.latest:
            table.add_row(str(record.get("created_at", "")), row.decision_id, row.tenant_id,
                          row.action_type, Text(row.verdict, style=STYLE.get(row.verdict, "")),
                          ", ".join(record.get("reason_codes", ())))
        return table


def _print_line(row: stats.Row, record: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print(orjson.dumps({"decision_id": row.decision_id, "created_at": record.get("created_at"),
                            "tenant_id": row.tenant_id, "action_type": row.action_type,
                            "verdict": row.verdict,
                            "reason_codes": record.get("reason_codes", [])}).decode())
    else:
        print(f"{record.get('created_at', '')} {row.decision_id} {row.tenant_id or '-'} "
              f"{row.action_type} {row.verdict} {','.join(record.get('reason_codes', ()))}")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
