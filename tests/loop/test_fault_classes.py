"""One fault raises one exception class, whether a bus method or the control loop meets it.

The core classifies every error once (its fault kind) and the bindings map that kind onto
`openk.errors` in one place; these tests drive the same fault through each call path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openk._core import damiao, feetech
from openk.devices import find
from openk.errors import BusTimeoutError, ConfigError, MotorError, ProtocolError

from ..helpers import wait_until


def _joints(type_name: str) -> list[str]:
    info = find(type_name, "teleop")
    assert info is not None, type_name
    return [j.name for j in info.joints]


# The leader's joints in servo-id order, from the device catalogue.
STS_LEADER = _joints("openk-1-sts_leader")


def corrupt_all_and_silence(sim: Any, silent_id: int) -> None:
    """One servo stops answering and every other reply arrives with a bad checksum."""
    sim.set_silent(silent_id, True)
    sim.corrupt_replies(1_000_000)


def test_feetech_corrupt_and_silent_motors_on_the_bus_raise_protocol_error() -> None:
    with (
        feetech.FeetechSim(ids=[1, 2]) as sim,
        feetech.FeetechBus(sim.port, {"a": 1, "b": 2}, timeout_s=0.2, retries=2) as bus,
    ):
        corrupt_all_and_silence(sim, 2)
        with pytest.raises(ProtocolError) as err:
            bus.sync_read("Present_Position")
    assert type(err.value) is ProtocolError
    assert {f["kind"] for f in err.value.failures} == {"corrupt", "timeout"}


def test_feetech_corrupt_and_silent_motors_in_the_loop_raise_protocol_error(
    calib_dir: Path, make_session: Callable[..., Any]
) -> None:
    (calib_dir / "lead.json").write_text(
        json.dumps(
            {
                name: {
                    "id": i + 1,
                    "drive_mode": 0,
                    "homing_offset": 0,
                    "range_min": 0,
                    "range_max": 4095,
                }
                for i, name in enumerate(STS_LEADER)
            }
        )
    )
    with feetech.FeetechSim(ids=list(range(1, 8)), mode="hand") as sim:
        s = make_session(
            teleop={"type": "openk-1-sts_leader", "port": sim.port, "id": "lead"},
            max_consecutive_errors=3,
        )
        s.start()
        corrupt_all_and_silence(sim, 7)
        wait_until(lambda: not s.is_running, "the loop stopped on the failing leader")
        failure = s.failure()
        s.stop()
    assert failure is not None, "the loop kept running on a failing leader"
    assert "leader" in str(failure)
    # The last failed exchange decides. On a starved machine every corrupted reply of that
    # exchange may have come too late (then it is a timeout); the class must follow the fault.
    expected = ProtocolError if "corrupted replies" in str(failure) else BusTimeoutError
    assert type(failure) is expected, repr(failure)


def test_damiao_wrong_mode_is_a_config_error() -> None:
    with (
        damiao.DamiaoSim(motors=[("m", "DM4310", 0x01, 0x11)]) as sim,
        damiao.DamiaoBus(sim.port, [("m", "DM4310", 0x01, 0x11)]) as bus,
    ):
        bus.connect()
        bus.set_control_mode("MIT")
        with pytest.raises(ConfigError, match="MIT mode") as err:
            bus.pos_vel([(0.0, 1.0)])
    assert type(err.value) is ConfigError


def test_unknown_damiao_model_is_a_config_error_never_another_models_limits() -> None:
    with pytest.raises(ConfigError, match="DM9999"):
        damiao.decode_feedback(bytes(8), model="DM9999")
    with pytest.raises(ConfigError, match="DM9999"):
        damiao.DamiaoSim(motors=[("m", "DM9999", 0x01, 0x11)])


def test_motor_states_use_one_snake_case_vocabulary() -> None:
    with (
        damiao.DamiaoSim(motors=[("m", "DM4310", 0x01, 0x11)]) as sim,
        damiao.DamiaoBus(sim.port, [("m", "DM4310", 0x01, 0x11)]) as bus,
    ):
        bus.connect()
        bus.enable()
        bus.mit([(0.0, 0.0, 0.0, 0.0, 0.0)])
        sim.inject_fault("m", "over_voltage")
        assert sim.motor_state("m")["state"] == "over_voltage"
        with pytest.raises(MotorError, match="over_voltage") as err:
            bus.mit([(0.0, 0.0, 0.0, 0.0, 0.0)])
        fb = bus.last_feedback("m")
        assert fb is not None and fb["state"] == "over_voltage"
    assert "over-voltage" not in str(err.value)
    assert feetech.error_names(0x09) == ["input_voltage", "over_current"]
