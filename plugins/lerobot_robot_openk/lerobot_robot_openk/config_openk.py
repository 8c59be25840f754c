"""lerobot config classes for every openk device type, generated from openk's core catalogue.

The device facts (type names and aliases, which options a type takes, default ids, joints)
come from `openk.devices`; this module only says how each openk option is typed for lerobot's
command line and adds the loop options a lerobot process needs (rates, realtime, ramps).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from lerobot.cameras import CameraConfig
from lerobot.robots.config import RobotConfig
from lerobot.teleoperators.config import TeleoperatorConfig

from openk.config import MOTION_SAFETY
from openk.devices import Role, catalog, is_sim_port, load_core
from openk.errors import ConfigError

MODULE = __name__

PerJoint = float | dict[str, float] | None

# How each option of the core's `config_keys` is typed and defaulted on lerobot's command line
# (None: the core's default for the type). `type`, `id` and `calibration_dir` are lerobot's.
OPTION_TYPES: dict[str, tuple[Any, Any]] = {
    "port": (str | None, None),
    "sts_port": (str | None, None),
    "disable_torque_on_disconnect": (bool | None, None),
    "motor_norm_mode": (str | None, None),
    "sts_motor_norm_mode": (str | None, None),
    "control_type": (str | None, None),
    "max_relative_target": (PerJoint, None),
    "damiao_kp": (PerJoint, None),
    "damiao_kd": (PerJoint, None),
    "damiao_velocity_limit": (PerJoint, None),
    # e.g. --robot.state_channels='[pos,vel]' (lerobot-rollout feeds policies .pos/.vel only).
    "state_channels": (list[str] | None, None),
}
LERROBOT_KEYS = {"type", "id", "calibration_dir", "cameras"}
CONTROL_TYPES = ("MIT", "POS_VEL")
REALTIME = ("auto", "require", "off")


def class_stem(type_name: str) -> str:
    """`openk-1-alpha_follower2` -> `Openk1AlphaFollower2` (a Python class name)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", type_name))


def _option_fields(keys: list[str]) -> list[tuple[str, Any, Any]]:
    fields: list[tuple[str, Any, Any]] = []
    for key in keys:
        if key in LERROBOT_KEYS:
            continue
        if key not in OPTION_TYPES:
            raise ConfigError(f"lerobot_robot_openk does not know how to type option {key!r}")
        typ, default = OPTION_TYPES[key]
        fields.append((key, typ, dataclasses.field(default=default)))
    return fields


def _loop_fields(role: Role) -> list[tuple[str, Any, Any]]:
    if role == "teleop":
        return []
    fields: list[tuple[str, Any, Any]] = [
        ("cameras", dict[str, CameraConfig], dataclasses.field(default_factory=dict)),
        ("direction_map", dict[str, float] | None, dataclasses.field(default=None)),
        # The rate lerobot sends actions at: each send_action's goal is reached one period
        # later, interpolated by the loop at control_hz.
        ("fps", float, dataclasses.field(default=30.0)),
        ("control_hz", float | None, dataclasses.field(default=None)),
        ("realtime", bool | str, dataclasses.field(default="auto")),  # YAML: off is false
    ]
    for name, (default, _text) in MOTION_SAFETY.items():
        fields.append((name, float | None, dataclasses.field(default=default)))
    return fields


def check(config: Any, role: Role) -> None:
    """A clear error for a bad option before anything is connected."""
    info = config.openk_info
    where = f"--{'robot' if role == 'robot' else 'teleop'}"
    if not config.port:
        raise ConfigError(
            f"{where}.port is required for {config.type}: a serial port (see `openk "
            f"find-port`) or `sim`"
        )
    if info.needs_sts_port and not config.sts_port:
        raise ConfigError(
            f"{where}.sts_port is required for {config.type} (its STS servos' port, or `sim`)"
        )
    control_type = getattr(config, "control_type", None)
    if control_type is not None and control_type not in CONTROL_TYPES:
        raise ConfigError(
            f"{where}.control_type={control_type!r} is not one of {', '.join(CONTROL_TYPES)}"
        )
    if role == "robot":
        channels = getattr(config, "state_channels", None)
        if channels is not None:
            # The core's rule (channels the type has, pos required), named as lerobot's flag.
            try:
                load_core().device_features(config.type, "robot", state_channels=channels)
            except ConfigError as err:
                raise ConfigError(f"{where}.{err}") from None
        if config.realtime is False:  # YAML reads the word `off` as false
            config.realtime = "off"
        if config.realtime not in REALTIME:
            raise ConfigError(
                f"{where}.realtime={config.realtime!r} is not one of {', '.join(REALTIME)}"
            )
        load_core().validate_loop(
            config.control_hz,
            config.fps,
            names={"control_hz": f"{where}.control_hz", "record_fps": f"{where}.fps"},
        )


def core_dict(config: Any, role: Role) -> dict[str, Any]:
    """The device dict `openk._core` takes: the core's keys that are set, lerobot's id and
    calibration folder (so the calibration file is lerobot's, in openk's JSON)."""
    out: dict[str, Any] = {"type": config.type, "id": config.id or config.openk_info.default_id}
    if config.calibration_dir is not None:
        out["calibration_dir"] = str(config.calibration_dir)
    for key in config.openk_info.config_keys:
        if key in LERROBOT_KEYS:
            continue
        value = getattr(config, key)
        if value is not None:
            out[key] = value
    if role == "robot" and config.direction_map:
        out["direction_map"] = dict(config.direction_map)
    return out


def observation_names(config: Any) -> list[str]:
    """The robot's observation.state names: its type's, limited to `state_channels`."""
    feats = load_core().device_features(
        config.type, "robot", state_channels=getattr(config, "state_channels", None)
    )
    return list(feats["observation.state"]["names"])


def is_simulated(config: Any) -> bool:
    ports = [config.port, getattr(config, "sts_port", None)]
    return all(p is None or is_sim_port(p) for p in ports)


def _make_config(type_name: str, info: Any) -> type:
    role: Role = "robot" if info.kind == "robot" else "teleop"
    base = RobotConfig if role == "robot" else TeleoperatorConfig
    fields = _option_fields(list(info.config_keys)) + _loop_fields(role)

    def post_init(self: Any) -> None:
        parent = getattr(base, "__post_init__", None)
        if parent is not None:
            parent(self)
        check(self, role)

    cls = dataclasses.make_dataclass(
        f"{class_stem(type_name)}Config",
        fields,
        bases=(base,),
        namespace={
            "__post_init__": post_init,
            "openk_info": info,
            "openk_role": role,
            "__doc__": f"openk {role} {type_name} ({len(info.joints)} joints), run by openk's loop",
        },
        kw_only=True,
        module=MODULE,
    )
    base.register_subclass(type_name)(cls)
    return cls


def _build() -> dict[str, type]:
    configs: dict[str, type] = {}
    for info in catalog():
        for name in info.names:
            configs[name] = _make_config(name, info)
    return configs


CONFIGS: dict[str, type] = _build()
