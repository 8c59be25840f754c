"""Synthetic loop batches and camera frames, and checks shared by the dataset tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from openk.cameras import synthetic_frame

STATE_NAMES = [
    f"{j}.pos"
    for j in (
        "shoulder_pan",
        "shoulder_lift",
        "shoulder_roll",
        "elbow_flex",
        "wrist_roll",
        "wrist_flex",
        "grip",
    )
] + [
    f"{j}.vel"
    for j in ("shoulder_pan", "shoulder_lift", "shoulder_roll", "elbow_flex", "wrist_roll")
]
ACTION_NAMES = STATE_NAMES[:7]

HERE = Path(__file__).resolve().parent


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs a child Python (a writer script, or `-c` code) with the repo's openk importable,
    as a separate process so it can be killed or fill a disk; fails the test if it fails."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent / "python")}
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def features(cameras: dict[str, tuple[int, int]], video: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "observation.state": {
            "dtype": "float32",
            "shape": [len(STATE_NAMES)],
            "names": STATE_NAMES,
        },
        "action": {"dtype": "float32", "shape": [len(ACTION_NAMES)], "names": ACTION_NAMES},
        "capture_time_ns": {"dtype": "int64", "shape": [1], "names": None},
    }
    for key, (h, w) in cameras.items():
        out[f"observation.images.{key}"] = {
            "dtype": "video" if video else "image",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
        }
    return out


def batch_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field("capture_time_ns", pa.int64()),
            pa.field(
                "observation.state",
                pa.list_(pa.float32(), len(STATE_NAMES)),
                metadata={"names": json.dumps(STATE_NAMES)},
            ),
            pa.field(
                "action",
                pa.list_(pa.float32(), len(ACTION_NAMES)),
                metadata={"names": json.dumps(ACTION_NAMES)},
            ),
            pa.field("loop_lateness_ns", pa.int64()),  # undeclared telemetry: must be ignored
        ]
    )


def make_batch(first_row: int, n: int, t0_ns: int, fps: int) -> pa.RecordBatch:
    """Rows first_row..first_row+n-1; state[0] = row number so tests can check order."""
    rows = np.arange(first_row, first_row + n)
    state = np.zeros((n, len(STATE_NAMES)), dtype=np.float32)
    state[:, 0] = rows
    state[:, 1:] = np.sin(rows[:, None] * 0.1 + np.arange(1, len(STATE_NAMES)))
    action = state[:, : len(ACTION_NAMES)] + 0.01
    times = t0_ns + rows * (1_000_000_000 // fps)
    schema = batch_schema()
    return pa.RecordBatch.from_arrays(
        [
            pa.array(times, pa.int64()),
            pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), len(STATE_NAMES)),
            pa.FixedSizeListArray.from_arrays(pa.array(action.reshape(-1)), len(ACTION_NAMES)),
            pa.array(np.zeros(n, dtype=np.int64)),
        ],
        schema=schema,
    )


_clock = {"next": 0}


def record_episode(
    writer: Any,
    frames: int,
    fps: int,
    cameras: dict[str, tuple[int, int]],
    *,
    task: str | None = None,
    batch: int = 10,
    first_number: int = 0,
    t0_ns: int | None = None,
) -> int:
    """Feed one episode: camera frame k (showing first_number+k) is stamped just before row k."""
    writer.start_episode(task)
    period = 1_000_000_000 // fps
    if t0_ns is None:
        # synthetic stamps run ahead of the wall clock; never let an episode start in the past
        t0_ns = max(time.monotonic_ns(), _clock["next"])
    for start in range(0, frames, batch):
        n = min(batch, frames - start)
        for k in range(start, start + n):
            for i, (key, (h, w)) in enumerate(cameras.items()):
                writer.add_camera_frame(
                    key,
                    synthetic_frame(first_number + k, h, w, tint=i * 20),
                    t0_ns + k * period - period // 3,
                )
        writer.add_rows(make_batch(start, n, t0_ns, fps))
    _clock["next"] = t0_ns + (frames + 1) * period
    return t0_ns + frames * period


def frame_numbers(frames: Iterator[np.ndarray]) -> list[int]:
    from openk.cameras import read_synthetic_number

    return [read_synthetic_number(f) for f in frames]


def expected_numbers(lengths: list[int]) -> list[int]:
    out: list[int] = []
    for n in lengths:
        out += list(range(n))
    return out


def check_lerobot_result(
    result: dict[str, Any], lengths: list[int], tasks: list[str], cams: dict[str, tuple[int, int]]
) -> None:
    total = sum(lengths)
    expected_tasks = [t for n, t in zip(lengths, tasks, strict=True) for _ in range(n)]
    for backend, r in result.items():
        assert r["len"] == total == r["total_frames"], backend
        assert r["total_episodes"] == len(lengths)
        assert r["tasks"] == expected_tasks
        # state[0] carries the row number within the episode: rows kept their order
        assert r["state0"] == [float(x) for x in expected_numbers(lengths)]
        for key in cams:
            assert r["numbers"][f"observation.images.{key}"] == expected_numbers(lengths), backend
            mid = r["window_mid"]
            pos = expected_numbers(lengths)[mid]
            want = [max(pos - 1, 0), pos]
            assert r["window"][f"observation.images.{key}"] == want
        assert r["action_window_shape"][0] == 2
        assert set(r["stats_keys"]) >= {f"observation.images.{k}" for k in cams} | {"action"}
