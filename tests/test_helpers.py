"""The shared test helpers can fail: a wait gives up at its deadline, and the GIL probe tells a
native call that holds the GIL from one that releases it."""

from __future__ import annotations

import ctypes
import itertools
import re

import pytest

from .helpers import GilProbe, wait_until

# libc's usleep called two ways: through PyDLL the GIL stays held during the call (what a
# binding that forgot to release it does), through CDLL it is released.
_USLEEP_HOLDING_THE_GIL = ctypes.PyDLL(None).usleep
_USLEEP_RELEASING_THE_GIL = ctypes.CDLL(None).usleep


def test_wait_until_returns_the_value_once_the_condition_holds() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter) >= 3 and "ready", "the counter reached 3") == "ready"


def test_wait_until_gives_up_at_its_deadline_naming_what_it_waited_for() -> None:
    message = re.escape("gave up after 0.05 s waiting until pigs fly")
    with pytest.raises(AssertionError, match=message):
        wait_until(lambda: False, "pigs fly", timeout=0.05)


def test_gil_probe_sees_a_call_that_holds_the_gil() -> None:
    with GilProbe() as probe:
        for _ in range(5):
            probe.call(0.05, _USLEEP_HOLDING_THE_GIL, 50_000)
    assert len(probe.stretches) == 5
    assert probe.calls_it_ran_during == 0


def test_gil_probe_runs_during_a_call_that_releases_the_gil() -> None:
    # 0.2 s calls: a judged stretch of 0.1 s is longer than the OS keeps a runnable thread off
    # its core on a loaded machine (two CPU burners took it for all of a 25 ms stretch in 7 of
    # 10 calls), while a call that holds the GIL stalls the probe for all of it, however long.
    with GilProbe() as probe:
        for _ in range(10):
            probe.call(0.2, _USLEEP_RELEASING_THE_GIL, 200_000)
    assert probe.calls_it_ran_during >= 5, probe.calls_it_ran_during
