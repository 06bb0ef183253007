"""Decide in a pipeline off the event loop: one thread evaluates, one thread commits.

The event loop only enqueues and awaits a future. The evaluator drains whatever is queued and
runs `Lumyn.prepare_many` (policy, memory, canonical record: pure CPU); the committer drains
whatever the evaluator has produced and writes it with `Lumyn.commit_many` in one transaction
(one fsync), then hands results back with one loop callback per batch. So the next batch is
evaluated while the previous one waits on its fsync, concurrent requests share commits, and
records are written in the order they were evaluated.

Both threads run under Linux's SCHED_BATCH policy: a woken pipeline thread then waits for the
next scheduling tick instead of preempting the event loop at once. Preempting it is wasted
work under the GIL: the woken thread needs the lock the loop still holds, so it blocks and
the loop resumes, two context switches per wake-up (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from lumyn.errors import LumynError
from lumyn.sdk import Lumyn, Prepared

MAX_BATCH = 128
_STOP = object()

Decided = dict[str, Any] | bytes  # a stored record as its canonical bytes, else a dict
Item = tuple[Any, "asyncio.Future[Decided]", asyncio.AbstractEventLoop]


class BatchDecider:
    def __init__(self, gateway: Lumyn, max_batch: int = MAX_BATCH,
                 on_commit: Callable[[int], None] | None = None) -> None:
        self.gateway = gateway
        self.max_batch = max_batch
        self.on_commit = on_commit  # told each transaction's size (metrics)
        self._requests: queue.SimpleQueue[Item | object] = queue.SimpleQueue()
        self._evaluated: queue.SimpleQueue[tuple[list[Item], list[Prepared]] | object] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._evaluate_loop, name="lumyn-evaluator", daemon=True),
            threading.Thread(target=self._commit_loop, name="lumyn-committer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    async def decide(self, payload: Any) -> Decided:
        """The durable record's canonical JSON, or a record that was not stored (storage
        trouble, dry run) as a dict. Raises what Lumyn.decide raises."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decided] = loop.create_future()
        self._requests.put((payload, future, loop))
        return await future

    def close(self) -> None:
        """Finish everything queued, then stop both threads."""
        self._requests.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=30)

    def _evaluate_loop(self) -> None:
        batch_scheduling()
        while True:
            batch, stop = _drain(self._requests, self.max_batch)
            if batch:
                try:
                    prepared = self.gateway.prepare_many([payload for payload, _, _ in batch])
                except BaseException as exc:  # never leave a caller waiting
                    _deliver_all(batch, [exc] * len(batch))
                else:
                    self._evaluated.put((batch, prepared))
            if stop:
                self._evaluated.put(_STOP)
                return

    def _commit_loop(self) -> None:
        batch_scheduling()
        while True:
            parts, stop = _drain(self._evaluated, self.max_batch)
            batch: list[Item] = []
            prepared: list[Prepared] = []
            for part_batch, part_prepared in parts:
                batch.extend(part_batch)
                prepared.extend(part_prepared)
            if batch:
                try:
                    results: list[Any] = self.gateway.commit_many(prepared, encoded=True)
                except BaseException as exc:
                    results = [exc] * len(batch)
                _deliver_all(batch, results)
                if self.on_commit is not None:
                    self.on_commit(len(batch))
            if stop:
                return


def batch_scheduling() -> None:
    """Put the calling thread under SCHED_BATCH where the platform has it (Linux); a
    scheduling hint only, so a refusal (a sandbox, another OS) changes nothing else."""
    setscheduler = getattr(os, "sched_setscheduler", None)
    batch = getattr(os, "SCHED_BATCH", None)
    if setscheduler is None or batch is None:
        return
    with contextlib.suppress(OSError):
        setscheduler(0, batch, os.sched_param(0))  # 0: this thread, on Linux


def _drain(source: queue.SimpleQueue[Any], limit: int) -> tuple[list[Any], bool]:
    """Block for one item, then take whatever else is queued (up to `limit`).
    Returns the items and whether the stop marker was seen."""
    first = source.get()
    if first is _STOP:
        return [], True
    items = [first]
    while len(items) < limit:
        try:
            item = source.get_nowait()
        except queue.Empty:
            break
        if item is _STOP:
            return items, True
        items.append(item)
    return items, False


def _deliver_all(batch: list[Item], results: list[Any]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}
    for (_, future, loop), result in zip(batch, results, strict=True):
        by_loop.setdefault(loop, []).append((future, result))
    for loop, pairs in by_loop.items():
        # A closed loop raises RuntimeError: nobody is waiting there any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_deliver, pairs)


def _deliver(pairs: list[tuple[asyncio.Future[Decided], Any]]) -> None:
    for future, result in pairs:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result if isinstance(result, LumynError | Exception)
                                 else RuntimeError(repr(result)))
        else:
            future.set_result(result)
