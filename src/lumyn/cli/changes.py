"""Commands for changing a policy safely: `policy test` and `diff` (backtest, shadow summary).

Thin: lumyn.policytest and lumyn.backtest do the work and return reports; this module reads
the flags, prints and picks the exit code.
"""

from __future__ import annotations

from pathlib import Path

from lumyn.cli.common import (
    DEFAULT_WORKSPACE,
    CliError,
    emit_json,
    err,
    out,
    write_file,
)
from lumyn.cli.ops import policy_target

# -- policy test --------------------------------------------------------------------------------


def default_case_dir(policy_path: Path, policy_id: str, workspace: str) -> Path:
    """`tests/<policy_id>/` or `tests/` beside the policy (the bundled packs keep their cases
    in `tests/<policy_id>/`), else the workspace's `tests/`."""
    beside = policy_path.parent / "tests"
    for candidate in (beside / policy_id, beside):
        if candidate.is_dir():
            return candidate
    return Path(workspace or DEFAULT_WORKSPACE) / "tests"


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
