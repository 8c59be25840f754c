"""Device facts have one source, the core's catalogue: the CLI's checks and the native
session agree on type names, accepted keys, the simulator-port rule and default ids."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

import openk
from openk import _core, devices
from openk.config import DeviceConfig, RecordConfig, parse_config
from openk.errors import ConfigError

BASE = ["--dataset.repo_id=me/ds", "--dataset.single_task=t"]
CATALOG = _core.device_catalog()


def _role_flags(info: _core.DeviceInfo, port: str = "sim") -> list[str]:
    """Flags that make a valid record config with `info` in its role."""
    robot = info if info.kind == "robot" else devices.devices("robot")[0]
    teleop = info if info.kind == "teleop" else devices.devices("teleop")[0]
    return [
        f"--robot.type={robot.type_name}",
        f"--robot.port={port if robot is info else 'sim'}",
        f"--teleop.type={teleop.type_name}",
        f"--teleop.port={port if teleop is info else 'sim'}",
    ]


def test_the_cli_accepts_the_type_names_the_core_knows() -> None:
    native = _core.device_types()
    assert sorted(devices.type_names("robot")) == sorted(native["robot"])
    assert sorted(devices.type_names("teleop")) == sorted(native["teleop"])
    for info in CATALOG:
        for name in info.names:
            assert devices.find(name, info.kind) == info  # type: ignore[arg-type]


@pytest.mark.parametrize("info", CATALOG, ids=lambda d: d.type_name)
def test_the_cli_accepts_exactly_the_keys_the_core_accepts(info: _core.DeviceInfo) -> None:
    fields = {f.name for f in dataclasses.fields(DeviceConfig)}
    # Every key the core accepts can be written; every field the core refuses is refused.
    assert set(info.config_keys) <= fields
    role = info.kind
    for key in sorted(fields - set(info.config_keys)):
        value = "/dev/null" if key == "sts_port" else "x"
        with pytest.raises(ConfigError, match=f"--{role}.{key}"):
            parse_config(RecordConfig, [*BASE, *_role_flags(info), f"--{role}.{key}={value}"])
        config: dict[str, Any] = {"type": info.type_name, "port": "sim", key: value}
        with pytest.raises(ConfigError, match=f'no config key "{key}"'):
            _core.calibration_path(config, role)


@pytest.mark.parametrize(
    "port", ["sim", "sim://", "sim://?missing=grip", "sim:x", "sim:", "simulator", "/dev/sim"]
)
def test_one_simulator_port_rule(port: str) -> None:
    assert devices.is_sim_port(port) == _core.is_sim_port(port)
    assert openk.config.is_sim_port(port) == _core.is_sim_port(port)
    # A follower with a second STS port needs `sts_port` unless `port` is a simulator: the
    # CLI and the core decide that with the same rule.
    info = devices.find(devices.example("robot", needs_sts_port=True), "robot")
    assert info is not None
    flags = [*BASE, *_role_flags(info, port)]
    native_config = {"type": info.type_name, "port": port}
    if _core.is_sim_port(port):
        parse_config(RecordConfig, flags)
        _core.calibration_path(native_config, "robot")
    else:
        with pytest.raises(ConfigError, match="sts_port"):
            parse_config(RecordConfig, flags)
        with pytest.raises(ConfigError, match="sts_port"):
            _core.calibration_path(native_config, "robot")


def test_default_ids_are_the_cores(tmp_path: Path) -> None:
    robot = devices.devices("robot")[0]
    teleop = devices.devices("teleop")[0]
    cfg = parse_config(RecordConfig, [*BASE, *_role_flags(robot)])
    assert cfg.teleop.type == teleop.type_name
    assert (cfg.robot.id, cfg.teleop.id) == (robot.default_id, teleop.default_id)
    assert (robot.default_id, teleop.default_id) == ("follower", "leader")
    for info in (robot, teleop):
        path = _core.calibration_path(
            {"type": info.type_name, "port": "sim", "calibration_dir": str(tmp_path)}, info.kind
        )
        assert Path(path) == tmp_path / f"{info.default_id}.json"


def test_radian_joints_are_the_damiao_joints() -> None:
    for info in CATALOG:
        radians = {j.name for j in info.joints if j.bus == "damiao"}
        assert devices.radian_joints(info.type_name, info.kind) == radians  # type: ignore[arg-type]
        assert all(j.raw_unit == ("rad" if j.radians else "step") for j in info.joints)
        assert all(j.raw_per_turn == (math.tau if j.radians else 4096) for j in info.joints)
        # DAMIAO joints are the ones with a velocity feature.
        features = _core.device_features(info.type_name, info.kind)["observation.state"]
        names = features["names"]
        assert isinstance(names, list)
        assert {n.removesuffix(".vel") for n in names if n.endswith(".vel")} == radians


def test_no_device_type_name_is_written_in_the_package() -> None:
    package = Path(openk.__file__).parent
    names = [name for info in CATALOG for name in info.names]
    found = [
        f"{path.relative_to(package)}: {name}"
        for path in sorted(package.rglob("*.py"))
        for name in names
        if name in path.read_text(encoding="utf-8")
    ]
    assert found == []


# --- the loop's options are checked once, by the core ---------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--control_hz=0"], "--control_hz is 0; it must be > 0"),
        (["--dataset.fps=-5"], "--dataset.fps is -5; it must be > 0"),
        (
            ["--control_hz=20", "--dataset.fps=30"],
            "--control_hz=20 is below --dataset.fps=30; the loop must run at least as fast",
        ),
        (["--dataset.fps=300"], "--control_hz=200 (the default) is below --dataset.fps=300"),
    ],
)
def test_the_cli_reports_the_cores_loop_check(args: list[str], expected: str) -> None:
    robot, teleop = devices.devices("robot")[0], devices.devices("teleop")[0]
    flags = [*BASE, *_role_flags(robot), *args]
    with pytest.raises(ConfigError) as err:
        parse_config(RecordConfig, flags)
    assert expected in str(err.value)
    # The session refuses the same values with the same words, under its own option names.
    cfg = parse_config(RecordConfig, flags, validate=False)
    kwargs: dict[str, Any] = {"record_fps": float(cfg.dataset.fps)}
    if cfg.control_hz is not None:
        kwargs["control_hz"] = cfg.control_hz
    native = expected.replace("--dataset.fps", "record_fps").replace("--control_hz", "control_hz")
    native = native.replace(" (the default)", "")
    with pytest.raises(ConfigError) as err:
        _core.TeleopSession(
            {"type": robot.type_name, "port": "sim"},
            {"type": teleop.type_name, "port": "sim"},
            **kwargs,
        )
    assert native in str(err.value)


def test_the_error_budget_is_checked_by_the_core() -> None:
    robot = {"type": devices.devices("robot")[0].type_name, "port": "sim"}
    with pytest.raises(ConfigError, match="max_consecutive_errors is 0; it must be at least 1"):
        _core.TeleopSession(robot, max_consecutive_errors=0)
    with pytest.raises(ConfigError, match="--max-errors is 0"):
        _core.validate_loop(
            200.0, 30.0, max_consecutive_errors=0, names={"max_consecutive_errors": "--max-errors"}
        )
    _core.validate_loop(None, 30.0)
    with pytest.raises(ConfigError, match="not a loop option"):
        _core.validate_loop(200.0, names={"fps": "--fps"})
