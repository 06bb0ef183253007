"""Worker threads that decide in batches: each batch is one transaction (one fsync).

The event loop only enqueues and awaits a future; the worker drains whatever is queued,
runs `Lumyn.decide_many` and hands results back with one loop callback per batch. This keeps
SQLite and policy work off the event loop and costs far less per request than a thread-pool
hop, while concurrent requests share commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from typing import Any

from lumyn.errors import LumynError
from lumyn.sdk import Lumyn

MAX_BATCH = 128
# Two workers let one evaluate the next batch while the other waits on its commit's fsync;
# the store's group commit merges whatever they submit together.
WORKERS = 2
_STOP = object()

Item = tuple[Any, "asyncio.Future[dict[str, Any]]", asyncio.AbstractEventLoop]


class BatchDecider:
    def __init__(self, gateway: Lumyn, max_batch: int = MAX_BATCH, workers: int = WORKERS) -> None:
        self.gateway = gateway
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Item | object] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"lumyn-decider-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    async def decide(self, payload: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._queue.put((payload, future, loop))
        return await future

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[Item] = [first]  # type: ignore[list-item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[Item]) -> None:
        try:
            results: list[Any] = self.gateway.decide_many([payload for payload, _, _ in batch])
        except BaseException as exc:  # never leave a caller waiting
            results = [exc] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}
        for (_, future, loop), result in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((future, result))
        for loop, pairs in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, pairs)


def _deliver(pairs: list[tuple[asyncio.Future[dict[str, Any]], Any]]) -> None:
    for future, result in pairs:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result if isinstance(result, LumynError | Exception)
                                 else RuntimeError(repr(result)))
        else:
            future.set_result(result)
