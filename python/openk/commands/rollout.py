"""`openk rollout`: a trained policy drives the arm, as lerobot-rollout does.

`--strategy.type=base` runs the policy for `--duration` seconds (0: until Esc/Ctrl-C) and records
nothing; `episodic` records episodes with resets between them, through the same recorder as
`openk record` (the policy in the leader's place).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from openk.config import RecordConfig, RolloutConfig, to_dict
from openk.log import setup_logging
from openk.terminal import StatusLine

log = logging.getLogger("openk.rollout")


@dataclass
class RolloutResult:
    strategy: str
    duration_s: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    record: Any = None  # RecordResult of an episodic rollout


def rollout(
    cfg: RolloutConfig,
    *,
    debug: bool = False,
    ui: StatusLine | None = None,
    events: Any = None,
) -> RolloutResult:
    from openk.session import Events

    ui = ui or StatusLine()
    events = events or Events()
    if cfg.strategy.type in ("episodic", "dagger"):
        return _episodic(cfg, debug=debug, ui=ui, events=events)
    return _base(cfg, debug=debug, ui=ui, events=events)


def _episodic(cfg: RolloutConfig, *, debug: bool, ui: StatusLine, events: Any) -> RolloutResult:
    from openk.commands.record import record
    from openk.policy.run import policy_factories, stats_line

    assert cfg.dataset is not None
    rec = RecordConfig(
        robot=cfg.robot,
        dataset=cfg.dataset,
        teleop=cfg.teleop if cfg.strategy.type == "dagger" else None,
        policy=cfg.policy,
        display_data=cfg.display_data,
        always_calibrate=cfg.always_calibrate,
        play_sounds=cfg.play_sounds,
        resume=cfg.resume,
        log_file=cfg.log_file,
        daily_log_file_name=cfg.daily_log_file_name,
        control_hz=cfg.control_hz,
        realtime=cfg.realtime,
        vcodec=cfg.vcodec,
        start_ramp_time_s=cfg.start_ramp_time_s,
        start_ramp_dt_s=cfg.start_ramp_dt_s,
        end_home_ramp_time_s=cfg.end_home_ramp_time_s,
        end_home_ramp_dt_s=cfg.end_home_ramp_dt_s,
        end_home_settle_s=cfg.end_home_settle_s,
    )
    # --rename_map renames for the policy only; the dataset keeps the robot's names.
    renames = {**cfg.dataset.rename_map, **cfg.rename_map}
    setup, sessions, cameras = policy_factories(rec, ui, None, rename_map=renames)
    if rec.teleop is not None:
        ui.message("keys: SPACE hands the arm from the policy to the leader arm and back")
    result = record(
        rec, debug=debug, session_factory=sessions, camera_factory=cameras, ui=ui, events=events
    )
    stats = setup.stats()
    log.info("policy: %s", stats)
    ui.message(stats_line(stats))
    return RolloutResult(strategy=cfg.strategy.type, stats=stats, record=result)


def _base(cfg: RolloutConfig, *, debug: bool, ui: StatusLine, events: Any) -> RolloutResult:
    from openk.policy.run import (
        policy_camera_factory,
        policy_session_factory,
        prepare_policy,
        stats_line,
    )
    from openk.session import check_ports, quietly, read_until_stopped, teardown
    from openk.terminal import KeyReader

    log_path = setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    log.info("openk rollout config: %s", to_dict(cfg))
    if cfg.play_sounds:
        ui.message("note: voice prompts (play_sounds) are not supported by openk; continuing")
    if cfg.display_data:
        ui.message("note: --display_data is not supported by openk rollout yet; continuing")
    check_ports(cfg.robot, "robot")
    ui.message(f"loading the policy {cfg.policy.path} ...")
    setup = prepare_policy(cfg.policy, cfg.robot, rename_map=cfg.rename_map, task=cfg.task)
    sessions = policy_session_factory(
        setup,
        fps=cfg.fps,
        control_hz=cfg.control_hz,
        realtime=cfg.realtime,
        always_calibrate=cfg.always_calibrate,
    )
    make_camera = policy_camera_factory(setup)
    session = sessions(cfg)
    session.bind_events(events)
    cameras: list[Any] = []
    keys = KeyReader(events.on_key)
    result = RolloutResult(strategy="base")
    start = time.monotonic()
    try:
        for name, cam_cfg in cfg.robot.cameras.items():
            cam = make_camera(name, cam_cfg)
            cam.start(lambda frame, t_ns: None)  # frames only feed the policy
            cameras.append(cam)
        limit = cfg.duration if cfg.duration > 0 else None
        ui.message(
            f"rollout: the policy drives {cfg.robot.type} at {cfg.fps} actions/s "
            + (f"for {limit:g} s" if limit else "until Esc or Ctrl-C")
        )
        if keys.start():
            ui.message("keys: Esc or Ctrl-C stops")
        if log_path is not None:
            ui.message(f"log: {log_path}")
        # Rows flow inside an episode: they carry the state the policy reads; none is stored.
        session.start_episode()
        start = time.monotonic()
        log.info("rollout started")

        def done(elapsed: float) -> bool:
            for name, cam in zip(cfg.robot.cameras, cameras, strict=True):
                if cam.error is not None:
                    from openk.errors import OpenKError

                    raise OpenKError(f"camera {name!r} stopped: {cam.error}")
            return limit is not None and elapsed >= limit

        def status(elapsed: float) -> str:
            hz = session.telemetry().achieved_hz
            stats = session.policy_stats()
            return (
                f"rollout {elapsed:6.1f}s | {hz:6.1f} Hz | "
                f"actions {stats.get('policy_actions', 0)}, late "
                f"{stats.get('policy_late_actions', 0)} | inference p99 "
                f"{float(stats.get('policy_inference_p99_ms', 0)):.1f} ms"
            )

        line = read_until_stopped(session, events, ui, status=status, until=done)
        if line:
            ui.finish(line)
    except KeyboardInterrupt:
        ui.message("stopped (Ctrl-C)")
    finally:
        result.duration_s = time.monotonic() - start
        # Every step runs, a Ctrl-C in one included: the arm still returns home.
        teardown(
            keys.stop,
            quietly(session.end_episode),
            *(quietly(cam.stop) for cam in cameras),
            session.close,
        )
    result.stats = setup.stats()
    log.info("policy: %s", result.stats)
    ui.message(stats_line(result.stats))
    if session.policy_error is not None:
        raise session.policy_error
    return result
