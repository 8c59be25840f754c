"""lerobot 0.6.1's FeetechMotorsBus (oracle venv, subprocess) drives our simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from openk._core import feetech

LEROBOT_SESSION = """
import json, os, time
from lerobot.motors import Motor, MotorNormMode
from lerobot.motors.feetech import FeetechMotorsBus

names = json.loads(os.environ["MOTORS"])
bus = FeetechMotorsBus(
    port=os.environ["PORT"],
    motors={n: Motor(i, "sts3215", MotorNormMode.RANGE_M100_100) for n, i in names.items()},
)
bus.connect()  # handshake: ping every motor, compare firmware versions
found = bus.broadcast_ping()  # PING to 0xFE, then model numbers one by one
before = bus.sync_read("Present_Position", normalize=False)
grip = bus.read("Present_Position", "grip", normalize=False)
bus.enable_torque()
bus.write("Goal_Position", "grip", 3000, normalize=False)
bus.sync_write("Goal_Position", {"shoulder_pan": 1500, "wrist_flex": 2600}, normalize=False)
deadline = time.monotonic() + 10
after = before
while time.monotonic() < deadline:
    after = bus.sync_read("Present_Position", normalize=False)
    if after["grip"] == 3000 and after["shoulder_pan"] == 1500:
        break
    time.sleep(0.02)
load = bus.read("Present_Load", "grip", normalize=False)
bus.disconnect(disable_torque=False)
print(json.dumps({"found": found, "before": before, "grip": grip, "after": after, "load": load}))
"""


@pytest.mark.oracle
def test_lerobot_connects_reads_and_moves_our_sim(
    sim: feetech.FeetechSim,
    run_oracle: Callable[..., Any],
    leader_motors: dict[str, int],
) -> None:
    result = run_oracle(
        LEROBOT_SESSION, timeout=300, PORT=sim.port, MOTORS=json.dumps(leader_motors)
    )
    assert result["found"] == {str(i): 777 for i in leader_motors.values()}
    assert result["before"] == dict.fromkeys(leader_motors, 2048)
    assert result["grip"] == 2048
    assert result["after"]["grip"] == 3000
    assert result["after"]["shoulder_pan"] == 1500
    assert result["after"]["wrist_flex"] == 2600
    assert isinstance(result["load"], int)
    # The simulator itself moved, not just what lerobot was told.
    assert abs(sim.position(7) - 3000) < 1
    assert sim.register(7, "Torque_Enable") == 1
    assert sim.register(7, "Lock") == 1
