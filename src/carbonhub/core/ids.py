"""UUIDv7 ids (RFC 9562 §5.7): time-ordered, so primary-key inserts stay append-mostly."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_random = b""  # the OS's randomness, read 4 KiB at a time rather than 8 bytes per id
_taken = 0  # how much of it ids have used


def _forget_random() -> None:
    """A forked child must not hand out its parent's next random bits."""
    global _random, _taken
    _random, _taken = b"", 0


os.register_at_fork(after_in_child=_forget_random)


def uuid7() -> uuid.UUID:
    """A UUIDv7 whose 12-bit rand_a is a counter within the millisecond, so ids sort by creation."""
    return uuid.UUID(int=_uuid7_int())


def _uuid7_int() -> int:
    global _last_ms, _counter, _random, _taken
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _counter = 0
        counter = _counter
        if _taken >= len(_random):
            _random, _taken = os.urandom(4096), 0
        rand_b = int.from_bytes(_random[_taken : _taken + 8], "big") & ((1 << 62) - 1)
        _taken += 8
    return (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b


def new_id() -> str:
    """str(uuid7()), without building the UUID object."""
    h = f"{_uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
