"""The real lerobot 0.6.1 loads what openk writes: every frame, both video backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from synth import features, record_episode

from openk.dataset import DatasetWriter, VideoConfig, verify
from openk.dataset.reader import open_dataset

FPS = 30
CAMS = {"front": (64, 96), "wrist": (48, 64)}


def _expected_numbers(lengths: list[int]) -> list[int]:
    out: list[int] = []
    for n in lengths:
        out += list(range(n))
    return out


def _write(root: Path, lengths: list[int], tasks: list[str], **kwargs: Any) -> None:
    cams = kwargs.pop("cams", CAMS)
    writer = DatasetWriter.create(
        "openk/test",
        FPS,
        features(cams, video=kwargs.pop("video", True)),
        root=root,
        robot_type="openk-1-alpha_follower",
        **kwargs,
    )
    with writer:
        for n, task in zip(lengths, tasks, strict=True):
            record_episode(writer, n, FPS, cams, task=task)
            writer.save_episode({"note": "synthetic"})


def _check(result: dict[str, Any], lengths: list[int], tasks: list[str], cams: dict) -> None:
    total = sum(lengths)
    expected_tasks = [t for n, t in zip(lengths, tasks, strict=True) for _ in range(n)]
    for backend, r in result.items():
        assert r["len"] == total == r["total_frames"], backend
        assert r["total_episodes"] == len(lengths)
        assert r["tasks"] == expected_tasks
        # state[0] carries the row number within the episode: rows kept their order
        assert r["state0"] == [float(x) for x in _expected_numbers(lengths)]
        for key in cams:
            assert r["numbers"][f"observation.images.{key}"] == _expected_numbers(lengths), backend
            mid = r["window_mid"]
            pos = _expected_numbers(lengths)[mid]
            want = [max(pos - 1, 0), pos]
            assert r["window"][f"observation.images.{key}"] == want
        assert r["action_window_shape"][0] == 2
        assert set(r["stats_keys"]) >= {f"observation.images.{k}" for k in cams} | {"action"}


@pytest.mark.oracle
def test_lerobot_reads_every_av1_frame_with_both_backends(tmp_path: Path, lerobot_load) -> None:
    lengths, tasks = [45, 31, 20], ["pick the cube", "place the cube", "pick the cube"]
    root = tmp_path / "ds"
    _write(root, lengths, tasks)
    report = verify(root)
    assert report.ok, str(report)
    _check(lerobot_load(root), lengths, tasks, CAMS)
    # the torch-free reader agrees with lerobot about the pixels
    reader = open_dataset(root)
    from synth import frame_numbers

    assert frame_numbers(reader.camera_frames(1, "front")) == list(range(31))


@pytest.mark.oracle
def test_lerobot_reads_h264_and_rolled_files(tmp_path: Path, lerobot_load) -> None:
    lengths, tasks = [30, 25, 20], ["a", "b", "a"]
    root = tmp_path / "ds"
    cams = {"front": (48, 64)}
    # tiny size limits force lerobot-style rolling to new data and video files
    writer = DatasetWriter.create(
        "openk/test",
        FPS,
        features(cams),
        root=root,
        video=VideoConfig(vcodec="h264"),
        data_files_size_in_mb=0.001,
        video_files_size_in_mb=0.001,
        chunks_size=2,
    )
    with writer:
        for n, task in zip(lengths, tasks, strict=True):
            record_episode(writer, n, FPS, cams, task=task)
            writer.save_episode()
    assert (root / "data/chunk-001/file-000.parquet").exists()
    assert (root / "videos/observation.images.front/chunk-001/file-000.mp4").exists()
    assert writer.info["features"]["observation.images.front"]["info"]["video.codec"] == "h264"
    assert verify(root).ok, str(verify(root))
    _check(lerobot_load(root), lengths, tasks, cams)


@pytest.mark.oracle
def test_lerobot_reads_png_image_datasets(tmp_path: Path, lerobot_load) -> None:
    lengths, tasks = [20, 15], ["pick", "pick"]
    root = tmp_path / "ds"
    cams = {"front": (48, 64)}
    _write(root, lengths, tasks, cams=cams, video=False)
    assert not (root / "videos").exists()
    assert verify(root).ok, str(verify(root))
    _check(lerobot_load(root, backends=("pyav",)), lengths, tasks, cams)
