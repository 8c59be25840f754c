"""Test doubles for the orchestrator: a scripted session that emits rows in the loop's Arrow
schema and presses keys at given rows, and a writer that remembers what it was asked to do.

They stand in for the Rust session only where a test checks the orchestrator's own decisions
(episode boundaries, re-record, stop, Ctrl-C); the end-to-end tests use the real simulators.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from openk import _core
from openk.terminal import Key

STATE = ["shoulder_pan.pos", "grip.pos"]
ACTION = ["shoulder_pan.pos", "grip.pos"]


def loop_schema() -> pa.Schema:
    def vec(name: str, names: list[str]) -> pa.Field:
        return pa.field(
            name,
            pa.list_(pa.float32(), len(names)),
            nullable=False,
            metadata={"names": json.dumps(names)},
        )

    return pa.schema(
        [
            pa.field("capture_time_ns", pa.int64(), nullable=False),
            vec("observation.state", STATE),
            vec("action", ACTION),
        ]
    )


@dataclass
class ScriptedSession:
    """Emits `rows_per_read` rows per read while an episode is on; presses keys on cue.

    `keys` maps (episode number starting at 1, rows emitted in it) to a key or to an
    exception to raise (KeyboardInterrupt).
    """

    on_key: Callable[[Key], None] | None = None
    rows_per_read: int = 3
    keys: dict[tuple[int, int], Key | type[BaseException]] = field(default_factory=dict)
    episode: int = 0
    recording: bool = False
    rows_in_episode: int = 0
    t_ns: int = 0
    closed: bool = False
    paced: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def schema(self) -> pa.Schema:
        return loop_schema()

    def start_episode(self) -> None:
        self.episode += 1
        self.recording = True
        self.rows_in_episode = 0
        self.log.append(f"start {self.episode}")

    def end_episode(self) -> None:
        self.recording = False
        self.log.append(f"end {self.episode}")

    def read_batch(self, timeout_s: float) -> pa.RecordBatch | None:
        if not self.recording:
            return None
        cue = self.keys.pop((self.episode, self.rows_in_episode), None)
        if isinstance(cue, Key):
            # The key arrives between two reads: the episode holds exactly the rows before it.
            assert self.on_key is not None
            self.on_key(cue)
            return None
        elif cue is not None:
            raise cue()
        n = self.rows_per_read
        if self.paced:
            # Rows on the real clock at 30 fps, so camera frames (stamped now) line up.
            if self.t_ns == 0:
                self.t_ns = time.monotonic_ns()
            due = self.t_ns + (n - 1) * 33_333_333
            delay = due - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
        times = [self.t_ns + i * 33_333_333 for i in range(n)]
        self.t_ns += n * 33_333_333
        values = [[float(self.rows_in_episode + i), 0.5] for i in range(n)]
        self.rows_in_episode += n
        return pa.record_batch(
            [pa.array(times, pa.int64()), _vec(values), _vec(values)], schema=self.schema
        )

    def telemetry(self) -> _core.LoopTelemetry:
        return _core.LoopTelemetry(achieved_hz=500.0, lateness_p99_ns=20_000)

    def close(self) -> None:
        self.closed = True


def _vec(rows: list[list[float]]) -> pa.FixedSizeListArray:
    flat = pa.array([v for row in rows for v in row], pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, len(rows[0]))


@dataclass
class Summary:
    episode_index: int
    length: int
    wait_s: float = 0.0
    repeated_frames: dict[str, int] = field(default_factory=dict)


@dataclass
class RecordingWriter:
    """Remembers episodes as lists of rows; `saved` holds the ones kept."""

    total_episodes: int = 0
    current: list[float] | None = None
    saved: list[list[float]] = field(default_factory=list)
    discarded: int = 0
    closed: bool = False

    @property
    def next_episode_index(self) -> int:
        return self.total_episodes  # this fake commits each episode as it is saved

    def start_episode(self, task: str | None = None) -> None:
        assert self.current is None
        self.current = []

    def add_rows(self, batch: pa.RecordBatch) -> None:
        assert self.current is not None
        self.current.extend(row[0] for row in batch.column("action").to_pylist())

    def add_camera_frame(self, key: str, frame: Any, t_ns: int) -> None:
        pass

    def camera_backlog(self) -> dict[str, int]:
        return {}

    def camera_repeats(self) -> dict[str, int]:
        return {}

    def save_episode(self, metadata: Mapping[str, Any] | None = None) -> Summary:
        assert self.current is not None
        self.saved.append(self.current)
        self.current = None
        self.total_episodes += 1
        return Summary(self.total_episodes - 1, len(self.saved[-1]))

    def discard_episode(self) -> None:
        assert self.current is not None
        self.current = None
        self.discarded += 1

    def close(self) -> None:
        self.closed = True
