"""A small ASGI piece the telemetry layers share."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the SDK imports tracing, which uses this: no web framework at run time
    from starlette.types import Message, Send


class StatusSend:
    """Forwards every message to `send` and remembers the response status (500 until a
    response starts, so a handler that raised is counted as the error it becomes)."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)
