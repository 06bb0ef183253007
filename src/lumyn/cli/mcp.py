"""`lumyn mcp`: the MCP gateway command. Thin: read the settings and the map, then serve.

Over stdio, stdout belongs to the MCP protocol: nothing else is ever written there; problems
go to stderr as one line."""

from __future__ import annotations

import os

from lumyn.cli.common import CliError, ensure_writable, err_one_line, workspace_config


def cmd_mcp(map_path: str, command: list[str], url: str | None, listen: str | None,
            timeout: float, workspace: str, config_path: str | None) -> int:
    try:  # the mcp extra; imported here so the rest of the CLI never needs it
        import anyio
        from mcp import StdioServerParameters

        from lumyn.integrations.mcp_serve import GatewayStartError, parse_listen, serve
    except ImportError as exc:
        raise CliError("MCP_UNAVAILABLE", f"the MCP gateway needs the mcp extra ({exc}); "
                       "install it with pip install 'lumyn[mcp]'", field="mcp") from None
    from lumyn.integrations.mapfile import load_map
    from lumyn.sdk import Lumyn

    tool_map = load_map(map_path)
    if bool(command) == bool(url):
        raise CliError("USAGE_ERROR", "give the downstream MCP server as a command after -- "
                       "or as --url (exactly one of them)", field="--url" if url else "command")
    if timeout <= 0:
        raise CliError("USAGE_ERROR", "--timeout must be a positive number of seconds",
                       field="--timeout")
    address = None
    if listen is not None:
        try:
            address = parse_listen(listen)
        except ValueError as exc:
            raise CliError("USAGE_ERROR", str(exc), field="--listen") from None
    config = workspace_config(workspace, config_path)
    ensure_writable(config, workspace)
    if address is not None and not config.tenant_keys:
        err_one_line(f"WARNING: serving MCP on {address[0]}:{address[1]} without tenant keys: "
                     "anyone who can reach it can call the gated tools")
    # The downstream inherits this process's environment, as a client would have given it.
    target = url or StdioServerParameters(command=command[0], args=command[1:],
                                          env=dict(os.environ))
    with Lumyn(config) as lumyn:
        try:
            anyio.run(lambda: serve(lumyn, tool_map, target, listen=address,
                                    tenant_keys=config.tenant_keys, timeout=timeout))
        except GatewayStartError as exc:
            raise CliError("DOWNSTREAM_UNAVAILABLE",
                           f"could not start or reach the downstream MCP server: {exc}",
                           field="--url" if url else "command") from None
    return 0
