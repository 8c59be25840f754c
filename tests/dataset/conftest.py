"""Fixtures of the dataset tests: synthetic recordings and lerobot-oracle checks."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import openk.cameras as cameras

DATA = Path(__file__).resolve().parent.parent / "data" / "dataset"

# The synthetic-frame decoder, shipped to the oracle as source (it cannot import openk).
_DECODER_SOURCE = "\n".join(
    [
        "import numpy as np",
        f"_GRID_ROWS, _GRID_COLS = {cameras._GRID_ROWS}, {cameras._GRID_COLS}",
        inspect.getsource(cameras._block_bounds),
        inspect.getsource(cameras.read_synthetic_number),
    ]
)

_FRAME_SOURCE = "\n".join(
    [
        "ConfigError = ValueError",
        f"SYNTHETIC_MAX_FRAMES = {cameras.SYNTHETIC_MAX_FRAMES}",
        inspect.getsource(cameras._synthetic_background),
        inspect.getsource(cameras._draw_bits),
        inspect.getsource(cameras.synthetic_frame),
    ]
)

# Records episodes with lerobot's own writer (create or resume), with the frames and rows
# openk's tests use: frame k shows the number k, observation.state[0] == k.
_RECORD_SNIPPET = r"""
import json, os, time
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
DECODER
FRAMES
cfg = json.loads(os.environ["OPENK_TEST_CFG"])
cams = {k: tuple(v) for k, v in cfg["cams"].items()}
if cfg["mode"] == "create":
    ds = LeRobotDataset.create(cfg["repo_id"], cfg["fps"], cfg["features"], root=cfg["root"],
                               robot_type=cfg["robot_type"], use_videos=True,
                               streaming_encoding=cfg.get("streaming", False))
else:
    ds = LeRobotDataset.resume(cfg["repo_id"], root=cfg["root"],
                               streaming_encoding=cfg.get("streaming", False))
n_state = cfg["features"]["observation.state"]["shape"][0]
n_action = cfg["features"]["action"]["shape"][0]
waits = []
for length, task in cfg["episodes"]:
    for k in range(length):
        state = np.sin(np.arange(n_state, dtype=np.float32) + k * 0.1).astype(np.float32)
        state[0] = k
        frame = {"observation.state": state, "action": state[:n_action] + 0.01,
                 "capture_time_ns": np.array([k], dtype=np.int64), "task": task}
        for i, (key, (h, w)) in enumerate(cams.items()):
            frame[f"observation.images.{key}"] = synthetic_frame(k, h, w, tint=i * 20)
        ds.add_frame(frame)
    t = time.perf_counter()
    ds.save_episode()
    waits.append(time.perf_counter() - t)
ds.finalize()
print(json.dumps({"total_episodes": ds.meta.total_episodes, "waits": waits}))
""".replace("DECODER", _DECODER_SOURCE).replace("FRAMES", _FRAME_SOURCE)


@pytest.fixture(scope="session")
def lerobot_record(run_oracle: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """Record episodes [(length, task), ...] with lerobot's writer (mode create|resume)."""

    def record(
        root: Path,
        mode: str,
        episodes: list[tuple[int, str]],
        features: dict[str, Any],
        cams: dict[str, tuple[int, int]],
        repo_id: str = "openk/test",
        fps: int = 30,
        robot_type: str = "openk-1-alpha_follower",
        streaming: bool = False,
    ) -> dict[str, Any]:
        user_features = {
            k: v
            for k, v in features.items()
            if k not in ("timestamp", "frame_index", "episode_index", "index", "task_index")
        }
        cfg = {
            "root": str(root),
            "mode": mode,
            "episodes": episodes,
            "features": user_features,
            "cams": cams,
            "repo_id": repo_id,
            "fps": fps,
            "robot_type": robot_type,
            "streaming": streaming,
        }
        return run_oracle(_RECORD_SNIPPET, OPENK_TEST_CFG=json.dumps(cfg), HF_HUB_OFFLINE="1")

    return record


_LOAD_SNIPPET = r"""
import json, os, sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
DECODER
cfg = json.loads(os.environ["OPENK_TEST_CFG"])
root, repo_id, fps = cfg["root"], cfg["repo_id"], cfg["fps"]
result = {}
for backend in cfg["backends"]:
    ds = LeRobotDataset(repo_id, root=root, video_backend=backend)
    cams = list(ds.meta.camera_keys)
    numbers = {k: [] for k in cams}
    tasks, state0, episodes = [], [], []
    for i in range(len(ds)):
        item = ds[i]
        assert isinstance(item["task"], str), type(item["task"])
        tasks.append(item["task"])
        state0.append(float(item["observation.state"][0]))
        episodes.append(int(item["episode_index"]))
        for k in cams:
            img = (item[k].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
            numbers[k].append(read_synthetic_number(img))
    window = LeRobotDataset(
        repo_id, root=root, video_backend=backend,
        delta_timestamps={**{k: [-1 / fps, 0] for k in cams}, "action": [0, 1 / fps]},
    )
    mid = len(window) // 2
    w = window[mid]
    win = {k: [read_synthetic_number((f.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8))
               for f in w[k]] for k in cams}
    result[backend] = {
        "len": len(ds), "total_frames": ds.meta.total_frames,
        "total_episodes": ds.meta.total_episodes,
        "numbers": numbers, "tasks": tasks, "state0": state0, "episodes": episodes,
        "window_mid": mid, "window": win, "action_window_shape": list(w["action"].shape),
        "stats_keys": sorted(ds.meta.stats.keys()) if ds.meta.stats else [],
    }
print(json.dumps(result))
""".replace("DECODER", _DECODER_SOURCE)


@pytest.fixture(scope="session")
def lerobot_load(run_oracle: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """Load a dataset in the real lerobot 0.6.1, read every frame with the given backends."""

    def load(
        root: Path,
        repo_id: str = "openk/test",
        fps: int = 30,
        backends: tuple[str, ...] = ("pyav", "torchcodec"),
    ) -> dict[str, Any]:
        cfg = {"root": str(root), "repo_id": repo_id, "fps": fps, "backends": list(backends)}
        return run_oracle(_LOAD_SNIPPET, OPENK_TEST_CFG=json.dumps(cfg), HF_HUB_OFFLINE="1")

    return load


@pytest.fixture(scope="session")
def decoder_source() -> str:
    return _DECODER_SOURCE
