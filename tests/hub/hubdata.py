"""Small LeRobot-shaped dataset folders and helpers for the Hub tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa

from openk.cameras import synthetic_frame
from openk.dataset import DatasetWriter

DATASET_FILES = sorted(
    [
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-000.parquet",
        "videos/observation.images.front/chunk-000/file-000.mp4",
    ]
)


def write_dataset_tree(root: Path, *, payload_bytes: int = 200_000, seed: int = 0) -> Path:
    """A LeRobot-v3-shaped folder (real info.json shape, random payloads) plus junk to skip.

    The parquet/mp4 contents are random bytes: Hub tests check transport, not decoding.
    """
    rng = random.Random(seed)
    info = {
        "codebase_version": "v3.0",
        "robot_type": "openk-1-alpha_follower",
        "total_episodes": 2,
        "total_frames": 60,
        "total_tasks": 1,
        "chunks_size": 1000,
        "fps": 30,
        "splits": {"train": "0:2"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            "observation.images.front": {"dtype": "video", "shape": [48, 64, 3]},
            "action": {"dtype": "float32", "shape": [7]},
        },
    }
    files = {
        "meta/info.json": json.dumps(info, indent=2).encode(),
        "meta/stats.json": b'{"action": {"mean": [0.0]}}',
        "meta/tasks.parquet": rng.randbytes(2_000),
        "meta/episodes/chunk-000/file-000.parquet": rng.randbytes(5_000),
        "data/chunk-000/file-000.parquet": rng.randbytes(payload_bytes),
        "videos/observation.images.front/chunk-000/file-000.mp4": rng.randbytes(payload_bytes),
    }
    junk = {
        "images/observation.images.front/episode-000002/frame-000000.png": b"\x89PNG staging",
        "meta/.journal/episode-000002.arrow": b"journal",
        ".openk/journal/ep-2/rows.arrows": b"openk journal",
        "data/chunk-000/file-001.parquet.openk-tmp": b"openk temp",
        ".staging/data.parquet": b"staging",
        "data/chunk-000/file-001.parquet.tmp": b"partial",
        "meta/info.json.lock": b"lock",
        "videos/observation.images.front/chunk-000/.file-001.mp4.part": b"partial",
        "notes.txt": b"not part of the dataset",
    }
    for rel, data in {**files, **junk}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (to prove a failed push left it untouched)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# openk datasets written by openk's own DatasetWriter (one AV1 camera)
FPS = 15
LENGTHS = (12, 9)
HEIGHT, WIDTH = 48, 64
NAMES = ["a", "b", "c"]


def write_openk_dataset(root: Path) -> None:
    features = {
        "observation.state": {"dtype": "float32", "shape": [3], "names": NAMES},
        "action": {"dtype": "float32", "shape": [3], "names": NAMES},
        "capture_time_ns": {"dtype": "int64", "shape": [1], "names": None},
        "observation.images.front": {
            "dtype": "video",
            "shape": [HEIGHT, WIDTH, 3],
            "names": ["height", "width", "channels"],
        },
    }
    period = 1_000_000_000 // FPS
    with DatasetWriter.create(
        "tester/openk_made", FPS, features, root=root, robot_type="openk-1-alpha_follower"
    ) as writer:
        for episode, frames in enumerate(LENGTHS):
            writer.start_episode(f"task {episode}")
            t0 = 1_000_000_000 + episode * 10_000_000_000
            for k in range(frames):
                writer.add_camera_frame(
                    "front", synthetic_frame(k, HEIGHT, WIDTH), t0 + k * period - period // 3
                )
            values = np.array(
                [[episode, k, episode * 100 + k] for k in range(frames)], dtype=np.float32
            ).reshape(-1)
            vector = pa.FixedSizeListArray.from_arrays(pa.array(values), 3)
            times = pa.array([t0 + k * period for k in range(frames)], pa.int64())
            writer.add_rows(
                pa.table({"capture_time_ns": times, "observation.state": vector, "action": vector})
            )
            writer.save_episode()
