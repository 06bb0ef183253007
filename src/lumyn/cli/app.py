"""The Typer application: every `lumyn` command with its flags.

Each command is a thin wrapper over a function in ops/demo/doctor that returns an exit code;
`guarded` turns expected failures into one stderr line and exit code 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from lumyn.cli.catalog import APP_HELP, summary
from lumyn.cli.common import DEFAULT_WORKSPACE, guarded

app = typer.Typer(
    name="lumyn",
    help=APP_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
policy_app = typer.Typer(help="Policy tools.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(policy_app, name="policy", help=summary("policy"))
memory_app = typer.Typer(help="Experience Memory tools.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(memory_app, name="memory", help=summary("memory"))
keys_app = typer.Typer(help="Signing keys for decision packs.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(keys_app, name="keys", help=summary("keys"))

Workspace = Annotated[
    str, typer.Option("--workspace", "-w", help="Workspace directory (database + policy.yml).")
]
Config = Annotated[
    str | None,
    typer.Option("--config", help="TOML config file (also LUMYN_CONFIG_PATH)."),
]
DecisionId = Annotated[str, typer.Argument(help="The decision_id of a stored Decision Record.")]
WithChain = Annotated[bool, typer.Option("--chain", help="Add the evidence-chain entries (position "
                                         "and hash) of the decision and its events.")]


def _run(fn: Callable[..., int | None], *args: Any) -> None:
    code = guarded(fn, *args)
    if code:
        raise typer.Exit(code)


@app.command(help=summary("init"))
def init(
    workspace: Workspace = DEFAULT_WORKSPACE,
    policy_template: Annotated[
        str | None,
        typer.Option("--policy-template", help="Bundled pack (support, account, billing) or a "
                     "path, e.g. policies/packs/lumyn-account.v0.yml. Default: support."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing policy.yml.")] = False,
    config: Config = None,
) -> None:
    from lumyn.cli.ops import cmd_init

    _run(cmd_init, workspace, policy_template, force, config)


@app.command(help=summary("demo"))
def demo(
    story: Annotated[bool, typer.Option("--story", help="Trust -> label failure -> similar request "
                                        "escalated, side by side.")] = False,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.demo import cmd_demo

    _run(cmd_demo, story, workspace, config)


@app.command(help=summary("decide"))
def decide(
    input_path: Annotated[str, typer.Option("--in", help="DecisionRequest JSON file, or - for stdin.")],
    out: Annotated[str | None, typer.Option("--out", help="Write the record here instead of "
                                            "stdout.")] = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.ops import cmd_decide

    _run(cmd_decide, input_path, out, workspace, config)


@app.command(help=summary("show"))
def show(decision_id: DecisionId, workspace: Workspace = DEFAULT_WORKSPACE,
         config: Config = None, chain: WithChain = False) -> None:
    from lumyn.cli.ops import cmd_show

    _run(cmd_show, decision_id, workspace, config, chain)


@app.command(help=summary("explain"))
def explain(
    decision_id: DecisionId,
    markdown: Annotated[bool, typer.Option("--markdown", help="Markdown, ready for a ticket.")] = False,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.ops import cmd_explain

    _run(cmd_explain, decision_id, markdown, workspace, config)


@app.command(help=summary("export"))
def export(
    decision_id: DecisionId,
    pack: Annotated[bool, typer.Option("--pack", help="Write a zip decision pack (record, request, "
                                       "policy, memory, manifest).")] = False,
    out: Annotated[str | None, typer.Option("--out", help="Output file (pack default: "
                                            "decision_pack_<id>.zip).")] = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
    sign: Annotated[str | None, typer.Option("--sign", help="Sign the pack's manifest with this "
                                             "Ed25519 private key (lumyn keys generate).")] = None,
    chain: WithChain = False,
) -> None:
    from lumyn.cli.ops import cmd_export

    _run(cmd_export, decision_id, pack, out, workspace, config, sign, chain)


@app.command(help=summary("replay"))
def replay(
    pack: Annotated[str, typer.Argument(help="A decision pack zip from `lumyn export --pack`.")],
    markdown: Annotated[bool, typer.Option("--markdown", help="Incident-ready Markdown summary.")] = False,
    policy: Annotated[str | None, typer.Option("--policy", help="What would this policy file have "
                                               "decided? Shows the difference; exit 0.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="The replay report as JSON.")] = False,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
    verify_key: Annotated[str | None, typer.Option(
        "--verify-key", help="Require a signature by this public key, or by any .pub key in "
        "this directory.")] = None,
) -> None:
    from lumyn.cli.ops import cmd_replay

    _run(cmd_replay, pack, markdown, policy, json_output, workspace, config, verify_key)


@app.command(help=summary("label"))
def label(
    decision_id: DecisionId,
    label: Annotated[str, typer.Option("--label", help="failure, success or near_miss.")],
    summary_text: Annotated[str | None, typer.Option("--summary", help="What happened.")] = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.ops import cmd_label

    _run(cmd_label, decision_id, label, summary_text, workspace, config)


@policy_app.command("validate", help="Validate a policy: every error located (exit 1), then "
                   "warnings (exit 0 unless --strict).")
def policy_validate(
    path: Annotated[str | None, typer.Option("--path", help="Policy file (default: the "
                                             "workspace's policy.yml).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Every problem as a JSON object "
                                              "(severity, rule_id, key, line, message).")] = False,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.ops import cmd_policy_validate

    _run(cmd_policy_validate, path, workspace, config, strict, json_output)


@policy_app.command("test", help="Run policy test cases (YAML/JSON) in memory; prints failures "
                   "and the rules no case matched. Exit 1 on any failure.")
def policy_test(
    directory: Annotated[str | None, typer.Argument(
        help="Case folder (default: tests/ beside the policy, else WORKSPACE/tests).")] = None,
    path: Annotated[str | None, typer.Option("--path", help="Policy file (default: the "
                                             "workspace's policy.yml).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="{passed, failed, failures, "
                                              "uncovered_rules} as JSON.")] = False,
    junit: Annotated[str | None, typer.Option("--junit", help="Also write JUnit XML here.")] = None,
    min_coverage: Annotated[float | None, typer.Option(
        "--min-coverage", min=0, max=100,
        help="Fail when fewer than N percent of the rules are matched by some case.")] = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.changes import cmd_policy_test

    _run(cmd_policy_test, directory, path, json_output, junit, min_coverage, workspace, config)


@app.command(help=summary("diff"))
def diff(
    policy: Annotated[str | None, typer.Option("--policy", help="Candidate policy: re-evaluate "
                                               "stored decisions under it (backtest).")] = None,
    shadow: Annotated[bool, typer.Option("--shadow", help="Summarise live vs shadow verdicts "
                                         "recorded in shadow mode (no re-evaluation).")] = False,
    since: Annotated[str | None, typer.Option("--since", help="Only decisions since: 7d, 12h, "
                                              "30m, 2w or an RFC 3339 date/time.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    action_type: Annotated[str | None, typer.Option("--action-type",
                                                    help="Only this action type.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="The report as JSON, with every "
                                              "changed decision.")] = False,
    fail_on_change: Annotated[bool, typer.Option("--fail-on-change",
                                                 help="Exit 1 when any verdict changes.")] = False,
    fail_on_loosen: Annotated[bool, typer.Option(
        "--fail-on-loosen", help="Exit 1 when a decision would become more permissive.")] = False,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.changes import cmd_diff

    _run(cmd_diff, policy, shadow, since, tenant, action_type, json_output, fail_on_change,
         fail_on_loosen, workspace, config)


@memory_app.command("prune", help="Retire memory items older than a period from similarity "
                    "(items and events stay stored).")
def memory_prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Age in days, e.g. 365d.")],
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's items "
                                               "(default: every tenant).")] = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.ops import cmd_memory_prune

    _run(cmd_memory_prune, older_than, tenant, workspace, config)
@app.command(help=summary("verify"))
def verify(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's chain.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="The report (or heads) as JSON.")] = False,
    head: Annotated[bool, typer.Option("--head", help="Print each intact chain's head (tenant, "
                                       "count, hash, time) to publish elsewhere.")] = False,
    against: Annotated[str | None, typer.Option(
        "--against", help="A head file (from --head --json): prove nothing before it changed.")
    ] = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
    pack: Annotated[str | None, typer.Option(
        "--pack", help="Also check that this pack's chain entries are the store's (with "
        "--against: covered by that head).")] = None,
) -> None:
    from lumyn.cli.integrity import cmd_verify

    _run(cmd_verify, tenant, json_output, head, against, workspace, config, pack)


@keys_app.command("generate", help="Write a new Ed25519 key pair (owner-only files) to --out DIR.")
def keys_generate(
    out: Annotated[str, typer.Option("--out", help="Directory for the key pair.")],
) -> None:
    from lumyn.cli.integrity import cmd_keys_generate

    _run(cmd_keys_generate, out)


@app.command(help=summary("doctor"))
def doctor(
    fix: Annotated[bool, typer.Option("--fix", help="Create a missing workspace, policy.yml, "
                                      "database or tables.")] = False,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.doctor import cmd_doctor

    _run(cmd_doctor, fix, workspace, config)


def _checked_host(value: str) -> str:
    from lumyn.cli.ops import host_problem

    problem = host_problem(value)
    if problem:
        raise typer.BadParameter(problem)
    return value


@app.command(help=summary("serve"))
def serve(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the effective configuration "
                                          "as JSON and exit.")] = False,
    host: Annotated[str, typer.Option("--host", help="Interface to bind (IP address or host "
                                      "name).", callback=_checked_host)] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (1-65535).",
                                      min=1, max=65535)] = 8000,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.ops import cmd_serve

    _run(cmd_serve, dry_run, host, port, workspace, config)


@app.command(
    help=summary("mcp"),
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def mcp(
    ctx: typer.Context,
    map_path: Annotated[str, typer.Option("--map", help="The tool map (YAML): which tool calls "
                                          "are decided, and how.")],
    url: Annotated[str | None, typer.Option("--url", help="A downstream server over Streamable "
                                            "HTTP, instead of a command after --.")] = None,
    listen: Annotated[str | None, typer.Option("--listen", help="Serve Streamable HTTP on "
                                               "HOST:PORT (tenant keys apply) instead of stdio.")]
    = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the downstream "
                                           "server's answer to one call.")] = 60.0,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    """lumyn mcp --map tools.yml -- <server command> [args...]"""
    from lumyn.cli.mcp import cmd_mcp

    _run(cmd_mcp, map_path, list(ctx.args), url, listen, timeout, workspace, config)


@app.command(help=summary("stats"))
def stats(
    since: Annotated[str, typer.Option("--since", help="How far back: 30m, 24h, 7d.")] = "24h",
    by: Annotated[str, typer.Option("--by", help="Group by action_type, tenant or rule.")] = (
        "action_type"),
    baseline: Annotated[str | None, typer.Option("--baseline", help="Drift test: compare the "
                                                 "last --window with this span before it.")] = None,
    window: Annotated[str, typer.Option("--window", help="The recent span of the drift "
                                        "test.")] = "1h",
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help="Exit 1 when drift "
                                                "is flagged.")] = False,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    action_type: Annotated[str | None, typer.Option("--action-type", help="Only this action "
                                                    "type.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.stats import cmd_stats

    _run(cmd_stats, since, by, baseline, window, json_output, fail_on_drift, tenant, action_type,
         workspace, config)


@app.command(help=summary("monitor"))
def monitor(
    since: Annotated[str, typer.Option("--since", help="Start with decisions this recent.")] = "5m",
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls.")] = 0.5,
    duration: Annotated[float | None, typer.Option("--duration", help="Stop after this many "
                                                   "seconds (default: until Ctrl-C).")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per decision.")] = False,
    workspace: Workspace = DEFAULT_WORKSPACE,
    config: Config = None,
) -> None:
    from lumyn.cli.stats import cmd_monitor

    _run(cmd_monitor, since, interval, duration, json_output, tenant, workspace, config)


def run_app(args: list[str], prog_name: str = "lumyn") -> int:
    try:
        # Non-standalone so usage errors come back to us and print as one line.
        result = app(args=args, prog_name=prog_name, standalone_mode=False)
    except typer.Abort:
        typer.echo("ABORTED: interrupted", err=True)
        return 130
    except typer.TyperException as exc:  # typer's (vendored) click usage errors
        param = getattr(exc, "param", None)
        opts = getattr(param, "opts", None)
        field = f" (field {opts[0] if opts else param.name})" if param is not None else ""
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        message = " ".join(str(message).split())
        typer.echo(f"USAGE_ERROR: {message}{field}; see 'lumyn --help'", err=True)
        code = getattr(exc, "exit_code", 2)
        return code if isinstance(code, int) else 2
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        typer.echo(str(exc.code), err=True)
        return 1
    return result if isinstance(result, int) else 0
