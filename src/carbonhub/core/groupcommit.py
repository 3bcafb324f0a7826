"""Group commit: callers on many threads, one writer, one transaction per batch.

A durable commit costs an fsync; one per request caps a database at a few hundred writes a
second. Here each caller queues its command and waits; the writer takes everything queued,
runs it in one transaction (each command still with its own result), commits once and wakes
every caller. A caller is answered only after the commit holding its command.

The writer is a thread (`GroupCommit`) or a child process (`WriterProcess`). In a thread it
shares the interpreter lock with the web server's event loop, and at a thousand orders a second
the two together need more than one core's worth of it; in its own process each has a core.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from carbonhub.core.errors import DomainError, Unavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

RunBatch = Callable[[Sequence[T]], Sequence[Any]]
# in a child process: the results, and what the parent should do after the commit (`after`)
RunBatchWithAfter = Callable[[Sequence[T]], tuple[Sequence[Any], Any]]


class GroupCommit(Generic[T]):
    def __init__(
        self, run_batch: RunBatch[T], *, max_batch: int = 256, name: str = "writer"
    ) -> None:
        self._run_batch = run_batch
        self._max = max_batch
        self._queue: queue.SimpleQueue[list[tuple[T, Future[Any]]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Any:
        """Blocks until the batch holding `item` committed; re-raises its error."""
        return outcome(self.enqueue(item).result())

    def enqueue(self, item: T) -> Future[Any]:
        """Queues `item`; the future holds its result (or its error) once its batch committed.
        An event loop awaits it (asyncio.wrap_future) without holding a thread."""
        fut: Future[Any] = Future()
        self._queue.put([(item, fut)])
        return fut

    async def call(self, item: T) -> Any:
        """`item`'s answer (its result, or its refusal as a value), awaited on an event loop."""
        return await asyncio.wrap_future(self.enqueue(item))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = _gather(first, self._queued, self._max)
            try:
                results = self._run_batch([item for item, _ in batch])
            except BaseException as exc:  # the whole transaction failed: every caller hears it
                results = [exc] * len(batch)
            for (_, fut), res in zip(batch, results, strict=True):
                fut.set_result(res)
            if stop:
                return

    def _queued(self) -> Any:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return _EMPTY


_EMPTY = object()


def _gather(first: list[Any], more: Callable[[], Any], max_batch: int) -> tuple[list[Any], bool]:
    """A batch: the items of `first` and of each list `more()` gives until it has nothing
    waiting (`_EMPTY`), gives the stop mark (None: then True) or the batch has `max_batch`
    (a list that arrives whole may take it past that)."""
    batch = list(first)
    while len(batch) < max_batch:
        nxt = more()
        if nxt is _EMPTY:
            break
        if nxt is None:
            return batch, True
        batch.extend(nxt)
    return batch, False


def outcome(result: Any) -> Any:
    """A writer's answer to one command: its result, or its refusal raised."""
    if isinstance(result, BaseException):
        raise result
    return result


def writer_lost() -> Unavailable:
    return Unavailable(
        "WRITER_RESTARTED",
        "the order writer stopped before answering; the command may have been committed: "
        "send it again with the same Idempotency-Key to learn its result",
        "撮合写入进程中断, 该指令可能已生效: 请用同一 Idempotency-Key 重发以获取结果",
    )


class WriterProcess(Generic[T]):
    """`GroupCommit` with the writer in a child process that `start(*args)` sets up there.

    Commands and results cross a pipe (pickled); the child batches whatever is waiting in the
    pipe, so batching works as in the thread. After each batch the parent runs `after` with
    the batch's second value (the market-data messages, say) and then answers the callers. If
    the child dies, its callers get WRITER_RESTARTED (their commands may have committed: a
    retry with the same idempotency key tells) and the next command starts a new child.

    Given an event loop (the API's), the answers are read on it and `call` sends what the
    loop gathered in one turn as one message: no thread hands the interpreter lock back and
    forth with the loop for each answer, and one write carries many orders. Without one, a
    thread reads the answers. `submit` and `enqueue` work from any thread either way."""

    def __init__(
        self,
        start: Callable[..., RunBatchWithAfter[T]],
        args: tuple[Any, ...],
        *,
        after: Callable[[Any], None],
        max_batch: int = 256,
        name: str = "writer",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._start, self._args, self._after = start, args, after
        self._max, self._name, self._loop = max_batch, name, loop
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._lock = threading.Lock()
        self._pending: dict[int, Future[Any] | asyncio.Future[Any]] = {}
        self._next = 0
        self._conn: Connection | None = None
        self._proc: BaseProcess | None = None
        self._reader: threading.Thread | None = None
        self._outgoing: list[tuple[int, T]] = []  # what the loop sends at the end of its turn
        with self._lock:
            self._spawn()

    def _spawn(self) -> Connection:
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_serve_batches,
            args=(self._start, self._args, theirs, self._max),
            name=self._name,
            daemon=True,
        )
        proc.start()
        theirs.close()
        self._conn, self._proc = ours, proc
        if self._loop is None:
            self._reader = threading.Thread(
                target=self._read, args=(ours, proc), name=f"{self._name}-replies", daemon=True
            )
            self._reader.start()
        else:
            loop = self._loop

            def watch() -> None:  # on the loop; unless the child ended or close() came first
                if self._conn is ours and not ours.closed:
                    loop.add_reader(ours.fileno(), self._answer_ready, ours, proc)

            if _running_loop() is loop:
                watch()
            else:
                loop.call_soon_threadsafe(watch)
        return ours

    def submit(self, item: T) -> Any:
        return outcome(self.enqueue(item).result())

    def enqueue(self, item: T) -> Future[Any]:
        fut: Future[Any] = Future()
        with self._lock:
            conn = self._conn or self._spawn()
            self._next += 1
            self._pending[self._next] = fut
            try:
                _send(conn, [(self._next, item)])
            except OSError:  # the child is gone; the reader fails what it had
                self._pending.pop(self._next)
                fut.set_result(writer_lost())
        return fut

    async def call(self, item: T) -> Any:
        """`item`'s answer (its result, or its refusal as a value), awaited on the event loop."""
        if self._loop is None:
            return await asyncio.wrap_future(self.enqueue(item))
        fut: asyncio.Future[Any] = self._loop.create_future()
        with self._lock:
            self._next += 1
            self._pending[self._next] = fut
            self._outgoing.append((self._next, item))
            if len(self._outgoing) == 1:
                self._loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        with self._lock:
            batch, self._outgoing = self._outgoing, []
            if not batch:  # close() took them
                return
            try:
                _send(self._conn or self._spawn(), batch)
            except OSError:  # the child is gone: these callers hear it now
                self._fail(batch)
            except Exception:  # no new child starts: the same, and the log says why
                log.exception("%s: could not send to the writer", self._name)
                self._fail(batch)

    def _fail(self, batch: list[tuple[int, T]]) -> None:
        """Under the lock: these tickets' callers get WRITER_RESTARTED."""
        for ticket, _ in batch:
            fut = self._pending.pop(ticket, None)
            if fut is not None:
                self._resolve(fut, writer_lost())

    def _answer_ready(self, conn: Connection, proc: BaseProcess) -> None:
        """On the loop: one message of answers, or the child's end."""
        try:
            self._answer(_recv(conn))
        except (EOFError, OSError):
            assert self._loop is not None
            self._loop.remove_reader(conn.fileno())
            self._lost(conn, proc)

    def _read(self, conn: Connection, proc: BaseProcess) -> None:
        try:
            while True:
                self._answer(_recv(conn))
        except (EOFError, OSError):
            pass
        self._lost(conn, proc)

    def _answer(self, message: tuple[list[int], list[Any], Any]) -> None:
        tickets, results, after = message
        if after is not None:
            try:
                self._after(after)
            except Exception:  # a subscriber's fault must not lose the answers
                log.exception("%s: after-commit step failed", self._name)
        with self._lock:  # a ticket already failed by `_lost` is no longer pending
            futures = [self._pending.pop(t, None) for t in tickets]
        for fut, result in zip(futures, results, strict=True):
            if fut is not None:
                self._resolve(fut, result)

    def _lost(self, conn: Connection, proc: BaseProcess) -> None:
        """The child ended: every command still pending went to it."""
        with self._lock:
            if self._conn is conn:
                self._conn = None
            lost = list(self._pending.values())
            self._pending.clear()
            self._outgoing.clear()  # failed with the rest: not to be sent to a new child
        for fut in lost:
            self._resolve(fut, writer_lost())
        conn.close()
        proc.join(timeout=10)

    @staticmethod
    def _resolve(fut: Future[Any] | asyncio.Future[Any], result: Any) -> None:
        if not fut.done():  # an awaiting task may have been cancelled
            fut.set_result(result)

    def close(self, timeout: float = 30.0) -> None:
        """Lets the child finish and answer what it was sent (for up to `timeout` seconds),
        then stops it; what is still unanswered hears WRITER_RESTARTED. On the loop's thread
        when there is a loop: the answers are read here, the loop being busy in this."""
        with self._lock:
            conn, proc, reader = self._conn, self._proc, self._reader
            self._conn = None
            outgoing, self._outgoing = self._outgoing, []
            if conn is None:  # no child to send them to
                self._fail(outgoing)
                return
        with contextlib.suppress(OSError):
            if outgoing:
                _send(conn, outgoing)
            _send(conn, None)  # the child finishes what it has, answers, and exits
        if reader is not None:
            reader.join(timeout=timeout)
        elif self._loop is not None and proc is not None:
            if not conn.closed:
                self._loop.remove_reader(conn.fileno())
            deadline = time.monotonic() + timeout
            try:
                while (left := deadline - time.monotonic()) > 0 and conn.poll(left):
                    self._answer(_recv(conn))
                proc.terminate()  # out of time: what it still holds goes unanswered
            except (EOFError, OSError):  # it answered everything and left
                pass
            self._lost(conn, proc)
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)


def _serve_batches(
    start: Callable[..., RunBatchWithAfter[Any]],
    args: tuple[Any, ...],
    conn: Connection,
    max_batch: int,
) -> None:
    """The child process: batches of (ticket, command) from the pipe, answers back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops us
    run = start(*args)
    gc.freeze()  # what set-up made lives as long as we do: full collections skip it
    while True:
        try:
            first = _recv(conn)
        except EOFError:
            return
        if first is None:
            return
        batch, stop = _gather(first, lambda: _recv(conn) if conn.poll() else _EMPTY, max_batch)
        try:
            results, after = run([item for _, item in batch])
        except BaseException as exc:  # the whole transaction failed: every caller hears it
            results, after = [exc] * len(batch), None
        try:
            _send(conn, ([t for t, _ in batch], [_portable(r) for r in results], after))
        except OSError:  # the parent is gone
            return
        if stop:
            return


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _send(conn: Connection, message: Any) -> None:
    # pickle's own fast path: Connection.send goes through ForkingPickler and a BytesIO
    conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def _recv(conn: Connection) -> Any:
    return pickle.loads(conn.recv_bytes())


def _portable(result: Any) -> Any:
    """Domain errors pickle whole; any other error crosses as its type and text."""
    if isinstance(result, BaseException) and not isinstance(result, DomainError):
        return RuntimeError(f"{type(result).__name__}: {result}")
    return result
