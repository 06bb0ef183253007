"""Commands for changing a policy safely: `policy test` and `diff` (backtest, shadow summary).

Thin: lumyn.policytest and lumyn.backtest do the work and return reports; this module reads
the flags, prints and picks the exit code.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumyn.cli.common import (
    DEFAULT_WORKSPACE,
    CliError,
    emit_json,
    err,
    out,
    policy_target,
    write_file,
)

if TYPE_CHECKING:
    from lumyn.backtest import Change, DiffReport

# -- policy test --------------------------------------------------------------------------------


def default_case_dir(policy_path: Path, policy_id: str, workspace: str) -> Path:
    """`tests/<policy_id>/` or `tests/` beside the policy (the bundled packs keep their cases
    in `tests/<policy_id>/`), else the workspace's `tests/`."""
    beside = policy_path.parent / "tests"
    for candidate in (beside / policy_id, beside):
        if candidate.is_dir():
            return candidate
    return Path(workspace or DEFAULT_WORKSPACE) / "tests"


def copy_template_cases(template: Path, policy_id: str, workspace: Path) -> str | None:
    """Give a new workspace the template's test cases (`tests/<policy_id>/` beside it, as the
    bundled packs keep theirs) unless it has a tests/ folder already."""
    source, dest = template.parent / "tests" / policy_id, workspace / "tests"
    if not source.is_dir() or dest.exists():
        return None
    try:
        shutil.copytree(source, dest)
    except OSError as exc:
        raise CliError("WORKSPACE_UNWRITABLE", f"cannot create {dest}: {exc.strerror or exc}",
                       field="workspace") from None
    count = sum(1 for p in dest.rglob("*") if p.is_file())
    return f"created {dest} ({count} case files; run `lumyn policy test`)"


def cmd_policy_test(directory: str | None, path: str | None, as_json: bool, junit: str | None,
                    min_coverage: float | None, workspace: str, config_path: str | None) -> int:
    from lumyn.policy import load_policy
    from lumyn.policytest import case_files, junit_xml, run_cases

    target = policy_target(path, workspace, config_path)
    policy = load_policy(target)
    folder = Path(directory) if directory else default_case_dir(target, policy.policy_id, workspace)
    if not folder.is_dir():
        raise CliError("CASES_NOT_FOUND", f"no case folder {folder}; pass DIR or create it "
                       "(YAML or JSON files, one case or a list each)", field="DIR")
    files = case_files(folder)
    if not files:
        raise CliError("CASES_NOT_FOUND", f"{folder} holds no .yml, .yaml or .json case files",
                       field="DIR")
    report = run_cases(policy, files)
    if junit:
        write_file(junit, junit_xml(report), field="--junit")
    short = min_coverage is not None and report.coverage < min_coverage
    if as_json:
        emit_json(report.as_dict())
    else:
        for failure in report.failures:
            out(f"FAIL {failure.name} ({failure.source}): {'; '.join(failure.problems)}")
        total, uncovered = len(report.rule_ids), report.uncovered_rules
        out(f"{len(report.results) - len(report.failures)} passed, {len(report.failures)} failed "
            f"({policy.policy_id} {policy.policy_version}, {folder}); rule coverage "
            f"{report.coverage}% ({total - len(uncovered)}/{total})")
        if uncovered:
            out(f"rules no case matched: {', '.join(uncovered)}")
    if short:
        err(f"rule coverage {report.coverage}% is below --min-coverage {min_coverage:g}")
    return 1 if report.failures or short else 0


# -- diff -----------------------------------------------------------------------------------------

PROGRESS_OVER = 2000  # decisions: smaller scans finish before a bar would be worth drawing


def cmd_diff(candidate: str | None, shadow: bool, since: str | None, tenant: str | None,
             action_type: str | None, as_json: bool, fail_on_change: bool, fail_on_loosen: bool,
             workspace: str, config_path: str | None) -> int:
    from lumyn.backtest import backtest, shadow_diff, since_bound
    from lumyn.cli.common import open_existing_store, workspace_config
    from lumyn.policy import PolicyInvalid, load_policy
    from lumyn.store.scan import Scope

    if shadow == (candidate is not None):
        raise CliError("USAGE_ERROR", "give either --policy CANDIDATE (backtest) or --shadow "
                       "(summarise shadow-mode records)", field="--policy")
    scope = Scope(since_bound(since), tenant, action_type)
    policy = None
    if candidate is not None:
        try:
            policy = load_policy(candidate)
        except PolicyInvalid as exc:
            for line in exc.lines():
                err(" ".join(line.split()))
            return 1
    config = workspace_config(workspace, config_path)
    store = open_existing_store(config, workspace)
    try:
        on_change, finish = _json_stream() if as_json else (None, None)
        with _progress(store, scope, enabled=not as_json) as advance:
            if policy is not None:
                report = backtest(store, policy, scope, on_change=on_change, on_progress=advance)
            else:
                report = shadow_diff(store, scope, on_change=on_change, on_progress=advance)
    finally:
        store.close()
    if finish is not None:
        finish(report.as_dict())
    else:
        _print_report(report)
    if fail_on_change and report.changed:
        err(f"{report.changed} decision(s) would change verdict (--fail-on-change)")
        return 1
    if fail_on_loosen and report.loosened:
        err(f"{report.loosened} decision(s) would become more permissive (--fail-on-loosen)")
        return 1
    return 0


def _json_stream() -> tuple[Callable[[Change], None], Callable[[dict[str, Any]], None]]:
    """Changed decisions are written as they are found, so memory stays flat: the output is
    one JSON object whose `changes` list comes first and the summary keys after it."""
    first = [True]
    sys.stdout.write('{"changes": [')

    def on_change(change: Change) -> None:
        sys.stdout.write(("\n  " if first[0] else ",\n  ") + json.dumps(change.as_dict()))
        first[0] = False

    def finish(summary: dict[str, Any]) -> None:
        rest = json.dumps(summary, indent=2)[1:]  # the summary's keys, after `changes`
        sys.stdout.write("\n],\n" + rest.lstrip("\n") + "\n")

    return on_change, finish


@contextlib.contextmanager
def _progress(store: Any, scope: Any, *, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A Rich progress bar on stderr, only when both outputs are a terminal and the scan is
    long enough to be worth one."""
    if not (enabled and sys.stdout.isatty() and sys.stderr.isatty()):
        yield None
        return
    total = store.count_decisions(scope)
    if total < PROGRESS_OVER:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed or 0:,.0f} decisions/s")

    with Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), Rate(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("scan", total=total)
        yield lambda n: bar.advance(task, n)


def _print_report(report: DiffReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    if report.mode == "backtest" and report.candidate:
        candidate = report.candidate
        what = (f"candidate {candidate['policy_id']} {candidate['policy_version']} "
                f"({candidate['policy_hash'][:19]}…)")
        out(f"Backtest of {what} over {report.scanned} stored decision(s){_scope_text(report)}")
    else:
        out(f"Shadow verdicts in {report.compared} of {report.scanned} stored decision(s)"
            f"{_scope_text(report)}; shadow policies: {', '.join(sorted(report.policies)) or 'none'}")
    out(f"{report.changed} would change verdict ({report.loosened} more permissive, "
        f"{report.tightened} stricter); {report.reason_codes_only} keep the verdict with other "
        "reason codes")
    if not report.transitions:
        return
    table = Table(title="Verdict transitions", show_lines=True)
    for column in ("from → to", "decisions", "rules deciding now", "rules no longer matching",
                   "reason codes + / −", "examples"):
        table.add_column(column, overflow="fold")
    for (old, new), t in sorted(report.transitions.items(), key=lambda kv: -kv[1].count):
        codes = "\n".join([f"+{c} ({n})" for c, n in t.reason_codes_added.most_common()]
                          + [f"−{c} ({n})" for c, n in t.reason_codes_removed.most_common()])
        table.add_row(f"{old} → {new}", str(t.count), _counts(t.rules),
                      _counts(t.rules_no_longer_matching), codes, "\n".join(t.examples))
    console.print(table)


def _counts(counter: Counter[str]) -> str:
    return "\n".join(f"{name} ({n})" for name, n in counter.most_common()) or "-"


def _scope_text(report: DiffReport) -> str:
    parts = [f"{name} {value}" for name, value in report.scope._asdict().items() if value]
    return f" ({', '.join(parts)})" if parts else ""
