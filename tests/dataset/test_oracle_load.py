"""The real lerobot 0.6.1 loads what openk writes: every frame, both video backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ds_synth import check_lerobot_result, features, record_episode

from openk.dataset import DatasetWriter, VideoConfig, verify
from openk.dataset.reader import open_dataset

FPS = 30
CAMS = {"front": (64, 96), "wrist": (48, 64)}


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


@pytest.mark.oracle
def test_lerobot_reads_every_av1_frame_with_both_backends(tmp_path: Path, lerobot_load) -> None:
    lengths, tasks = [45, 31, 20], ["pick the cube", "place the cube", "pick the cube"]
    root = tmp_path / "ds"
    _write(root, lengths, tasks)
    report = verify(root)
    assert report.ok, str(report)
    check_lerobot_result(lerobot_load(root), lengths, tasks, CAMS)
    # the torch-free reader agrees with lerobot about the pixels
    reader = open_dataset(root)
    from ds_synth import frame_numbers

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
    check_lerobot_result(lerobot_load(root), lengths, tasks, cams)


@pytest.mark.oracle
def test_lerobot_reads_png_image_datasets(tmp_path: Path, lerobot_load) -> None:
    lengths, tasks = [20, 15], ["pick", "pick"]
    root = tmp_path / "ds"
    cams = {"front": (48, 64)}
    _write(root, lengths, tasks, cams=cams, video=False)
    assert not (root / "videos").exists()
    assert verify(root).ok, str(verify(root))
    check_lerobot_result(lerobot_load(root, backends=("pyav",)), lengths, tasks, cams)
