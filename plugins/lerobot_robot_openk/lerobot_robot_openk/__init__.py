"""OpenK arms as lerobot devices.

lerobot (>= 0.6) imports every installed distribution whose name starts with `lerobot_robot_`;
importing this one registers every robot and teleoperator type of openk's core catalogue as a
lerobot `RobotConfig` / `TeleoperatorConfig` choice (`--robot.type=openk-1-alpha_follower2`),
and puts the matching device classes here, where lerobot looks for them by the config class
name without its `Config` suffix.
"""

from __future__ import annotations

from lerobot_robot_openk.config_openk import CONFIGS, class_stem
from lerobot_robot_openk.openk_device import OpenKRobot, OpenKTeleoperator, device_class
from lerobot_robot_openk.synthetic_camera import OpenkSyntheticCamera, OpenkSyntheticCameraConfig

__all__ = [
    "CONFIGS",
    "OpenKRobot",
    "OpenKTeleoperator",
    "OpenkSyntheticCamera",
    "OpenkSyntheticCameraConfig",
]

for _name, _config in CONFIGS.items():
    _cls = device_class(_config)
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)

del _name, _config, _cls, class_stem
