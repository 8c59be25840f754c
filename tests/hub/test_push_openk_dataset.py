"""A dataset written by openk's own DatasetWriter goes to the fake Hub and back intact, and
lerobot 0.6.1 loads it by repo id."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakehub import FakeHub
from hubdata import HEIGHT, LENGTHS, WIDTH, snapshot, write_openk_dataset

from openk.dataset import verify
from openk.hub import files_to_upload, pull_dataset, push_dataset

LOAD = """
import json
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset(REPO_ID)
actions = [[float(x) for x in ds[k]["action"]] for k in range(len(ds))]
print(json.dumps({"episodes": ds.num_episodes, "frames": ds.num_frames, "actions": actions,
                  "image": list(ds[0]["observation.images.front"].shape)}))
"""


@pytest.mark.oracle
def test_openk_written_dataset_round_trips_and_lerobot_loads_it_by_repo_id(
    fake_hub: FakeHub,
    hub_env: dict[str, str],
    run_oracle: Callable[..., Any],
    tmp_path: Path,
) -> None:
    root = tmp_path / "openk_made"
    write_openk_dataset(root)
    assert verify(root).ok, str(verify(root))
    local = snapshot(root)
    repo_id = "tester/openk_made"

    result = push_dataset(root, repo_id, endpoint=fake_hub.endpoint)

    assert snapshot(root) == local
    uploaded = files_to_upload(root)
    assert not any(rel.startswith(".openk") for rel in result.files)
    pulled = pull_dataset(repo_id, tmp_path / "pulled", endpoint=fake_hub.endpoint)
    for rel in uploaded:
        assert (pulled / rel).read_bytes() == local[rel], rel
    assert verify(pulled).ok, str(verify(pulled))

    env = {
        **hub_env,
        "HF_HOME": str(tmp_path / "oracle_home"),
        "HF_LEROBOT_HOME": str(tmp_path / "lerobot_home"),
    }
    loaded = run_oracle(LOAD.replace("REPO_ID", json.dumps(repo_id)), **env)
    assert loaded["episodes"] == len(LENGTHS)
    assert loaded["frames"] == sum(LENGTHS)
    expected = [[ep, k, ep * 100 + k] for ep, n in enumerate(LENGTHS) for k in range(n)]
    assert loaded["actions"] == expected
    assert loaded["image"] == [3, HEIGHT, WIDTH]
    assert fake_hub.unknown_routes() == []
