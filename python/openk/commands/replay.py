"""`openk replay`: a recorded episode's actions sent to the follower at the dataset's fps."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from openk.config import ReplayConfig, dataset_root, to_dict
from openk.errors import DatasetError
from openk.log import setup_logging
from openk.session import (
    Events,
    NativeSession,
    check_ports,
    connect_session,
    sigterm_as_interrupt,
)
from openk.terminal import KeyReader, StatusLine

log = logging.getLogger(__name__)


class ReplaySession(Protocol):
    """A connected follower that takes one action vector at a time."""

    @property
    def action_names(self) -> list[str]: ...

    def send_action(self, values: Sequence[float]) -> None: ...

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
    fps = ds.fps or fps
    check_ports(cfg.robot, "robot")
    if cfg.dataset.fps is None:
        cfg.dataset.fps = fps  # the loop records its check rows at the dataset's rate
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
        period_ns = round(1e9 / fps)
        start = time.monotonic_ns()
        with sigterm_as_interrupt():
            for i, action in enumerate(actions):
                if events.stop.is_set():
                    break
                # Absolute deadlines: a late frame does not delay the ones after it.
                delay = start + i * period_ns - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
                session.send_action(action)
                result.sent += 1
                if records:
                    batch = session.read_batch(0.0)  # type: ignore[attr-defined]
                    if batch is not None:
                        tables.append(batch)
                if i % max(1, fps // 4) == 0:
                    ui.update(f"replay {i + 1}/{len(actions)}")
        if records:
            session.end_episode()  # type: ignore[attr-defined]
            while (batch := session.read_batch(0.0)) is not None:  # type: ignore[attr-defined]
                tables.append(batch)
    except KeyboardInterrupt:
        ui.message("stopped (Ctrl-C)")
    finally:
        keys.stop()
        session.close()
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
