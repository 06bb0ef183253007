"""The command list, shared by the Typer app and the fast `lumyn --help` (no imports)."""

from __future__ import annotations

# (name, one-line summary), in the order `lumyn --help` lists them.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("init", "Create a workspace: SQLite database + starter policy (policy.yml)."),
    ("demo", "Emit a few real Decision Records as JSON; --story shows compounding memory."),
    ("decide", "Decide a DecisionRequest (--in FILE or -) and print the Decision Record."),
    ("show", "Print a stored Decision Record (with its event log) as JSON."),
    ("explain", "Explain a decision for humans: rules, evidence, memory, digests."),
    ("export", "Print a record as JSON, or write a replayable decision pack (--pack)."),
    ("replay", "Verify a decision pack and re-evaluate it; non-zero exit on any difference."),
    ("label", "Label a decision's outcome (failure|success|near_miss); feeds memory."),
    ("memory", "Experience Memory tools: `lumyn memory prune --older-than 365d`."),
    ("verify", "Verify the evidence chain over every decision and event; --head to publish."),
    ("keys", "Signing keys for decision packs: `lumyn keys generate --out DIR`."),
    ("policy", "Policy tools: `lumyn policy validate` (--strict, --json), `lumyn policy test`."),
    ("diff", "What would a candidate policy change? Backtest stored decisions (--policy) or "
             "summarise shadow mode (--shadow)."),
    ("doctor", "Check Python, workspace, database, policy and permissions; --fix repairs."),
    ("serve", "Run the HTTP service (FastAPI); --dry-run prints the effective config."),
    ("mcp", "MCP gateway: decide on an agent's tool calls before a downstream MCP server runs them."),
    ("stats", "Verdict mix, top reasons and an hourly chart; --baseline tests for drift."),
    ("monitor", "Live view of decisions as they are written, with counts per verdict."),
)

APP_HELP = (
    "Lumyn: deterministic decision gateway with durable, replayable Decision Records.\n\n"
    "decide -> record -> export -> replay"
)


def fast_help(prog: str = "lumyn") -> str:
    """The top-level help, printed without loading the CLI framework."""
    width = max(len(name) for name, _ in COMMANDS)
    lines = [
        f"Usage: {prog} COMMAND [ARGS]...",
        "",
        APP_HELP,
        "",
        "Commands:",
        *(f"  {name.ljust(width)}  {summary}" for name, summary in COMMANDS),
        "",
        "Workspace commands take --workspace DIR (default .lumyn) and --config FILE (TOML).",
        "Environment: LUMYN_STORAGE_URL, LUMYN_POLICY_PATH, LUMYN_SHADOW_POLICY_PATH, LUMYN_MODE,",
        "LUMYN_REDACTION_PROFILE, LUMYN_TOP_K, LUMYN_SIGNING_SECRET, LUMYN_CONFIG_PATH.",
        "",
        f"Run '{prog} COMMAND --help' for a command's options.",
        "Quickstart: lumyn doctor --fix && lumyn demo --story",
    ]
    return "\n".join(lines) + "\n"


def summary(name: str) -> str:
    return dict(COMMANDS)[name]
