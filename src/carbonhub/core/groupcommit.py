"""Group commit: callers on many threads, one writer thread, one transaction per batch.

A durable commit costs an fsync; one per request caps a database at a few hundred writes a
second. Here each caller queues its command and waits; the writer takes everything queued,
runs it in one transaction (each command still with its own result), commits once and wakes
every caller. A caller is answered only after the commit holding its command.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")

RunBatch = Callable[[Sequence[T]], Sequence[Any]]


class GroupCommit(Generic[T]):
    def __init__(
        self, run_batch: RunBatch[T], *, max_batch: int = 256, name: str = "writer"
    ) -> None:
        self._run_batch = run_batch
        self._max = max_batch
        self._queue: queue.SimpleQueue[tuple[T, Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Any:
        """Blocks until the batch holding `item` committed; re-raises its error."""
        result = self.enqueue(item).result()
        if isinstance(result, BaseException):
            raise result
        return result

    def enqueue(self, item: T) -> Future[Any]:
        """Queues `item`; the future holds its result (or its error) once its batch committed.
        An event loop awaits it (asyncio.wrap_future) without holding a thread."""
        fut: Future[Any] = Future()
        self._queue.put((item, fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                results = self._run_batch([item for item, _ in batch])
            except BaseException as exc:  # the whole transaction failed: every caller hears it
                results = [exc] * len(batch)
            for (_, fut), res in zip(batch, results, strict=True):
                fut.set_result(res)
            if stop:
                return
