"""Resume: lerobot appends to our datasets, we append to lerobot's, and mismatches are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from ds_synth import check_lerobot_result, features, record_episode

from openk.dataset import DatasetWriter, open_dataset, verify
from openk.errors import DatasetError

FPS = 30
CAMS = {"front": (48, 64)}


def _ours(root: Path, lengths: list[int], task: str = "pick") -> None:
    with DatasetWriter.create(
        "openk/test", FPS, features(CAMS), root=root, robot_type="openk-1-alpha_follower"
    ) as writer:
        for n in lengths:
            record_episode(writer, n, FPS, CAMS, task=task)
            writer.save_episode()


def _append_ours(root: Path, lengths: list[int], task: str) -> None:
    with DatasetWriter.resume(
        "openk/test",
        root=root,
        fps=FPS,
        robot_type="openk-1-alpha_follower",
        features=features(CAMS),
    ) as writer:
        for n in lengths:
            record_episode(writer, n, FPS, CAMS, task=task)
            writer.save_episode()


@pytest.mark.oracle
def test_lerobot_resume_appends_to_our_dataset_and_we_continue(
    tmp_path: Path, lerobot_record, lerobot_load
) -> None:
    root = tmp_path / "ds"
    _ours(root, [25, 20])
    out = lerobot_record(root, "resume", [(18, "lerobot task")], features(CAMS), CAMS)
    assert out["total_episodes"] == 3
    _append_ours(root, [22], "pick")  # and openk continues after lerobot's episode
    report = verify(root)
    assert report.ok, str(report)
    lengths, tasks = [25, 20, 18, 22], ["pick", "pick", "lerobot task", "pick"]
    check_lerobot_result(lerobot_load(root), lengths, tasks, CAMS)
    assert [e["length"] for e in open_dataset(root).list_episodes()] == lengths


@pytest.mark.oracle
def test_we_append_to_a_dataset_lerobot_wrote(tmp_path: Path, lerobot_record, lerobot_load) -> None:
    root = tmp_path / "ds"
    lerobot_record(
        root, "create", [(20, "lerobot task"), (15, "lerobot task")], features(CAMS), CAMS
    )
    _append_ours(root, [24, 12], "openk task")
    report = verify(root)
    assert report.ok, str(report)
    lengths = [20, 15, 24, 12]
    tasks = ["lerobot task", "lerobot task", "openk task", "openk task"]
    check_lerobot_result(lerobot_load(root), lengths, tasks, CAMS)
    # lerobot's files were never rewritten: ours went to new files
    assert (root / "data/chunk-000/file-001.parquet").exists()
    assert (root / "videos/observation.images.front/chunk-000/file-001.mp4").exists()


def test_resume_refuses_another_fps_robot_or_schema(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _ours(root, [5])
    before = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    with pytest.raises(DatasetError, match="fps 50 differs"):
        DatasetWriter.resume("openk/test", root=root, fps=50)
    with pytest.raises(DatasetError, match="robot type 'so100' differs"):
        DatasetWriter.resume("openk/test", root=root, robot_type="so100")
    other = features(CAMS)
    other["action"] = {"dtype": "float32", "shape": [6], "names": [f"j{i}" for i in range(6)]}
    with pytest.raises(DatasetError, match="feature 'action': shape"):
        DatasetWriter.resume("openk/test", root=root, features=other)
    extra = {
        **features(CAMS),
        "observation.images.top": features({"top": (48, 64)})["observation.images.top"],
    }
    with pytest.raises(DatasetError, match=r"'observation\.images\.top' is new"):
        DatasetWriter.resume("openk/test", root=root, features=extra)
    after = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert before == after


def test_create_refuses_an_existing_dataset(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _ours(root, [5])
    with pytest.raises(DatasetError, match="already exists"):
        DatasetWriter.create("openk/test", FPS, features(CAMS), root=root)


def test_resume_of_a_missing_dataset_says_so(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no dataset at"):
        DatasetWriter.resume("openk/test", root=tmp_path / "nothing")
