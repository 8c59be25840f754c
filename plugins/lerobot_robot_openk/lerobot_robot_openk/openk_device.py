"""lerobot's `Robot` and `Teleoperator` APIs over openk's core.

The robot runs openk's Rust loop without a leader: `send_action` schedules the goal, which the
loop reaches one `fps` period later, interpolated at `control_hz`; the loop also does the start
ramp, the end ramp and torque off (`disconnect`). The teleoperator reads its leader through
`openk._core.LeaderReader`. Calibration is lerobot's file location in openk's JSON.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from functools import cached_property
from typing import Any

from lerobot.cameras.utils import make_cameras_from_configs
from lerobot.robots.robot import Robot
from lerobot.teleoperators.teleoperator import Teleoperator

from lerobot_robot_openk.config_openk import (
    class_stem,
    core_dict,
    is_simulated,
    observation_names,
)
from openk.config import MOTION_SAFETY
from openk.devices import Role, load_core
from openk.errors import BusTimeoutError, ConfigError, OpenKError

log = logging.getLogger(__name__)

# lerobot-rollout (0.6.x) feeds a policy the robot's `.pos` / `.vel` state only: a policy
# trained on a state with `.tor` fails there with a tensor size error; say why beforehand.
ROLLOUT_TORQUE_HINT = (
    "%s observes torque (.tor), which lerobot-rollout does not give the policy: a policy "
    "trained on this state fails there with a tensor size mismatch. Record the training data "
    "with --robot.state_channels='[pos,vel]' (openk record and lerobot-record alike) and run "
    "lerobot-rollout with the same flag."
)

# How long get_observation waits for the loop's first row after connect.
FIRST_ROW_TIMEOUT_S = 2.0
# How long the leader may stay unanswered before get_action fails.
MISSED_READS_S = 1.0


def _calibrate(config: Any, role: Role, calibration_path: Any) -> str:
    """openk's calibration dialog; simulated ports run it without prompts (the simulator is
    calibrated by construction: the file is written from a scripted sweep for a leader, and
    a simulated follower keeps its built-in calibration)."""
    from openk.commands.calibrate import run_calibration
    from openk.config import DeviceConfig
    from openk.terminal import StatusLine

    fields = core_dict(config, role)
    dev = DeviceConfig(**{k: v for k, v in fields.items() if k != "direction_map"})
    sim = is_simulated(config)
    if sim and role == "robot":
        log.info("%s on sim: the simulator's built-in calibration is used", config.type)
        return str(calibration_path)
    return run_calibration(dev, role, scripted=sim, ui=StatusLine())


class _OpenKDevice:
    """What the robot and the teleoperator share: the default id, openk's calibration file
    and dialog, and the checks before connecting and using the device. Each subclass has its
    own `is_connected`, `connect` and `disconnect` (lerobot's abstract methods)."""

    _role: Role
    config: Any
    calibration_fpath: Any

    def __init__(self, config: Any) -> None:
        if config.id is None:
            config.id = config.openk_info.default_id
        super().__init__(config)  # lerobot's Robot / Teleoperator
        self.config = config
        self._action_names = list(config.openk_info.action_names)

    def _load_calibration(self, fpath: Any = None) -> None:
        """openk's core reads the calibration file (openk's JSON), not lerobot's loader."""

    @property
    def is_calibrated(self) -> bool:
        return is_simulated(self.config) or self.calibration_fpath.is_file()

    def calibrate(self) -> None:
        # The dialog opens the ports itself: a connected device lets go of them meanwhile.
        reconnect = self.is_connected
        if reconnect:
            self.disconnect()
        _calibrate(self.config, self._role, self.calibration_fpath)
        if reconnect:
            self.connect(calibrate=False)

    def _before_connect(self, calibrate: bool) -> None:
        if self.is_connected:
            raise OpenKError(f"{self} is already connected")
        if calibrate and not self.is_calibrated:
            self.calibrate()

    def _require_connected(self) -> None:
        if not self.is_connected:
            raise OpenKError(f"{self} is not connected")


class OpenKRobot(_OpenKDevice, Robot):
    """An openk follower run by openk's loop; see the module doc."""

    config_class: type
    name: str
    _role: Role = "robot"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.session: Any = None
        self.cameras = make_cameras_from_configs(config.cameras)
        self._state_names = observation_names(config)
        self._last_state: list[float] | None = None
        self._first_state: list[float] | None = None
        self._goal_range: dict[str, tuple[float, float]] = {}
        self._last_goal: dict[str, float] = {}

    # --- features: exactly what `openk record` records ----------------------------------------

    @cached_property
    def observation_features(self) -> dict[str, Any]:
        features: dict[str, Any] = dict.fromkeys(self._state_names, float)
        for name, cam in self.config.cameras.items():
            features[name] = (cam.height, cam.width, 3)
        return features

    @cached_property
    def action_features(self) -> dict[str, Any]:
        return dict.fromkeys(self._action_names, float)

    @property
    def is_connected(self) -> bool:
        return self.session is not None

    def configure(self) -> None:
        """The core configures the motors (control type, gains, limits) when it connects."""

    def connect(self, calibrate: bool = True) -> None:
        self._before_connect(calibrate)
        cfg = self.config
        kwargs: dict[str, Any] = {
            "record_fps": float(cfg.fps),
            "realtime": cfg.realtime,
            **{name: getattr(cfg, name) for name in MOTION_SAFETY},
        }
        for name in ("start_ramp_time_s", "end_home_ramp_time_s", "end_home_settle_s"):
            if kwargs[name] is None:
                raise ConfigError(f"--robot.{name} needs a number of seconds (0: off)")
        if cfg.control_hz is not None:
            kwargs["control_hz"] = float(cfg.control_hz)
        session = load_core().TeleopSession(core_dict(cfg, "robot"), None, **kwargs)
        try:
            session.start()
            # Rows (the newest state) flow during an episode; the robot is one long one.
            session.start_episode()
            for cam in self.cameras.values():
                cam.connect()
        except BaseException:
            with contextlib.suppress(Exception):
                session.stop()
            raise
        self.session = session
        log.info("%s connected (loop %s)", self, session.realtime)
        if "lerobot.scripts.lerobot_rollout" in sys.modules and any(
            name.endswith(".tor") for name in self._state_names
        ):
            log.warning(ROLLOUT_TORQUE_HINT, self)

    def _newest_state(self) -> list[float]:
        import pyarrow as pa

        timeout = FIRST_ROW_TIMEOUT_S if self._last_state is None else 0.0
        while True:
            batch = self.session.next_batch(timeout)
            if batch is None:
                break
            table = pa.table(batch)
            if table.num_rows:
                self._last_state = table.column("observation.state")[-1].as_py()
                if self._first_state is None:
                    self._first_state = table.column("observation.state")[0].as_py()
            timeout = 0.0
        failure = self.session.failure()
        if failure is not None:
            raise failure
        if self._last_state is None:
            raise OpenKError(f"{self}: the loop produced no state in {FIRST_ROW_TIMEOUT_S} s")
        return self._last_state

    def get_observation(self) -> dict[str, Any]:
        self._require_connected()
        obs: dict[str, Any] = dict(zip(self._state_names, self._newest_state(), strict=True))
        for name, cam in self.cameras.items():
            obs[name] = cam.read_latest()
        return obs

    def send_action(self, action: dict[str, Any]) -> dict[str, Any]:
        self._require_connected()
        missing = [name for name in self._action_names if name not in action]
        if missing:
            raise ConfigError(f"{self}: the action lacks {', '.join(missing)}")
        values = [float(action[name]) for name in self._action_names]
        self.session.send_action(values)
        for name, value in zip(self._action_names, values, strict=True):
            lo, hi = self._goal_range.get(name, (value, value))
            self._goal_range[name] = (min(lo, value), max(hi, value))
        self._last_goal = dict(zip(self._action_names, values, strict=True))
        return dict(self._last_goal)

    def _log_summary(self) -> None:
        """One `openk summary: {json}` line: the loop's telemetry, how far each sent goal
        ranged, the last goal, the follower's positions first seen after connecting and then
        (how far it moved, how well it tracks)."""
        import json

        try:
            tele = self.session.telemetry().to_dict()
            state = dict(zip(self._state_names, self._newest_state(), strict=True))
            report = {
                "type": self.config.type,
                "achieved_hz": tele.get("achieved_hz"),
                "rows": tele.get("rows"),
                "late_actions": tele.get("late_actions"),
                "goal_range": self._goal_range,
                "last_goal": self._last_goal,
                "first_state": {
                    name: value
                    for name, value in zip(self._state_names, self._first_state or [], strict=False)
                    if name in self._action_names
                },
                "last_state": {name: state[name] for name in self._action_names},
            }
        except Exception as err:  # a failing loop is reported by stop(), right after
            log.warning("%s: no summary (%s)", self, err)
            return
        log.info("openk summary: %s", json.dumps(report))

    def disconnect(self) -> None:
        if not self.is_connected:
            return
        self._log_summary()
        session, self.session = self.session, None
        try:
            # The loop's end ramp, settle and torque off (disable_torque_on_disconnect).
            session.stop()
        finally:
            for cam in self.cameras.values():
                with contextlib.suppress(Exception):
                    cam.disconnect()


class OpenKTeleoperator(_OpenKDevice, Teleoperator):
    """An openk leader read through openk's core; see the module doc."""

    config_class: type
    name: str
    _role: Role = "teleop"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.reader: Any = None

    @cached_property
    def action_features(self) -> dict[str, Any]:
        return dict.fromkeys(self._action_names, float)

    @cached_property
    def feedback_features(self) -> dict[str, Any]:
        return {}

    @property
    def is_connected(self) -> bool:
        return self.reader is not None

    def configure(self) -> None:
        """The core configures the leader's motors when it connects."""

    def connect(self, calibrate: bool = True) -> None:
        self._before_connect(calibrate)
        reader = load_core().LeaderReader(core_dict(self.config, "teleop"))
        self._index = [reader.names.index(name) for name in self._action_names]
        self.reader = reader

    def get_action(self) -> dict[str, Any]:
        self._require_connected()
        deadline = time.monotonic() + MISSED_READS_S
        attempt = 0
        while True:
            try:
                values = self.reader.read()
                break
            except BusTimeoutError as err:
                # A late answer on a loaded bus is not a lost leader; silence this long is.
                attempt += 1
                log.warning("%s: %s (attempt %d)", self, err, attempt)
                if time.monotonic() >= deadline:
                    raise
        return {
            name: float(values[i]) for name, i in zip(self._action_names, self._index, strict=True)
        }

    def send_feedback(self, feedback: dict[str, Any]) -> None:
        if feedback:
            raise OpenKError(f"{self.config.type} takes no feedback (got {sorted(feedback)})")

    def disconnect(self) -> None:
        if self.reader is not None:
            reader, self.reader = self.reader, None
            reader.close()


def device_class(config_cls: type) -> type:
    """The lerobot device class of a generated config class (its name without `Config`)."""
    info = config_cls.openk_info  # type: ignore[attr-defined]
    base = OpenKRobot if info.kind == "robot" else OpenKTeleoperator
    type_name = config_cls.get_choice_name(config_cls)  # type: ignore[attr-defined]
    return type(
        class_stem(type_name),
        (base,),
        {"config_class": config_cls, "name": type_name, "__module__": "lerobot_robot_openk"},
    )
