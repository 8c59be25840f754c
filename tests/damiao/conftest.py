"""Fixtures for the DAMIAO tests: an adapter simulator per test and our bus connected to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openk._core import damiao

ARM: list[tuple[str, str, int, int]] = [
    ("shoulder_pan", "DM6006", 0x01, 0x11),
    ("shoulder_lift", "DM6006", 0x02, 0x12),
    ("shoulder_roll", "DM4310", 0x03, 0x13),
    ("elbow_flex", "DM4310", 0x04, 0x14),
    ("wrist_roll", "DM4310", 0x05, 0x15),
]


@pytest.fixture
def sim() -> Iterator[damiao.DamiaoSim]:
    with damiao.DamiaoSim(ARM) as s:
        yield s


@pytest.fixture
def bus(sim: damiao.DamiaoSim) -> Iterator[damiao.DamiaoBus]:
    # A per-attempt timeout that tolerates an overloaded test machine.
    with damiao.DamiaoBus(sim.port, ARM, timeout_s=0.1) as b:
        b.connect()
        yield b
