"""`openk find-joint-limits`: teleoperate for a while and report, per joint, the lowest and
highest position the follower and the leader reached, to set `max_relative_target` and soft
limits. Values are in the units the dataset records (the devices' normalised positions)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openk.config import FindJointLimitsConfig, to_dict
from openk.log import setup_logging
from openk.session import (
    BATCH_WAIT_S,
    STATUS_PERIOD_S,
    Events,
    SessionFactory,
    check_ports,
    connect_session,
    end_quietly,
    sigterm_as_interrupt,
    vector_names,
)
from openk.terminal import KeyReader, StatusLine

log = logging.getLogger(__name__)


@dataclass
class Range:
    """Lowest and highest value seen of each named feature."""

    names: list[str]
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def empty(cls, names: Sequence[str]) -> Range:
        n = len(names)
        return cls(list(names), np.full(n, np.inf), np.full(n, -np.inf))

    def update(self, values: np.ndarray) -> None:
        if values.size:
            self.low = np.minimum(self.low, values.min(axis=0))
            self.high = np.maximum(self.high, values.max(axis=0))

    def of(self, name: str) -> tuple[float, float] | None:
        if name not in self.names:
            return None
        i = self.names.index(name)
        if not np.isfinite(self.low[i]):
            return None
        return float(self.low[i]), float(self.high[i])


@dataclass
class JointLimits:
    follower: Range
    leader: Range
    samples: int = 0
    joints: list[str] = field(default_factory=list)

    def table(self) -> list[str]:
        lines = [
            f"{'joint':<16}{'follower min':>14}{'follower max':>14}{'leader min':>12}"
            f"{'leader max':>12}"
        ]
        for joint in self.joints:
            cells = ""
            for rng, width in ((self.follower, 14), (self.leader, 12)):
                seen = rng.of(f"{joint}.pos")
                lo, hi = ("-", "-") if seen is None else (f"{seen[0]:.2f}", f"{seen[1]:.2f}")
                cells += f"{lo:>{width}}{hi:>{width}}"
            lines.append(f"{joint:<16}{cells}")
        return lines


def _column(batch: Any, name: str) -> tuple[list[str], np.ndarray]:
    idx = batch.schema.get_field_index(name)
    names = vector_names(batch.schema.field(idx)) or []
    values = np.asarray(batch.column(idx).to_pylist(), dtype=float).reshape(-1, len(names))
    return names, values


def find_joint_limits(
    cfg: FindJointLimitsConfig,
    *,
    debug: bool = False,
    session_factory: SessionFactory | None = None,
    ui: StatusLine | None = None,
    events: Events | None = None,
) -> JointLimits:
    ui = ui or StatusLine()
    events = events or Events()
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    log.info("openk find-joint-limits config: %s", to_dict(cfg))
    check_ports(cfg.robot, "robot")
    check_ports(cfg.teleop, "teleop")
    session = (session_factory or connect_session)(cfg)
    keys = KeyReader(events.on_key)
    state_names = vector_names(session.schema.field("observation.state")) or []
    action_names = vector_names(session.schema.field("action")) or []
    result = JointLimits(
        follower=Range.empty(state_names),
        leader=Range.empty(action_names),
        joints=[n.removesuffix(".pos") for n in action_names if n.endswith(".pos")],
    )
    try:
        if keys.start():
            ui.message("Esc or Ctrl-C stops early and prints what was reached")
        ui.message(f"warm-up ({cfg.warmup_time_s:g} s): move the leader; nothing is measured yet")
        # Rows are only produced inside an episode; they are measured, never stored.
        session.start_episode()
        start = time.monotonic()
        measuring = cfg.warmup_time_s == 0
        if measuring:
            ui.message(f"measuring ({cfg.teleop_time_s:g} s): move every joint to its limits")
        last = 0.0
        with sigterm_as_interrupt():
            while not events.stop.is_set():
                elapsed = time.monotonic() - start
                if not measuring and elapsed >= cfg.warmup_time_s:
                    measuring = True
                    ui.message(
                        f"measuring ({cfg.teleop_time_s:g} s): move every joint to its limits"
                    )
                if elapsed >= cfg.warmup_time_s + cfg.teleop_time_s:
                    break
                batch = session.read_batch(BATCH_WAIT_S)
                if measuring and batch is not None and batch.num_rows:
                    result.follower.update(_column(batch, "observation.state")[1])
                    result.leader.update(_column(batch, "action")[1])
                    result.samples += batch.num_rows
                if time.monotonic() - last >= STATUS_PERIOD_S:
                    last = time.monotonic()
                    phase = "measuring" if measuring else "warm-up"
                    ui.update(f"{phase} {elapsed:6.1f}s | {result.samples} samples")
    except KeyboardInterrupt:
        ui.message("stopped (Ctrl-C)")
    finally:
        keys.stop()
        end_quietly(session)
        session.close()
    if result.samples == 0:
        ui.finish("no samples were measured (stopped during the warm-up)")
        return result
    ui.finish(f"joint limits over {result.samples} samples (dataset units):")
    for line in result.table():
        ui.message(line)
    log.info("joint limits: %s", result.table())
    return result
