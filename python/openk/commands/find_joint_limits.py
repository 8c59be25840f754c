"""`openk find-joint-limits`: teleoperate for a while and report, per joint, the lowest and
highest position the follower and the leader reached, to set `max_relative_target` and soft
limits. Values are in the units the dataset records (the devices' normalised positions)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openk.config import FindJointLimitsConfig
from openk.session import (
    Events,
    SessionFactory,
    end_quietly,
    open_leader_session,
    read_until_stopped,
    teardown,
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
    session = open_leader_session(
        cfg, "find-joint-limits", debug=debug, session_factory=session_factory, logger=log
    )
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
        measuring = False

        def done(elapsed: float) -> bool:
            nonlocal measuring
            if not measuring and elapsed >= cfg.warmup_time_s:
                measuring = True
                ui.message(f"measuring ({cfg.teleop_time_s:g} s): move every joint to its limits")
            return elapsed >= cfg.warmup_time_s + cfg.teleop_time_s

        def on_batch(batch: Any) -> None:
            if measuring:
                result.follower.update(_column(batch, "observation.state")[1])
                result.leader.update(_column(batch, "action")[1])
                result.samples += batch.num_rows

        def status(elapsed: float) -> str:
            phase = "measuring" if measuring else "warm-up"
            return f"{phase} {elapsed:6.1f}s | {result.samples} samples"

        read_until_stopped(session, events, ui, on_batch=on_batch, status=status, until=done)
    except KeyboardInterrupt:
        ui.message("stopped (Ctrl-C)")
    finally:
        teardown(keys.stop, lambda: end_quietly(session), session.close)
    if result.samples == 0:
        ui.finish("no samples were measured (stopped during the warm-up)")
        return result
    ui.finish(f"joint limits over {result.samples} samples (dataset units):")
    for line in result.table():
        ui.message(line)
    log.info("joint limits: %s", result.table())
    return result
