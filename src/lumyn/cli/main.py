"""Entry point of the `lumyn` command (`lumyn = "lumyn.cli.main:main"`).

Startup matters: `lumyn --help` and `lumyn show ID` are answered here without loading the CLI
framework (Typer, which pulls in pydantic) or anything heavy (FastAPI, numpy, jsonschema);
every other command, and any unusual form of these two, goes to the Typer app. Both paths call
the same command functions (lumyn.cli.ops), so they behave identically.
"""

from __future__ import annotations

import sys

from lumyn.version import __version__


def _parse_show(args: list[str]) -> tuple[str, str, str | None] | None:
    """`show ID [--workspace DIR|-w DIR|--workspace=DIR] [--config FILE|--config=FILE]`,
    or None when the arguments need the full parser (help, unknown flags, …)."""
    from lumyn.cli.common import DEFAULT_WORKSPACE

    decision_id: str | None = None
    options = {"--workspace": DEFAULT_WORKSPACE, "--config": None}
    aliases = {"-w": "--workspace"}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        name = aliases.get(name, name)
        if name in options and eq and not arg.startswith("-w="):
            options[name] = value
        elif name in options and not eq and i + 1 < len(args):
            options[name] = args[i + 1]
            i += 1
        elif not arg.startswith("-") and decision_id is None:
            decision_id = arg
        else:
            return None
        i += 1
    if decision_id is None or not options["--workspace"]:
        return None
    return decision_id, str(options["--workspace"]), options["--config"]


GLOBAL_OPTIONS = ("--workspace", "-w", "--config")


def hoist_global_options(args: list[str]) -> list[str]:
    """`lumyn --workspace X show ID` -> `lumyn show ID --workspace X`: the workspace options
    may come before the command (and `policy validate`) as well as after it."""
    moved: list[str] = []
    i = 0
    while i < len(args):
        name, eq, _ = args[i].partition("=")
        if name not in GLOBAL_OPTIONS or (eq and name == "-w"):
            break
        width = 1 if eq else 2
        moved.extend(args[i:i + width])
        i += width
    if not moved or i >= len(args):
        return args
    rest = args[i:]
    command = 2 if rest[0] == "policy" and len(rest) > 1 and not rest[1].startswith("-") else 1
    return rest[:command] + moved + rest[command:]


def main(argv: list[str] | None = None) -> int:
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    if args and args[0].partition("=")[0] in GLOBAL_OPTIONS:  # the options, then no command
        sys.stderr.write(f"USAGE_ERROR: missing command after {args[0]}; see 'lumyn --help'\n")
        return 2
    if not args or args in (["--help"], ["-h"]):
        from lumyn.cli.catalog import fast_help

        sys.stdout.write(fast_help())
        return 0
    if args == ["--version"]:
        sys.stdout.write(f"lumyn {__version__}\n")
        return 0
    if args[0] == "show":
        parsed = _parse_show(args[1:])
        if parsed is not None:
            from lumyn.cli.common import guarded
            from lumyn.cli.ops import cmd_show

            return guarded(cmd_show, *parsed)

    from lumyn.cli.app import run_app

    return run_app(args)


if __name__ == "__main__":
    sys.exit(main())
