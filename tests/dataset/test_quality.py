"""Quality flags of `openk view`: each raised by the condition its threshold names, only then."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from ds_synth import ACTION_NAMES, STATE_NAMES, batch_schema, features

from openk.dataset import DatasetWriter, meta
from openk.dataset.edit import Source
from openk.dataset.quality import Thresholds, episode_flags

FPS = 30


def _batch(action: np.ndarray, t0: int) -> pa.RecordBatch:
    n = len(action)
    state = np.zeros((n, len(STATE_NAMES)), dtype=np.float32)
    state[:, : len(ACTION_NAMES)] = action
    return pa.RecordBatch.from_arrays(
        [
            pa.array(t0 + np.arange(n) * (1_000_000_000 // FPS), pa.int64()),
            pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), len(STATE_NAMES)),
            pa.FixedSizeListArray.from_arrays(
                pa.array(action.astype(np.float32).reshape(-1)), len(ACTION_NAMES)
            ),
            pa.array(np.zeros(n, dtype=np.int64)),
        ],
        schema=batch_schema(),
    )


def test_flags_and_thresholds(tmp_path: Path) -> None:
    ramp = np.linspace(0, 10, 60)[:, None] * np.ones(len(ACTION_NAMES))
    idle = np.concatenate([np.zeros((45, len(ACTION_NAMES))), ramp])
    jerky = ramp.copy()
    jerky[30, 2] += 5.0
    short = ramp[:10]
    root = tmp_path / "ds"
    writer = DatasetWriter.create("openk/q", FPS, features({}), root=root)
    loops = [
        {"target_hz": 200.0, "achieved_hz": 199.0, "ticks": 1000, "overruns": 0},
        {"target_hz": 200.0, "achieved_hz": 120.0, "ticks": 1000, "overruns": 50},
        {},
        {"target_hz": 200.0, "achieved_hz": 200.0, "ticks": 1000, "overruns": 5},
    ]
    with writer:
        for e, action in enumerate([ramp, idle, jerky, short]):
            writer.start_episode("t")
            writer.add_rows(_batch(action, 10**12 + e * 10**10))
            writer.save_episode({"openk_loop": loops[e]})
    # repeated camera frames, as the recorder notes them
    lines = meta.extras_path(root).read_text().splitlines()
    first = json.loads(lines[0])
    first["repeated_frames"] = {"front": 10}
    meta.extras_path(root).write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")

    flags = episode_flags(Source(root))
    names = [sorted(f["flag"] for f in ep) for ep in flags]
    assert names == [
        ["repeated frames"],
        ["idle start/end", "loop rate", "overruns"],
        ["jerky actions"],
        ["length"],
    ], flags
    idle_detail = next(f["detail"] for f in flags[1] if f["flag"] == "idle start/end")
    assert idle_detail == "1.5 s idle at the start, 0.0 s at the end"
    assert any("frame 30" in f["detail"] for f in flags[2])
    # looser thresholds silence them
    loose = Thresholds(
        rate_fraction=0.5,
        overrun_fraction=0.1,
        repeated_fraction=0.5,
        idle_s=2.0,
        length_low=0.1,
        jerk_fraction=1.0,
    )
    assert episode_flags(Source(root), loose) == [[], [], [], []]
    assert set(Thresholds().describe()) == {
        "loop rate",
        "overruns",
        "repeated frames",
        "idle start/end",
        "length",
        "jerky actions",
    }
