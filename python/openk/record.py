"""The recording orchestrator behind `openk record` (and teleoperate, replay, calibrate)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from openk.config import (
    CalibrateConfig,
    DeviceConfig,
    RecordConfig,
    ReplayConfig,
    TeleoperateConfig,
    is_sim_port,
    to_dict,
)
from openk.errors import ConfigError, PortError
from openk.log import setup_logging

log = logging.getLogger("openk.record")


def check_ports(dev: DeviceConfig | None, role: str) -> None:
    """Fail before connecting anything when a configured serial port does not exist."""
    if dev is None:
        return
    for key in ("port", "sts_port"):
        port = getattr(dev, key)
        if port is None or is_sim_port(port):
            continue
        if not os.path.exists(port):
            raise PortError(
                f"serial port {port} (--{role}.{key}, {dev.type}) does not exist; plug the "
                f"adapter in and find its name with `openk find-port`, or use --{role}.{key}=sim"
            )


def resolve_root(root: Path | None, resume: bool, started: float) -> Path | None:
    """Expand `{now}` in --dataset.root (fresh folder per run, used by record_sim.yaml)."""
    if root is None or "{now}" not in str(root):
        return root
    if resume:
        raise ConfigError(
            "--dataset.root contains {now}, which makes a new folder each run; "
            "pass the existing dataset folder to --dataset.root to resume"
        )
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(started))
    return Path(str(root).replace("{now}", stamp))


def record(cfg: RecordConfig, *, debug: bool = False) -> Path:
    log_path = setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    log.info("openk record config: %s", to_dict(cfg))
    if log_path is not None:
        log.info("logging to %s", log_path)
    check_ports(cfg.robot, "robot")
    check_ports(cfg.teleop, "teleop")
    raise NotImplementedError("recording needs the loop and dataset modules")


def teleoperate(cfg: TeleoperateConfig, *, debug: bool = False) -> None:
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    check_ports(cfg.robot, "robot")
    check_ports(cfg.teleop, "teleop")
    raise NotImplementedError("teleoperation needs the loop module")


def replay(cfg: ReplayConfig, *, debug: bool = False) -> None:
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    check_ports(cfg.robot, "robot")
    raise NotImplementedError("replay needs the loop and dataset modules")


def calibrate(cfg: CalibrateConfig, *, debug: bool = False) -> None:
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    check_ports(cfg.robot, "robot")
    check_ports(cfg.teleop, "teleop")
    raise NotImplementedError("calibration needs the loop module")
