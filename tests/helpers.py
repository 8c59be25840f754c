"""Helpers shared by the Python tests (import with `from ..helpers import ...`).

`wait_until` is the one way a test waits for something another thread or process does: it
polls with a deadline, so a dead peer fails the test with a message instead of hanging the run,
and it returns as soon as the condition holds, so a busy machine only makes it slower.

`GilProbe` tells whether native calls let other Python threads run while they block.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# How long a test waits for something that normally takes milliseconds or a few seconds: long
# enough for a machine busy with other work, short enough that a dead peer fails the test.
PATIENCE_S = 60.0


def wait_until(
    condition: Callable[[], T],
    what: str,
    timeout: float = PATIENCE_S,
    interval: float = 0.01,
    details: Callable[[], str] | None = None,
) -> T:
    """Polls `condition` until it returns something truthy and returns that value; fails the
    test naming `what` (and adding `details()`, e.g. a screen or a log) once `timeout` seconds
    passed without it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = f"gave up after {timeout:g} s waiting until {what}"
            if details is not None:
                message += f"\n{details()}"
            raise AssertionError(message)
        time.sleep(interval)


# A pause of the probe thread longer than this is recorded as a stall.
_STALL_NS = 1_000_000


class GilProbe:
    """A Python thread that spins while the test makes blocking native calls through `call`.

    The thread records every stretch of time in which it could not run (a stall). Each call
    names how long it blocks at least (a sleep, a timeout, a simulator's reply latency). A call
    that holds the GIL stalls the thread from before the call began until at least that long
    after: the thread cannot run anywhere in that stretch. A call that releases the GIL lets
    it run there. `calls_it_ran_during` counts the calls during whose stretch the thread made
    progress, from the thread's own timestamps: no limit on how fast anything runs is
    asserted. A thread can also stall because the OS gave its core to another process; with
    stretches of tens of milliseconds that happens in few calls, while a held GIL stalls it in
    every one. (The end of a call is no use as a bound: once the call returns, the interpreter
    may hand the GIL to the thread before the caller reads the clock.)

        with GilProbe() as probe:
            for _ in range(10):
                probe.call(0.1, bus.mit, commands)  # each round waits for a 0.1 s latency
        assert probe.calls_it_ran_during >= 5
    """

    def __init__(self) -> None:
        self.stretches: list[tuple[int, int]] = []
        self._stalls: list[tuple[int, int]] = []
        self._stop = False
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="gil-probe", daemon=True)

    def _spin(self) -> None:
        previous = time.perf_counter_ns()
        self._running.set()
        while True:
            now = time.perf_counter_ns()
            if now - previous > _STALL_NS:
                self._stalls.append((previous, now))
            previous = now
            if self._stop:
                return

    def __enter__(self) -> GilProbe:
        self._thread.start()
        if not self._running.wait(PATIENCE_S):
            raise AssertionError("the GIL probe thread never started")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(PATIENCE_S)
        if self._thread.is_alive():
            raise AssertionError("the GIL probe thread did not stop")

    def call(self, blocks_at_least_s: float, fn: Callable[..., T], *args: Any) -> T:
        """Calls `fn(*args)`, which blocks at least `blocks_at_least_s` seconds."""
        start = time.perf_counter_ns()
        result = fn(*args)
        end = time.perf_counter_ns()
        block_ns = int(blocks_at_least_s * 1e9)
        if end - start < block_ns:
            raise AssertionError(
                f"{fn} returned after {(end - start) / 1e9:.3f} s, before the "
                f"{blocks_at_least_s:g} s it was said to block; the probe cannot judge it"
            )
        # Only the second half of the blocking time is judged: between reading `start` and
        # entering the native call the interpreter may still hand the GIL to the probe for a
        # switch interval (5 ms), which a call holding the GIL must not be credited with.
        self.stretches.append((start + block_ns // 2, start + block_ns))
        return result

    @property
    def calls_it_ran_during(self) -> int:
        """Calls during which the probe thread made progress (valid after the `with` block)."""
        return sum(
            not any(a <= start and b >= end for a, b in self._stalls)
            for start, end in self.stretches
        )


def tear_last_media_box(video: Path) -> None:
    """Cut an mp4 in the middle of its last media (`mdat`) box, as a process killed while
    writing a fragmented mp4 leaves it."""
    data = video.read_bytes()
    offset, last = 0, None
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == b"mdat":
            last = (offset, size)
        if size < 8:
            break
        offset += size
    assert last is not None, f"{video} holds no media box"
    video.write_bytes(data[: last[0] + last[1] // 2])
