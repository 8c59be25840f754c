"""Wiring a policy into the commands: check it against the robot, load it, and build the
session and camera factories the recorder takes (so `openk record --policy.path` records
exactly as teleop recording does, the policy standing in for the leader arm)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from openk.config import CameraConfig, DeviceConfig, PolicyConfig
from openk.devices import find
from openk.errors import ConfigError
from openk.policy import PolicyMismatchError, require_lerobot
from openk.policy.features import (
    STATE_KEY,
    PolicySpec,
    check_policy_fits,
    policy_cameras,
    read_policy_spec,
    robot_spec,
)

log = logging.getLogger("openk.policy")


def _core() -> Any:
    import importlib

    return importlib.import_module("openk._core")


def catalogue_names(
    robot_type: str, state_channels: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """(observation.state names, action names) of a robot type observing `state_channels`
    (None: every channel), from the native catalogue."""
    feats = _core().device_features(robot_type, "robot", state_channels=state_channels)
    return list(feats["observation.state"]["names"]), list(feats["action"]["names"])


def check_policy(
    policy: PolicyConfig, robot: DeviceConfig, rename_map: Mapping[str, str] | None
) -> PolicySpec:
    """Read the checkpoint's features and refuse it, naming what differs, if it does not fit
    the robot. Needs no torch and touches no hardware."""
    if not policy.path:
        raise ConfigError("missing --policy.path; pass the checkpoint folder or Hub repo id")
    spec = read_policy_spec(policy.path)
    assert robot.type is not None
    state, action = catalogue_names(robot.type, robot.state_channels)
    cams = {name: (cam.height, cam.width) for name, cam in robot.cameras.items()}
    try:
        check_policy_fits(spec, robot_spec(state, action, cams, rename_map), robot.type)
    except PolicyMismatchError as err:
        hint = _state_channels_hint(spec, robot.type, state)
        if hint is None:
            raise
        raise PolicyMismatchError(f"{err}; {hint}") from None
    return spec


def _state_channels_hint(spec: PolicySpec, robot_type: str, state: list[str]) -> str | None:
    """When the policy's state is the robot's with other `state_channels` (a policy trained
    without torque, say), the flag that makes them fit."""
    want = spec.inputs.get(STATE_KEY)
    info = find(robot_type, "robot")
    if want is None or info is None:
        return None
    trained = spec.trained_names.get(STATE_KEY)
    offered = list(info.state_channels)
    for n in range(len(offered), 0, -1):
        for channels in itertools.combinations(offered, n):
            if "pos" not in channels:
                continue
            names = catalogue_names(robot_type, list(channels))[0]
            fits = names == trained if trained is not None else want[1] == (len(names),)
            if fits and names != state:
                return (
                    f"the policy's {STATE_KEY} is this robot's with "
                    f"--robot.state_channels='[{','.join(channels)}]'"
                )
    return None


@dataclass
class PolicySetup:
    """A checked, loaded policy and what feeds it."""

    spec: PolicySpec
    loaded: Any  # runner.LoadedPolicy
    tap: Any  # runner.ObservationTap
    runner: Any = None  # runner.PolicyRunner, once the session exists

    def stats(self) -> dict[str, Any]:
        return {} if self.runner is None else self.runner.stats(whole_run=True)


def prepare_policy(
    policy: PolicyConfig,
    robot: DeviceConfig,
    *,
    rename_map: Mapping[str, str] | None,
    task: str,
) -> PolicySetup:
    """Check, then load (lerobot), then warm the policy up — all before the arm is connected."""
    spec = check_policy(policy, robot, rename_map)
    require_lerobot()
    from openk.policy.runner import LoadedPolicy, ObservationTap

    loaded = LoadedPolicy(
        str(policy.path),
        device=policy.device,
        rename_map=rename_map,
        task=task,
        robot_type=str(robot.type),
    )
    # The policy reads cameras by their renamed keys; the tap keeps frames by robot key.
    inverse = {new: old for old, new in (rename_map or {}).items()}
    cameras = [inverse.get(key, key) for key in policy_cameras(spec)]
    tap = ObservationTap(cameras)
    _warm_up(loaded, spec, cameras)
    return PolicySetup(spec=spec, loaded=loaded, tap=tap)


def _warm_up(loaded: Any, spec: PolicySpec, cameras: list[str]) -> None:
    """The first call builds torch's kernels (often a second or more): do it before the
    episode clock runs, then forget it."""
    state = spec.inputs.get("observation.state")
    obs: dict[str, np.ndarray] = {}
    if state is not None:
        obs["observation.state"] = np.zeros(state[1], dtype=np.float32)
    for key, (_t, shape) in spec.inputs.items():
        if len(shape) == 3:
            obs[key] = np.zeros((shape[1], shape[2], shape[0]), dtype=np.uint8)
    # Keyed as the robot names them: the checkpoint's rename step maps them.
    renamed = dict(zip(policy_cameras(spec), cameras, strict=True))
    obs = {renamed.get(k, k): v for k, v in obs.items()}
    loaded.predict(obs)
    loaded.reset()


def policy_session_factory(
    setup: PolicySetup,
    *,
    fps: float,
    control_hz: float | None,
    realtime: str,
    always_calibrate: bool = False,
    handover_time_s: float = 0.5,
) -> Callable[[Any], Any]:
    """A recorder session factory: the follower, its goals from the policy runner. With a
    teleop (`cfg.teleop`, DAgger) the policy drives first and `PolicySession.toggle` hands the
    goals to the leader and back, blending over `handover_time_s`."""

    def make(cfg: Any) -> Any:
        from openk.policy.runner import PolicyRunner, PolicySession, PolicyTrace
        from openk.session import NativeSession, log_calibration, maybe_calibrate, motion_kwargs
        from openk.terminal import StatusLine

        robot: DeviceConfig = cfg.robot
        maybe_calibrate(robot, "robot", always_calibrate, StatusLine())
        log_calibration(robot, "robot")
        kwargs: dict[str, Any] = {
            "record_fps": float(fps),
            "realtime": realtime,
            # One row per batch: the policy sees each new state as soon as it is measured.
            "batch_rows": 1,
            # Start ramp, return home: the command's motion-safety options.
            **motion_kwargs(cfg),
        }
        if control_hz is not None:
            kwargs["control_hz"] = float(control_hz)
        teleop: DeviceConfig | None = getattr(cfg, "teleop", None)
        if teleop is not None:
            maybe_calibrate(teleop, "teleop", always_calibrate, StatusLine())
            log_calibration(teleop, "teleop")
            kwargs.update(goal_source="schedule", handover_time_s=handover_time_s)
        core_session = _core().TeleopSession(
            robot.to_core(), teleop.to_core() if teleop is not None else None, **kwargs
        )
        try:
            core_session.start()
        except BaseException:
            with contextlib.suppress(Exception):
                core_session.stop()
            raise
        log.info("loop started: %s", getattr(core_session, "realtime", "?"))
        native = NativeSession(core_session, switchable=teleop is not None)
        action = list(core_session.action_names)
        trace_path = os.environ.get("OPENK_POLICY_TRACE")
        trace = PolicyTrace(trace_path, setup.tap) if trace_path else None
        runner = PolicyRunner(
            setup.loaded.predict,
            setup.loaded.reset,
            setup.tap.observe,
            native.send_action,
            wait_row=setup.tap.wait_row,
            fps=fps,
            action_names=action,
            trace=trace,
        )
        setup.runner = runner
        session = PolicySession(native, runner, setup.tap, trace)
        if teleop is not None:
            session.toggle = _source_toggle(core_session)
            session.on_episode_start = _scripted_handovers(session.toggle)
        return session

    return make


def _source_toggle(core_session: Any) -> Callable[[], None]:
    """Flips the goals between the policy and the leader (SPACE)."""
    import threading

    lock = threading.Lock()
    state = {"leader": False}

    def toggle() -> None:
        with lock:
            state["leader"] = not state["leader"]
            source = "leader" if state["leader"] else "schedule"
            core_session.set_goal_source(source)
        log.info("goals now follow the %s", "leader" if state["leader"] else "policy")

    return toggle


def _scripted_handovers(toggle: Callable[[], None]) -> Callable[[], None] | None:
    """`OPENK_TEST_HANDOVER_AT` (test hook: comma-separated seconds into the first episode)
    presses SPACE at those times. They count from the episode's start, not the loop's: opening
    the cameras and the dataset writer between the two takes seconds on a busy machine, and a
    handover scripted against the loop's clock would then happen before any row is recorded."""
    import threading

    times = [float(t) for t in os.environ.get("OPENK_TEST_HANDOVER_AT", "").split(",") if t]
    if not times:
        return None
    armed = threading.Event()

    def arm() -> None:
        if armed.is_set():
            return
        armed.set()
        for t in times:
            timer = threading.Timer(t, toggle)
            timer.daemon = True
            timer.start()

    return arm


def policy_camera_factory(
    setup: PolicySetup, inner: Callable[[str, CameraConfig], Any] | None = None
) -> Callable[[str, CameraConfig], Any]:
    """Cameras whose frames also reach the policy's observation tap."""

    def make(name: str, cam: CameraConfig) -> Any:
        from openk.session import make_camera

        return _TeeCamera((inner or make_camera)(name, cam), name, setup.tap)

    return make


class _TeeCamera:
    def __init__(self, camera: Any, name: str, tap: Any) -> None:
        self.camera = camera
        self.key = "observation.images." + name
        self.tap = tap

    def start(self, on_frame: Callable[[Any, int], None]) -> None:
        def both(frame: Any, t_ns: int) -> None:
            self.tap.on_frame(self.key, frame)
            on_frame(frame, t_ns)

        self.camera.start(both)

    @property
    def error(self) -> BaseException | None:
        return getattr(self.camera, "error", None)

    def stop(self) -> None:
        self.camera.stop()


def stats_line(stats: Mapping[str, Any]) -> str:
    return (
        f"policy: {stats.get('policy_actions', 0)} actions, inference p50 "
        f"{stats.get('policy_inference_p50_ms', 0):.1f} ms / p99 "
        f"{stats.get('policy_inference_p99_ms', 0):.1f} ms, late "
        f"{stats.get('policy_late_actions', 0)}"
    )


def policy_factories(
    cfg: Any,
    ui: Any,
    camera_factory: Callable[[str, CameraConfig], Any] | None,
    rename_map: Mapping[str, str] | None = None,
) -> tuple[PolicySetup, Callable[[Any], Any], Callable[[str, CameraConfig], Any]]:
    """What `openk record --policy.path` (and `openk rollout`) hand the recorder.

    `rename_map` (robot key -> policy key) defaults to --dataset.rename_map, which renames
    the dataset's keys too."""
    ds = cfg.dataset
    ui.message(f"loading the policy {cfg.policy.path} ...")
    renames = ds.rename_map if rename_map is None else rename_map
    setup = prepare_policy(cfg.policy, cfg.robot, rename_map=renames, task=ds.single_task)
    spec = setup.spec
    if spec.trained_fps is not None and spec.trained_fps != ds.fps:
        ui.message(
            f"note: the policy was trained on {spec.trained_fps} fps data; running it at "
            f"--dataset.fps={ds.fps}"
        )
    ui.message(f"policy {spec.type} ready; it drives {cfg.robot.type} at {ds.fps} actions/s")
    sessions = policy_session_factory(
        setup,
        fps=ds.fps,
        control_hz=cfg.control_hz,
        realtime=cfg.realtime,
        always_calibrate=cfg.always_calibrate,
    )
    return setup, sessions, policy_camera_factory(setup, camera_factory)
