"""openk's FeetechBus against the STS3215 simulator over a real pty."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from openk._core import feetech
from openk.errors import (
    BusTimeoutError,
    ConfigError,
    MotorError,
    OpenKError,
    PortError,
    ProtocolError,
)

from ..helpers import wait_until


def test_ping_scan_and_read(bus: feetech.FeetechBus) -> None:
    assert bus.ping("grip") == 0
    assert bus.scan() == [1, 2, 3, 4, 5, 6, 7]
    assert bus.read("Model_Number", "shoulder_pan") == 777
    assert bus.read("Present_Position", 3) == 2048
    assert 11.0 < bus.read_unit("Present_Voltage", "elbow_flex") < 13.0


def test_sync_write_moves_motors_and_sync_read_follows(
    sim: feetech.FeetechSim, bus: feetech.FeetechBus
) -> None:
    goals = dict(zip(bus.motors, [1000, 1500, 2000, 2500, 3000, 3500, 4000], strict=True))
    bus.sync_write("Goal_Position", goals)
    wait_until(lambda: bus.sync_read("Present_Position") == goals, "the servos reached their goals")
    assert sim.register(7, "Present_Position") == 4000
    assert list(bus.sync_read("Present_Position", ["grip", "shoulder_pan"])) == [
        "grip",
        "shoulder_pan",
    ]


def test_negative_values_round_trip(sim: feetech.FeetechSim, bus: feetech.FeetechBus) -> None:
    bus.write("Homing_Offset", "wrist_flex", -300)
    assert sim.register(6, "Homing_Offset") == -300
    assert bus.read("Homing_Offset", "wrist_flex") == -300
    with pytest.raises(ValueError, match="Goal_Position"):
        bus.write("Goal_Position", "grip", 40_000)


def test_silent_motor_raises_timeout_naming_it(
    sim: feetech.FeetechSim, bus: feetech.FeetechBus
) -> None:
    sim.set_silent(4, True)
    with pytest.raises(BusTimeoutError, match="elbow_flex") as info:
        bus.sync_read("Present_Position")
    assert [f["id"] for f in info.value.failures] == [4]
    assert isinstance(info.value, OpenKError)


def test_error_bits_raise_motor_error_with_flags(
    sim: feetech.FeetechSim, bus: feetech.FeetechBus
) -> None:
    sim.set_error_bits(7, 0x04 | 0x20)
    with pytest.raises(MotorError) as info:
        bus.read("Present_Position", "grip")
    assert "grip" in str(info.value)
    assert info.value.motor == "'grip' (id 7)"
    assert info.value.flags == ["overheat", "overload"]
    with pytest.raises(MotorError):
        bus.sync_read("Present_Position")
    sim.set_error_bits(7, 0)
    assert bus.sync_read("Present_Position")["grip"] == 2048


def test_dropped_and_corrupted_replies_are_retried(
    sim: feetech.FeetechSim, bus: feetech.FeetechBus
) -> None:
    sim.drop_replies(1)
    assert bus.read("Present_Position", "grip") == 2048
    sim.corrupt_replies(1)
    assert bus.sync_read("Present_Position")["shoulder_pan"] == 2048
    sim.corrupt_replies(2)
    with pytest.raises(ProtocolError, match="corrupted"):
        bus.read("Present_Position", "grip")
    assert sim.stats()["replies_corrupted"] == 3


def test_unknown_names_are_config_errors(bus: feetech.FeetechBus) -> None:
    with pytest.raises(ConfigError, match="nobody"):
        bus.read("Present_Position", "nobody")
    with pytest.raises(ConfigError, match="Presnt_Position"):
        bus.read("Presnt_Position", "grip")


def test_unplug_raises_port_error(sim: feetech.FeetechSim, bus: feetech.FeetechBus) -> None:
    sim.unplug()
    with pytest.raises(PortError, match="disconnected"):
        bus.sync_read("Present_Position")


def test_missing_port_raises_port_error() -> None:
    with pytest.raises(PortError, match="find-port"):
        feetech.FeetechBus("/dev/openk-missing", {"grip": 1})


def test_human_hand_moves_a_passive_leader(tmp_path: Path) -> None:
    traj = tmp_path / "hand.csv"
    traj.write_text("t,a,b\n0,1000,3000\n1,2000,2000\n2,1000,3000\n")
    with (
        feetech.FeetechSim(ids=[1, 2], mode="hand", trajectory=str(traj)) as sim,
        feetech.FeetechBus(sim.port, {"a": 1, "b": 2}, timeout_s=0.05) as bus,
    ):
        first = bus.sync_read("Present_Position")
        time.sleep(0.2)
        second = bus.sync_read("Present_Position")
        assert first != second
        assert 1000 <= second["a"] <= 2000 and 2000 <= second["b"] <= 3000
        assert bus.read("Torque_Enable", "a") == 0


def test_closed_bus_and_stopped_sim_refuse_calls(sim: feetech.FeetechSim) -> None:
    bus = feetech.FeetechBus(sim.port, {"grip": 7})
    bus.close()
    with pytest.raises(PortError, match="closed"):
        bus.read("Present_Position", "grip")
    sim.stop()
    with pytest.raises(OpenKError, match="stopped"):
        _ = sim.port


def test_slow_replies_raise_timeout_then_recover(
    sim: feetech.FeetechSim, bus: feetech.FeetechBus
) -> None:
    sim.set_extra_latency(0.15)
    sent = sim.stats()["replies_sent"]
    with pytest.raises(BusTimeoutError, match="did not answer") as err:
        bus.read("Present_Position", "grip")
    # The message names the command that finds which ids answer (tests/cli/test_scan.py).
    assert f"openk scan {sim.port} --all-bauds" in str(err.value)
    sim.clear_faults()
    # Both late replies (the bus tries twice: retries=1) land and are flushed by the next
    # transaction.
    wait_until(lambda: sim.stats()["replies_sent"] >= sent + 2, "both late replies were sent")
    assert bus.read("Present_Position", "grip") == 2048


def test_mode_switch_from_follower_to_hand(
    sim: feetech.FeetechSim, bus: feetech.FeetechBus
) -> None:
    assert bus.sync_read("Present_Position")["grip"] == 2048
    time.sleep(0.05)
    assert bus.sync_read("Present_Position")["grip"] == 2048  # a follower at rest stays put
    sim.set_mode("hand", hand_amplitude=500, hand_period_s=1.0)
    wait_until(lambda: bus.sync_read("Present_Position")["grip"] != 2048, "the hand moved the grip")
    with pytest.raises(ConfigError, match="unknown simulator mode"):
        sim.set_mode("teleport")
