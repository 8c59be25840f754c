"""`openk replay`: a recorded episode's actions played on the follower at the dataset's fps.

The whole episode is handed to the Rust loop at once (`send_actions`): the loop's clock paces
it and interpolates between rows at the control rate; Python only waits and shows progress."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from openk.config import ReplayConfig, dataset_root, to_dict
from openk.devices import load_core
from openk.errors import DatasetError
from openk.log import setup_logging
from openk.session import (
    Events,
    NativeSession,
    check_ports,
    connect_session,
    quietly,
    sigterm_as_interrupt,
    teardown,
)
from openk.terminal import KeyReader, StatusLine

log = logging.getLogger(__name__)

# How often the progress line is refreshed while the loop plays the episode.
PROGRESS_PERIOD_S = 0.25


class ReplaySession(Protocol):
    """A connected follower that plays a timed sequence of actions on its own clock."""

    @property
    def action_names(self) -> list[str]: ...

    def send_actions(self, actions: Sequence[Sequence[float]], start_ns: int | None = None) -> None:
        """Row i is due at start_ns + i / fps (time.monotonic_ns() clock)."""

    def wait_idle(self, timeout_s: float) -> bool:
        """True once every action was reached; False after `timeout_s`."""

    @property
    def pending_actions(self) -> int: ...

    def close(self) -> None: ...


def connect_replay_session(cfg: ReplayConfig) -> ReplaySession:
    session = connect_session(cfg)
    assert isinstance(session, NativeSession)
    return session


def episode_actions(root: Path, episode: int) -> tuple[list[str], list[list[float]], int]:
    """(action names, actions in frame order, dataset fps) of one recorded episode."""
    from openk.dataset import meta
    from openk.dataset.reader import DatasetReader

    if not meta.has_dataset(root):
        raise DatasetError(f"no dataset at {root} ({meta.INFO_PATH} missing); check --dataset.root")
    reader = DatasetReader(root)
    total = reader.total_episodes
    if not 0 <= episode < total:
        raise DatasetError(
            f"--dataset.episode={episode} does not exist; {root} has episodes 0..{total - 1}"
        )
    actions = reader.actions(episode, fmt="numpy")
    return reader.joint_names("action"), [list(map(float, row)) for row in actions], reader.fps


@dataclass
class ReplayResult:
    sent: int
    total: int
    # Rows the loop recorded while replaying (follower state and the action in force), when
    # the session can record; used to report how well the follower tracked.
    rows: Any = None
    tracking_error: float | None = None
    tracking_lag_rows: int = 0


def tracking_error(rows: Any, max_lag: int = 15) -> tuple[float, int] | None:
    """Mean |follower position - commanded action| over joints and rows, at the lag (in rows)
    that fits best — the follower trails its goal by a few ticks."""
    import json

    import numpy as np

    if rows is None or rows.num_rows < 2:
        return None
    state_field = rows.schema.field("observation.state")
    action_field = rows.schema.field("action")
    state_names = json.loads((state_field.metadata or {}).get(b"names", b"[]"))
    action_names = json.loads((action_field.metadata or {}).get(b"names", b"[]"))
    try:
        idx = [state_names.index(name) for name in action_names]
    except ValueError:
        return None
    state = np.asarray(rows.column("observation.state").to_pylist(), dtype=float)[:, idx]
    action = np.asarray(rows.column("action").to_pylist(), dtype=float)
    best: tuple[float, int] | None = None
    for lag in range(min(max_lag, len(action) - 1) + 1):
        err = float(np.mean(np.abs(state[lag:] - action[: len(action) - lag])))
        if best is None or err < best[0]:
            best = (err, lag)
    return best


def replay(
    cfg: ReplayConfig,
    *,
    debug: bool = False,
    session_factory: Callable[[ReplayConfig], ReplaySession] | None = None,
    ui: StatusLine | None = None,
    events: Events | None = None,
) -> ReplayResult:
    """Send an episode's recorded actions to the follower at the dataset's fps."""
    import pyarrow as pa

    ui = ui or StatusLine()
    events = events or Events()
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    log.info("openk replay config: %s", to_dict(cfg))
    ds = cfg.dataset
    assert ds.repo_id is not None and ds.episode is not None
    root = dataset_root(ds.repo_id, ds.root)
    names, actions, fps = episode_actions(root, ds.episode)
    if ds.fps is None:
        # The loop records its check rows at the dataset's rate; it must not outrun the loop.
        load_core().validate_loop(
            cfg.control_hz,
            float(fps),
            names={"control_hz": "--control_hz", "record_fps": "the dataset's fps"},
        )
        ds.fps = fps
    else:
        fps = ds.fps
    check_ports(cfg.robot, "robot")
    session = (session_factory or connect_replay_session)(cfg)
    if names and list(session.action_names) != names:
        session.close()
        raise DatasetError(
            f"episode {ds.episode} of {root} has actions {names}, but {cfg.robot.type} takes "
            f"{list(session.action_names)}; replay it on the robot type that recorded it"
        )
    records = callable(getattr(session, "read_batch", None))
    tables: list[Any] = []
    keys = KeyReader(events.on_key)
    result = ReplayResult(sent=0, total=len(actions))
    try:
        keys.start()
        ui.message(f"replaying episode {ds.episode} ({len(actions)} actions at {fps} fps)")
        if records:
            session.start_episode()  # type: ignore[attr-defined]
        # Row 0 is due once the start ramp has brought the follower there from where it is.
        lead_s = max(cfg.start_ramp_time_s, 1.0 / fps)
        session.send_actions(actions, start_ns=time.monotonic_ns() + round(lead_s * 1e9))
        with sigterm_as_interrupt():
            while not session.wait_idle(PROGRESS_PERIOD_S):
                if events.stop.is_set():
                    break
                if records:
                    while (batch := session.read_batch(0.0)) is not None:  # type: ignore[attr-defined]
                        tables.append(batch)
                ui.update(f"replay {len(actions) - session.pending_actions}/{len(actions)}")
        if records:
            session.end_episode()  # type: ignore[attr-defined]
            while (batch := session.read_batch(0.0)) is not None:  # type: ignore[attr-defined]
                tables.append(batch)
    except KeyboardInterrupt:
        ui.message("stopped (Ctrl-C)")
    finally:

        def count_sent() -> None:  # actions the follower reached (Esc, Ctrl-C stop early)
            result.sent = len(actions) - session.pending_actions

        teardown(quietly(count_sent), keys.stop, session.close)
    ui.finish(f"replayed {result.sent}/{len(actions)} actions of episode {ds.episode}")
    if tables:
        result.rows = pa.concat_tables([pa.table(t) for t in tables])
        fit = tracking_error(result.rows)
        if fit is not None:
            result.tracking_error, result.tracking_lag_rows = fit
            ui.message(
                f"follower tracking: mean |position - action| {fit[0]:.3f} "
                f"(normalised units) at a lag of {fit[1]} rows"
            )
    return result
