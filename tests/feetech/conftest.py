"""Fixtures of the Feetech tests: a simulated STS3215 bus on a pty."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openk._core import feetech

LEADER_MOTORS = {
    "shoulder_pan": 1,
    "shoulder_lift": 2,
    "shoulder_roll": 3,
    "elbow_flex": 4,
    "wrist_roll": 5,
    "wrist_flex": 6,
    "grip": 7,
}


@pytest.fixture
def sim() -> Iterator[feetech.FeetechSim]:
    """Seven follower STS3215 (ids 1-7) at 1 Mbaud, all at mid position 2048."""
    with feetech.FeetechSim(ids=list(LEADER_MOTORS.values())) as s:
        yield s


@pytest.fixture
def bus(sim: feetech.FeetechSim) -> Iterator[feetech.FeetechBus]:
    """Our bus on the simulator, with margins generous enough for a loaded shared machine."""
    with feetech.FeetechBus(sim.port, LEADER_MOTORS, timeout_s=0.05, retries=1) as b:
        yield b


@pytest.fixture
def leader_motors() -> dict[str, int]:
    return dict(LEADER_MOTORS)
