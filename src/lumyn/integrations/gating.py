"""`gate`: put a decision in front of a Python tool function or a block of code.

    @gate(action_type="support.refund", amount={"value": "$.amount", "currency": "USD"},
          evidence={"order_id": "$.order_id", "ticket_id": "$.ticket_id"})
    def refund(order_id: str, ticket_id: str, amount: float) -> str: ...

The function runs only on TRUST; its return or exception is recorded as an `outcome` event on
the decision. Otherwise it raises `Escalated`, `NeedsEvidence` or `Blocked` (all `NotTrusted`)
carrying the record. `wait=` seconds waits for a person to resolve an ESCALATE first: approved
runs the function, denied (or still pending) raises `Escalated` with the resolution.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

from lumyn.config import LumynConfig
from lumyn.errors import LumynError
from lumyn.integrations.decisions import TRUST, Decider, Escalated, not_trusted, outcome_data
from lumyn.integrations.mapping import ToolRule
from lumyn.sdk import Lumyn

F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger("lumyn.gate")

_default: list[Decider] = []
_default_lock = threading.Lock()


def default_gateway() -> Decider:
    """A process-wide Lumyn from the usual settings (LUMYN_*, LUMYN_CONFIG_PATH), made once."""
    with _default_lock:
        if not _default:
            _default.append(Lumyn(LumynConfig.load()))
        return _default[0]


class Gate:
    """A decorator (sync and async functions) and a context manager (`with`, `async with`)."""

    def __init__(
        self,
        action_type: str,
        *,
        gateway: Decider | None = None,
        intent: Any = None,
        amount: Any = None,
        evidence: Any = None,
        target: Any = None,
        request_id: Any = None,
        subject: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        wait: float | None = None,
        poll_interval: float = 0.25,
    ) -> None:
        self.rule = ToolRule(action_type=action_type, intent=intent, amount=amount,
                             evidence=evidence if evidence is not None else {},
                             request_id=request_id, target=target)
        self._gateway = gateway
        self.subject = dict(subject) if subject else None
        self.tenant_id = tenant_id
        self.arguments = dict(arguments or {})
        self.wait = wait
        self.poll_interval = poll_interval
        self._entered: list[dict[str, Any]] = []  # records of open `with` blocks

    @property
    def gateway(self) -> Decider:
        return self._gateway if self._gateway is not None else default_gateway()

    # -- deciding ---------------------------------------------------------------------------------

    def admit(self, arguments: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
        """Decide; return the record when the guarded code may run, else raise NotTrusted."""
        name = name or self.rule.action_type
        subject = self.subject or {"type": "service", "id": name}
        request = self.rule.request(name, arguments, subject, tenant_id=self.tenant_id)
        gateway = self.gateway
        record = gateway.decide(request)
        if record.get("verdict") == TRUST:
            return record
        if record.get("verdict") == "ESCALATE" and self.wait is not None:
            resolution = self._wait(gateway, record)
            if resolution is not None and _approved(resolution, record):
                return record
            raise Escalated(record, resolution)
        raise not_trusted(record)

    def _wait(self, gateway: Decider, record: dict[str, Any]) -> dict[str, Any] | None:
        waiter = getattr(gateway, "wait_for_resolution", None)
        if waiter is None:  # a decider without cases: nothing to wait for
            return None
        try:
            resolution: dict[str, Any] = waiter(record["decision_id"], timeout=self.wait,
                                                poll_interval=self.poll_interval)
        except LumynError as exc:  # no resolution to be had: still not approved
            _log.warning("could not wait for the resolution of %s: %s", record["decision_id"],
                         exc.one_line())
            return None
        return resolution

    def record_outcome(self, record: dict[str, Any], error: BaseException | None,
                       name: str | None = None) -> None:
        """Append the outcome event. The guarded code already ran, so a failure to record it
        is logged, not raised over the code's own result."""
        data = outcome_data(error is None, None if error is None else _error_text(error),
                            source="gate", name=name or self.rule.action_type)
        try:
            self.gateway.append_event(record["decision_id"], "outcome", data)
        except LumynError as exc:
            _log.warning("could not record the outcome of %s: %s", record["decision_id"],
                         exc.one_line())

    # -- decorator --------------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        signature = inspect.signature(fn)
        name = f"{fn.__module__}.{fn.__qualname__}"

        def arguments_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return dict(bound.arguments)

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                record = await asyncio.to_thread(self.admit, arguments_of(args, kwargs), name)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    await asyncio.to_thread(self.record_outcome, record, exc, name)
                    raise
                await asyncio.to_thread(self.record_outcome, record, None, name)
                return result

            return cast(F, run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            record = self.admit(arguments_of(args, kwargs), name)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self.record_outcome(record, exc, name)
                raise
            self.record_outcome(record, None, name)
            return result

        return cast(F, run)

    # -- context manager --------------------------------------------------------------------------

    def __enter__(self) -> dict[str, Any]:
        record = self.admit(self.arguments)
        self._entered.append(record)
        return record

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.record_outcome(self._entered.pop(), exc)

    async def __aenter__(self) -> dict[str, Any]:
        record = await asyncio.to_thread(self.admit, self.arguments)
        self._entered.append(record)
        return record

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.record_outcome, self._entered.pop(), exc)


def gate(action_type: str, **options: Any) -> Gate:
    """`Gate(action_type, ...)`: see the module docstring and docs/agents.md."""
    return Gate(action_type, **options)


def _approved(resolution: dict[str, Any], record: dict[str, Any]) -> bool:
    """Approved, and for this very decision (the approval names its inputs digest)."""
    expected = (record.get("determinism") or {}).get("inputs_digest")
    given = resolution.get("inputs_digest")
    return resolution.get("status") == "approved" and given is not None and given == expected


def _error_text(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
