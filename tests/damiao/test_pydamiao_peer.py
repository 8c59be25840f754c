"""pydamiao (PyPI), an independent client of the DAMIAO USB-CAN serial protocol, drives our
adapter simulator over its pty: if it works, the simulator speaks the real protocol."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydamiao import ControlMode, MotorManager, MotorReg, MotorType, SerialBus
from pydamiao.structs import MotorFault

from openk._core import damiao

from ..helpers import wait_until
from .conftest import ARM

TYPES = {"DM6006": MotorType.DM6006, "DM4310": MotorType.DM4310}


@pytest.fixture
def peer(sim: damiao.DamiaoSim) -> Iterator[MotorManager]:
    bus = SerialBus(sim.port, baudrate=921600, timeout=0.01)
    manager = MotorManager(bus)
    for name, model, esc, mst in ARM:
        motor = manager.add_motor(TYPES[model], esc, mst, name=name)
        motor.auto_disable = False
    try:
        yield manager
    finally:
        bus.close()


def test_registers_read_and_written_by_pydamiao(sim: damiao.DamiaoSim, peer: MotorManager) -> None:
    pan = peer["shoulder_pan"]
    assert pan.read_param(MotorReg.CTRL_MODE).unwrap() == 1
    assert pan.read_param(MotorReg.MST_ID).unwrap() == 0x11
    assert pan.read_param(MotorReg.VMAX).unwrap() == pytest.approx(45.0)
    assert peer["wrist_roll"].read_param(MotorReg.TMAX).unwrap() == pytest.approx(10.0)
    assert pan.write_param(MotorReg.KP_ASR, 0.25).unwrap() == pytest.approx(0.25)
    assert pan.read_param(MotorReg.KP_ASR).unwrap() == pytest.approx(0.25)


def test_pydamiao_mode_switch_enable_and_pos_vel(sim: damiao.DamiaoSim, peer: MotorManager) -> None:
    results = peer.set_mode_all(ControlMode.POS_VEL)
    assert all(r.is_ok for r in results.values()), results
    assert all(sim.motor_state(n)["mode"] == "POS_VEL" for n, *_ in ARM)
    peer.enable_all()
    elbow = peer["elbow_flex"]

    def command_and_arrived() -> bool:
        assert elbow.set_pos_vel(0.7, 3.0).is_ok
        return abs(elbow.refresh_state().unwrap().pos - 0.7) < 0.01

    wait_until(command_and_arrived, "the elbow reached 0.7 rad", interval=0.002)
    assert abs(elbow.get_position() - 0.7) < 0.01
    assert abs(sim.motor_state("elbow_flex")["q"] - 0.7) < 0.01
    assert sim.motor_state("elbow_flex")["enabled"]
    assert elbow.get_mos_temp() is not None and elbow.get_mos_temp() >= 25


def test_pydamiao_mit_and_disable(sim: damiao.DamiaoSim, peer: MotorManager) -> None:
    roll = peer["shoulder_roll"]
    assert roll.set_mode(ControlMode.MIT).is_ok
    roll.enable()
    for _ in range(200):
        assert roll.set_mit(pos=-0.5, vel=0.0, kp=30.0, kd=1.5, torque=0.0).is_ok
        time.sleep(0.001)
    roll.refresh_state().unwrap()
    assert abs(roll.get_position() + 0.5) < 0.05
    assert abs(sim.motor_state("shoulder_roll")["q"] + 0.5) < 0.05
    # pydamiao's disable waits for the rotor to stop, reading our feedback frames.
    assert roll.disable(timeout_sec=3).is_ok
    assert not sim.motor_state("shoulder_roll")["enabled"]


def test_pydamiao_sees_device_fault(sim: damiao.DamiaoSim, peer: MotorManager) -> None:
    lift = peer["shoulder_lift"]
    lift.set_mode(ControlMode.MIT)
    lift.enable()
    sim.inject_fault("shoulder_lift", "overload")
    lift.refresh_state().unwrap()
    assert lift.fault == MotorFault.OVERLOAD
    assert lift.set_mit(0.0, 0.0, 10.0, 1.0, 0.0).is_err
    lift.clean_error()

    def cleared() -> bool:
        lift.refresh_state().unwrap()
        return lift.fault == MotorFault.NONE

    wait_until(cleared, "the fault was cleared")


ORACLE_SNIPPET = """
import json, os, time
import numpy
from pydamiao import ControlMode, Motor, MotorReg, MotorType, SerialBus
bus = SerialBus(os.environ["DM_PORT"], baudrate=921600, timeout=0.01)
m = Motor(bus, MotorType.DM4310, 0x04, 0x14, name="elbow_flex", auto_disable=False)
out = {"numpy": numpy.__version__, "pmax": m.read_param(MotorReg.PMAX).unwrap()}
out["mode_ok"] = m.set_mode(ControlMode.POS_VEL).is_ok
m.enable()
for _ in range(2000):
    m.set_pos_vel(-0.4, 4.0)
    time.sleep(0.001)
    if abs(m.refresh_state().unwrap().pos + 0.4) < 0.01:
        break
out["pos"] = m.get_position()
bus.close()
print(json.dumps(out))
"""


@pytest.mark.oracle
def test_pydamiao_in_the_oracle_venv(sim: damiao.DamiaoSim, run_oracle: Callable[..., Any]) -> None:
    """The same peer under Python 3.12 / numpy 2 (the reference's environment)."""
    result = run_oracle(ORACLE_SNIPPET, timeout=120, DM_PORT=sim.port)
    assert result["numpy"].startswith("2.")
    assert result["pmax"] == pytest.approx(12.5)
    assert result["mode_ok"]
    assert abs(result["pos"] + 0.4) < 0.01
    assert abs(sim.motor_state("elbow_flex")["q"] + 0.4) < 0.01
