"""lerobot 0.6.1 (the oracle venv) loads a dataset pushed by openk.hub, by repo id only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakehub import FakeHub
from hubdata import snapshot

from openk.hub import pull_dataset, push_dataset

pytestmark = pytest.mark.oracle

EPISODES = 2
FRAMES = 8

# Runs in the oracle: lerobot writes a small dataset (with one camera) into ROOT.
CREATE = """
import json
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
features = {
    "action": {"dtype": "float32", "shape": [3], "names": ["a", "b", "c"]},
    "observation.state": {"dtype": "float32", "shape": [3], "names": ["a", "b", "c"]},
    "observation.images.front": {
        "dtype": "video", "shape": [32, 48, 3], "names": ["height", "width", "channels"]
    },
}
ds = LeRobotDataset.create("tester/lerobot_made", fps=10, features=features, root=ROOT,
                           robot_type="openk-1-alpha_follower", use_videos=True)
for ep in range(EPISODES):
    for i in range(FRAMES):
        value = np.array([ep, i, ep * 100 + i], dtype=np.float32)
        image = np.full((32, 48, 3), (ep * 40 + i * 10) % 256, dtype=np.uint8)
        ds.add_frame({"action": value, "observation.state": value * 2,
                      "observation.images.front": image, "task": f"pick {ep}"})
    ds.save_episode()
ds.finalize()
print(json.dumps({"ok": True}))
"""

# Runs in the oracle with HF_ENDPOINT at the fake Hub: load by repo id, read every frame.
LOAD = """
import json
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset(REPO_ID)
rows = []
for k in range(len(ds)):
    item = ds[k]
    rows.append({
        "episode": int(item["episode_index"]),
        "action": [float(x) for x in item["action"]],
        "task": item["task"],
        "image_shape": list(item["observation.images.front"].shape),
    })
print(json.dumps({"root": str(ds.root), "revision": ds.revision, "episodes": ds.num_episodes,
                  "frames": ds.num_frames, "rows": rows}))
"""


# huggingface_hub 1.33's RepoCard.validate posts to https://huggingface.co/api/validate-yaml
# whatever HF_ENDPOINT says, so lerobot's push cannot finish offline; skip only that call.
LEROBOT_PUSH = """
from huggingface_hub import RepoCard
RepoCard.validate = lambda self, repo_type=None: None
ds.push_to_hub(private=True)
"""


def create_code(root: Path, *, push: bool = False) -> str:
    """The oracle snippet that writes the lerobot dataset at root (and pushes it if asked)."""
    code = CREATE.replace("EPISODES", str(EPISODES)).replace("FRAMES", str(FRAMES))
    code = code.replace("ROOT", repr(str(root)))
    return code.replace("ds.finalize()", "ds.finalize()" + (LEROBOT_PUSH if push else ""))


def test_lerobot_loads_a_pushed_dataset_by_repo_id(
    fake_hub: FakeHub,
    hub_env: dict[str, str],
    run_oracle: Callable[..., Any],
    tmp_path: Path,
) -> None:
    root = tmp_path / "lerobot_made"
    run_oracle(create_code(root), HF_HOME=str(tmp_path / "oracle_home"))
    local = snapshot(root)
    assert any(rel.endswith(".mp4") for rel in local)

    repo_id = "tester/lerobot_made"
    result = push_dataset(root, repo_id, endpoint=fake_hub.endpoint, tags=["openk"])
    assert result.tag == "v3.0"
    assert snapshot(root) == local

    env = {
        **hub_env,
        "HF_HOME": str(tmp_path / "oracle_home"),
        "HF_LEROBOT_HOME": str(tmp_path / "lerobot_home"),
    }
    loaded = run_oracle(LOAD.replace("REPO_ID", json.dumps(repo_id)), **env)

    assert loaded["revision"] == "v3.0"
    assert loaded["episodes"] == EPISODES
    assert loaded["frames"] == EPISODES * FRAMES
    assert Path(loaded["root"]).is_relative_to(tmp_path / "lerobot_home")
    expected = [[ep, i, ep * 100 + i] for ep in range(EPISODES) for i in range(FRAMES)]
    assert [row["action"] for row in loaded["rows"]] == expected
    assert [row["task"] for row in loaded["rows"]] == [
        f"pick {ep}" for ep in range(EPISODES) for _ in range(FRAMES)
    ]
    assert all(row["image_shape"] == [3, 32, 48] for row in loaded["rows"])
    assert fake_hub.unknown_routes() == []
    assert fake_hub.requests("GET", "/resolve/") or fake_hub.requests("GET", "/xet-read-token/")


def test_dataset_pushed_by_lerobot_pulls_with_openk(
    fake_hub: FakeHub,
    hub_env: dict[str, str],
    run_oracle: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """The fake Hub also serves lerobot's own push_to_hub (huggingface_hub 1.x in the oracle)."""
    root = tmp_path / "lerobot_made"
    env = {**hub_env, "HF_HOME": str(tmp_path / "oracle_home")}
    run_oracle(create_code(root, push=True), **env)
    repo = fake_hub.repo("tester/lerobot_made")
    assert repo.private is True
    assert repo.tags["v3.0"] == repo.branches["main"]

    pulled = pull_dataset("tester/lerobot_made", tmp_path / "pulled", endpoint=fake_hub.endpoint)
    local = snapshot(root)
    for rel, data in local.items():
        assert (pulled / rel).read_bytes() == data, rel
    assert "LeRobot" in (pulled / "README.md").read_text()
    assert fake_hub.unknown_routes() == []
