"""A real downstream MCP server for the gateway tests (the SDK's MCPServer).

Every tool call is appended to the file named by DOWNSTREAM_CALLS (one JSON line: tool and
arguments), so a test can count what reached it, across restarts. `--http PORT` serves
Streamable HTTP instead of stdio.
"""

from __future__ import annotations

import json
import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("orders-downstream", instructions="Order tools for the gateway tests.")


def _log_call(tool: str, **arguments: object) -> None:
    path = os.environ.get("DOWNSTREAM_CALLS")
    if path:
        with open(path, "a", encoding="utf-8") as calls:
            calls.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def lookup_order(order_id: str) -> str:
    """Look an order up (read only)."""
    _log_call("lookup_order", order_id=order_id)
    return f"order {order_id}: shipped"


@server.tool()
def refund_order(order_id: str, amount: float, currency: str = "USD", ticket_id: str = "",
                 customer_id: str = "", customer_age_days: int = 0) -> str:
    """Refund an order."""
    _log_call("refund_order", order_id=order_id, amount=amount)
    return f"refunded {amount} {currency} on order {order_id}"


@server.tool()
def refund_that_fails(order_id: str, amount: float) -> str:
    """A refund the payment system rejects."""
    _log_call("refund_that_fails", order_id=order_id)
    raise ToolError(f"payment system rejected the refund of order {order_id}")


@server.tool()
def crash(order_id: str, amount: float) -> str:
    """Kills the server mid-call."""
    _log_call("crash", order_id=order_id)
    os._exit(3)


@server.tool()
def hang(order_id: str, amount: float) -> str:
    """Never answers in time."""
    _log_call("hang", order_id=order_id)
    time.sleep(3600)
    return "too late"


@server.tool()
def delete_everything() -> str:
    """Not in the tool map: the gateway must never forward it."""
    _log_call("delete_everything")
    return "deleted"


@server.resource("orders://{order_id}")
def order_resource(order_id: str) -> str:
    """An order as a resource."""
    return f"resource for order {order_id}"


@server.resource("orders://recent")
def recent_orders() -> str:
    """The recent orders."""
    return "A1, A2, A3"


@server.prompt()
def apology(customer: str) -> str:
    """Write an apology."""
    return f"Write a short apology to {customer}."


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
