"""The order writer in a child process (`core.groupcommit.WriterProcess`): results and refusals
come back whole and in order, the after-commit step runs in the parent before the callers are
answered, and a child that dies fails its callers with WRITER_RESTARTED, after which the next
command starts a new child. On an event loop (as under the API) the same holds, and what one
turn of the loop sends goes as one message. The exchange runs on it under the API
(test_exchange_api's lifespan tests: orders from many threads, the feed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from carbonhub.core.errors import Conflict, DomainError
from carbonhub.core.groupcommit import WriterProcess


def echo_writer(tag: str) -> Callable[[Sequence[Any]], tuple[list[Any], Any]]:
    """Runs in the child: echoes each item, refuses "refuse", fails on "fail", sleeps on
    "slow"; the after-commit value is the batch and the child's pid."""

    def run(items: Sequence[Any]) -> tuple[list[Any], Any]:
        out: list[Any] = []
        for item in items:
            if item == "slow":
                time.sleep(30)
            if item == "refuse":
                out.append(Conflict("NOPE", "refused", "拒绝", limit=3))
            elif item == "fail":
                out.append(ValueError("not picklable as such: " + repr(object())))
            else:
                out.append(f"{tag}:{item}")
        return out, (os.getpid(), list(items))

    return run


def assert_restarted(answer: Any) -> None:
    assert isinstance(answer, DomainError), answer
    assert (answer.code, answer.status) == ("WRITER_RESTARTED", 503)


@pytest.fixture
def writer() -> Any:
    seen: list[Any] = []
    w = WriterProcess(echo_writer, ("w",), after=seen.append, name="test-writer")
    w.seen = seen  # type: ignore[attr-defined]
    yield w
    w.close()


def test_results_come_back_in_order_with_refusals_whole(writer: Any) -> None:
    futures = [writer.enqueue(i) for i in ["a", "refuse", "b", "fail", "c"]]
    results = [f.result(timeout=60) for f in futures]
    assert results[0::2] == ["w:a", "w:b", "w:c"]
    refused = results[1]
    assert isinstance(refused, Conflict) and refused.status == 409
    assert (refused.code, refused.message, refused.message_zh) == ("NOPE", "refused", "拒绝")
    assert refused.context == {"limit": 3}
    assert isinstance(results[3], RuntimeError) and "ValueError" in str(results[3])
    with pytest.raises(Conflict):
        writer.submit("refuse")
    # the after-commit step saw every item, in order, before its caller was answered
    assert [x for _, batch in writer.seen for x in batch][:5] == ["a", "refuse", "b", "fail", "c"]


def test_a_dead_child_fails_its_callers_and_the_next_command_restarts_it(writer: Any) -> None:
    assert writer.submit("x") == "w:x"
    first_pid = writer.seen[-1][0]
    slow = writer.enqueue("slow")
    time.sleep(0.5)
    os.kill(first_pid, signal.SIGKILL)
    assert_restarted(slow.result(timeout=60))
    assert writer.submit("y") == "w:y"  # a new child
    assert writer.seen[-1][0] != first_pid


def test_close_answers_what_was_sent_before_it() -> None:
    w = WriterProcess(echo_writer, ("z",), after=lambda _: None)
    futures = [w.enqueue(str(i)) for i in range(50)]
    w.close()
    assert [f.result(timeout=60) for f in futures] == [f"z:{i}" for i in range(50)]


# ---------------------------------------------------------------- on the API's event loop


async def _on_loop(tag: str) -> Any:
    seen: list[Any] = []
    w = WriterProcess(
        echo_writer, (tag,), after=seen.append, name="test-writer", loop=asyncio.get_running_loop()
    )
    w.seen = seen  # type: ignore[attr-defined]
    return w


@contextlib.asynccontextmanager
async def on_loop(tag: str) -> AsyncIterator[Any]:
    """`_on_loop`'s writer, closed afterwards."""
    w = await _on_loop(tag)
    try:
        yield w
    finally:
        w.close()


def test_on_a_loop_what_one_turn_sends_is_one_batch_and_answers_come_back_on_the_loop() -> None:
    async def main() -> None:
        async with on_loop("l") as w:
            assert await w.call("warm") == "l:warm"
            items = [str(i) for i in range(20)] + ["refuse"]
            results = await asyncio.gather(*(w.call(i) for i in items))
            assert results[:20] == [f"l:{i}" for i in range(20)]
            assert isinstance(results[20], Conflict) and results[20].context == {"limit": 3}
            # the 21 calls made in one turn of the loop went in one message, so one batch
            assert [batch for _, batch in w.seen][1:] == [items]
            # a thread's blocking submit works beside the loop
            assert await asyncio.to_thread(w.submit, "t") == "l:t"

    asyncio.run(main())


def test_on_a_loop_a_dead_child_fails_its_callers_and_the_next_call_restarts_it() -> None:
    async def main() -> None:
        async with on_loop("d") as w:
            assert await w.call("x") == "d:x"
            first_pid = w.seen[-1][0]
            slow = asyncio.ensure_future(w.call("slow"))
            await asyncio.sleep(0.5)
            os.kill(first_pid, signal.SIGKILL)
            assert_restarted(await asyncio.wait_for(slow, 60))
            assert await w.call("y") == "d:y"
            assert w.seen[-1][0] != first_pid

    asyncio.run(main())


def test_on_a_loop_close_answers_what_was_sent_and_what_was_waiting_to_go() -> None:
    async def main() -> None:
        w = await _on_loop("c")
        assert await w.call("first") == "c:first"
        calls = [asyncio.ensure_future(w.call(str(i))) for i in range(30)]
        await asyncio.sleep(0)  # the calls are queued for this turn's message, not yet sent
        w.close()
        assert await asyncio.gather(*calls) == [f"c:{i}" for i in range(30)]

    asyncio.run(main())


def test_on_a_loop_calls_made_as_the_child_dies_are_answered_once_and_the_next_restarts_it() -> (
    None
):
    """Calls queued in the turn in which the child's end is read are failed with it, and are
    not sent on to the next child (whose answer would find no caller)."""
    errors: list[Any] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        async with on_loop("r") as w:
            assert await w.call("x") == "r:x"
            first_pid = w.seen[-1][0]
            os.kill(first_pid, signal.SIGKILL)
            w._proc.join(10)  # dead, and its end not read yet: the loop has not turned
            for result in await asyncio.gather(*(w.call(str(i)) for i in range(5))):
                assert_restarted(result)
            assert await w.call("y") == "r:y"
            assert w.seen[-1][0] != first_pid
            assert [x for _, batch in w.seen[1:] for x in batch] == ["y"]  # nothing resent

    asyncio.run(main())
    assert errors == []


def test_on_a_loop_close_gives_up_on_a_stuck_child_after_its_timeout() -> None:
    async def main() -> None:
        w = await _on_loop("s")
        assert await w.call("x") == "s:x"
        slow = asyncio.ensure_future(w.call("slow"))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        w.close(timeout=1.0)
        assert time.monotonic() - started < 8
        assert_restarted(await slow)

    asyncio.run(main())
