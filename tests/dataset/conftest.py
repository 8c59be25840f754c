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
