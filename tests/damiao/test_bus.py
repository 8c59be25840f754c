"""Our DamiaoBus against the adapter simulator: what a user of the arm would notice."""

from __future__ import annotations

import time

import pytest

from openk._core import damiao
from openk.errors import BusTimeoutError, ConfigError, MotorError, PortError, ProtocolError

from ..helpers import GilProbe, wait_until
from .conftest import ARM

HOLD = (0.0, 0.0, 20.0, 1.0, 0.0)


def test_connect_reads_limits_and_mode(bus: damiao.DamiaoBus) -> None:
    assert bus.motor_names == [m[0] for m in ARM]
    assert bus.limits("shoulder_pan") == (12.5, 45.0, 20.0)
    assert bus.limits("wrist_roll") == (12.5, 30.0, 10.0)
    assert bus.control_mode("elbow_flex") == "MIT"
    assert bus.angle_offset("elbow_flex") == 0.0


def test_enable_and_mit_tracks_target(sim: damiao.DamiaoSim, bus: damiao.DamiaoBus) -> None:
    bus.enable()
    assert all(sim.motor_state(n)["enabled"] for n, *_ in ARM)
    commands = [HOLD] * 5
    commands[1] = (0.6, 0.0, 30.0, 1.5, 0.0)
    for _ in range(300):
        fb = bus.mit(commands)
    assert abs(fb[1]["q"] - 0.6) < 0.05
    assert abs(sim.motor_state("shoulder_lift")["q"] - fb[1]["q"]) < 0.01
    assert all(f["state"] == "enabled" for f in fb)


def test_pos_vel_mode_switch_and_motion(sim: damiao.DamiaoSim, bus: damiao.DamiaoBus) -> None:
    bus.set_control_mode("POS_VEL")
    assert sim.motor_state("shoulder_pan")["mode"] == "POS_VEL"
    assert bus.control_mode("shoulder_pan") == "POS_VEL"
    bus.enable()
    targets = [(0.3, 2.0), (-0.3, 2.0), (0.1, 1.0), (0.4, 3.0), (-0.2, 2.0)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fb = bus.pos_vel(targets)
        if all(abs(f["q"] - t[0]) < 0.01 for f, t in zip(fb, targets, strict=True)):
            break
    assert all(abs(f["q"] - t[0]) < 0.01 for f, t in zip(fb, targets, strict=True)), fb
    # A MIT command to motors in POS_VEL is refused with a hint, nothing is sent.
    with pytest.raises(ConfigError, match="set_control_mode"):
        bus.mit([HOLD] * 5)


def test_register_read_write(bus: damiao.DamiaoBus) -> None:
    assert bus.read_register("elbow_flex", 8) == 4  # ESC_ID, u32
    assert bus.read_register("elbow_flex", 21) == pytest.approx(12.5)  # PMAX, f32
    assert bus.write_register("elbow_flex", 25, 0.5) == pytest.approx(0.5)
    assert bus.read_register("elbow_flex", 25) == pytest.approx(0.5)
    assert bus.write_register("elbow_flex", 9, 400) == 400
    with pytest.raises(MotorError, match="elbow_flex"):
        bus.write_register("elbow_flex", 16, 7)  # read-only pole-pair count
    with pytest.raises(ProtocolError):
        bus.write_register("elbow_flex", 10, 1.5)  # u32 register, fractional value


def test_device_fault_is_a_motor_error_naming_motor_and_state(
    sim: damiao.DamiaoSim, bus: damiao.DamiaoBus
) -> None:
    bus.enable()
    bus.mit([HOLD] * 5)
    sim.inject_fault("shoulder_roll", "over_current")
    with pytest.raises(MotorError, match=r"shoulder_roll.*over_current") as err:
        bus.mit([HOLD] * 5)
    assert "clear the error" in str(err.value)
    fb = bus.last_feedback("shoulder_roll")
    assert fb is not None and fb["state"] == "over_current"
    bus.clear_error("shoulder_roll")
    bus.enable("shoulder_roll")
    assert [f["state"] for f in bus.mit([HOLD] * 5)] == ["enabled"] * 5


def test_wire_faults_are_retried(sim: damiao.DamiaoSim, bus: damiao.DamiaoBus) -> None:
    bus.enable()
    sim.drop_replies(2)
    bus.mit([HOLD] * 5)
    sim.corrupt_replies(1)
    bus.mit([HOLD] * 5)
    sim.inject_garbage(b"\xaa\x11\x08\x00\x55")
    bus.mit([HOLD] * 5)
    stats = bus.stats()
    assert stats["retries"] >= 2
    assert stats["bytes_skipped"] >= 5


def test_missing_motor_times_out_with_its_name(sim: damiao.DamiaoSim) -> None:
    motors = [*ARM, ("ghost", "DM4310", 0x06, 0x16)]
    bus = damiao.DamiaoBus(sim.port, motors, timeout_s=0.01, retries=1, read_registers=False)
    with bus, pytest.raises(BusTimeoutError, match=r"ghost.*0x06") as err:
        bus.mit([HOLD] * 6)
    # It names the command that lists the motors that do answer (tests/cli/test_scan.py).
    assert f"openk scan {sim.port} --damiao" in str(err.value)


def test_unplug_is_a_port_error(sim: damiao.DamiaoSim, bus: damiao.DamiaoBus) -> None:
    sim.unplug()
    with pytest.raises(PortError, match="disconnected"):
        bus.mit([HOLD] * 5)


def test_missing_port_is_a_port_error() -> None:
    with pytest.raises(PortError, match="does not exist"):
        damiao.DamiaoBus("/dev/openk-no-such-adapter", ARM)


def test_compliant_leader_follows_the_hand(sim: damiao.DamiaoSim, bus: damiao.DamiaoBus) -> None:
    sim.set_hand("shoulder_pan", amplitude=0.4, frequency_hz=1.0, offset=0.2)
    bus.enable()
    seen = []
    for _ in range(60):
        seen.append(bus.mit([(0.0, 0.0, 0.0, 0.1, 0.0)] * 5)[0]["q"])
        time.sleep(0.01)
    assert max(seen) - min(seen) > 0.3
    assert min(seen) >= -0.21 and max(seen) <= 0.61


def test_bus_calls_release_the_gil(sim: damiao.DamiaoSim) -> None:
    # Every reply comes 0.1 s late, so each round blocks at least that long in Rust; a Python
    # thread must run meanwhile (it could not if the GIL were held, see tests/test_helpers.py).
    with damiao.DamiaoBus(sim.port, ARM, timeout_s=2.0) as bus:
        bus.connect()
        bus.enable()
        sim.set_extra_latency(0.1)
        with GilProbe() as probe:
            for _ in range(10):
                probe.call(0.1, bus.mit, [HOLD] * 5)
    assert probe.calls_it_ran_during >= 5, probe.calls_it_ran_during


def test_sts_can_bridge_round_trip() -> None:
    with damiao.DamiaoSim([], sts_bridge=True) as sim:
        bus = damiao.StsCanBus(sim.port, timeout_s=0.05)
        assert bus.read_position(1) == 2048
        sim.set_servo_position(2, 1000)
        assert bus.read_position(2) == 1000
        bus.write_position(2, 1500)
        wait_until(lambda: bus.read_position(2) == 1500, "servo 2 reached 1500")
        assert sim.servo_position(2) == 1500
        with pytest.raises(BusTimeoutError, match="STS servo 9"):
            bus.read_position(9)
