"""`verify(root)`: consistency checks of a LeRobot v3.0 dataset, reported in plain words.

It checks what makes lerobot fail or silently misbehave: totals, index continuity, episode
boundaries, timestamps, video frame counts and offsets, stats shapes, and leftovers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from openk.dataset import layout, meta
from openk.dataset.features import STAT_NAMES
from openk.dataset.journal import JOURNAL_DIR, list_journal

_TOLERANCE_S = 1e-4


@dataclass
class VerifyReport:
    root: Path
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"{self.root}: OK ({', '.join(self.checked)})"
        lines = [f"{self.root}: {len(self.problems)} problem(s)"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def verify(root: str | os.PathLike[str], *, check_videos: bool = True) -> VerifyReport:
    """Check the dataset at `root`; `report.ok` is True when nothing is wrong."""
    report = VerifyReport(Path(root))
    try:
        _verify(report, Path(root), check_videos)
    except Exception as exc:  # a broken dataset can break any read; that is a finding too
        report.problems.append(f"the dataset could not be read completely: {exc!r}")
    return report


def _verify(report: VerifyReport, root: Path, check_videos: bool) -> None:
    problems = report.problems
    if not meta.info_path(root).exists():
        problems.append(f"{meta.INFO_PATH} is missing: this is not a LeRobot v3.0 dataset")
        return
    info = meta.load_info(root)
    if info.get("codebase_version") != meta.CODEBASE_VERSION:
        problems.append(f"codebase_version is {info.get('codebase_version')!r}, expected 'v3.0'")
    fps = int(info["fps"])
    features: dict[str, dict[str, Any]] = info["features"]
    total_episodes = int(info.get("total_episodes", 0))
    total_frames = int(info.get("total_frames", 0))
    total_tasks = int(info.get("total_tasks", 0))
    for key in features:
        if "/" in key:
            problems.append(f"feature name {key!r} contains '/'")
    _check_leftovers(report, root)

    # ---- tasks
    tasks_path = meta.tasks_path(root)
    n_tasks = 0
    if tasks_path.exists():
        tasks = pq.read_table(tasks_path)
        n_tasks = tasks.num_rows
        pandas = json.loads((tasks.schema.metadata or {}).get(b"pandas", b"{}"))
        if pandas.get("index_columns") != ["task"]:
            problems.append(
                f"{meta.TASKS_PATH} lacks the pandas index metadata: lerobot would return the "
                "task number instead of the task text"
            )
        if tasks.column("task_index").to_pylist() != list(range(n_tasks)):
            problems.append(f"{meta.TASKS_PATH} task_index is not 0..T-1 in order")
    elif total_episodes:
        problems.append(f"{meta.TASKS_PATH} is missing")
    if n_tasks != total_tasks:
        problems.append(f"info.json says {total_tasks} tasks but tasks.parquet has {n_tasks}")
    report.checked.append("tasks")

    # ---- episodes metadata
    episodes: list[dict[str, Any]] = []
    for f in meta.episode_files(root):
        try:
            t = meta.read_episode_file(f)
        except (pa.ArrowInvalid, OSError) as exc:
            problems.append(f"{f.relative_to(root)} is not a readable parquet file ({exc})")
            continue
        chunk, file = _chunk_file(f)
        for row in t.to_pylist():
            row["_file"] = (chunk, file)
            episodes.append(row)
    if len(episodes) != total_episodes:
        problems.append(
            f"info.json says {total_episodes} episodes but {meta.EPISODES_DIR} holds "
            f"{len(episodes)}"
        )
    expected_from = 0
    for pos, ep in enumerate(episodes):
        e = ep["episode_index"]
        if e != pos:
            problems.append(f"episode rows are out of order: row {pos} is episode {e}")
            break
        if ep["dataset_from_index"] != expected_from:
            problems.append(
                f"episode {e} starts at global index {ep['dataset_from_index']}, "
                f"expected {expected_from}"
            )
        if ep["dataset_to_index"] - ep["dataset_from_index"] != ep["length"]:
            problems.append(f"episode {e}: dataset_to_index - dataset_from_index != length")
        if (
            meta.EPISODES_CHUNK_COLUMN in ep
            and (ep[meta.EPISODES_CHUNK_COLUMN], ep[meta.EPISODES_FILE_COLUMN]) != ep["_file"]
        ):
            problems.append(
                f"episode {e}: {meta.EPISODES_DIR} chunk/file index does not name its own file"
            )
        expected_from = ep["dataset_to_index"]
    if episodes and sum(ep["length"] for ep in episodes) != total_frames:
        problems.append(
            f"info.json says {total_frames} frames but the episode lengths add up to "
            f"{sum(ep['length'] for ep in episodes)}"
        )
    report.checked.append("episodes")

    # ---- data rows
    data_files = sorted((root / "data").glob("*/*.parquet"))
    expected_cols = {k for k, f in features.items() if f["dtype"] != "video"}
    next_index = 0
    rows_by_episode: dict[int, int] = {}
    for f in data_files:
        rel = f.relative_to(root)
        try:
            pf = pq.ParquetFile(f)
        except (pa.ArrowInvalid, OSError) as exc:
            problems.append(f"{rel} is not a complete parquet file ({exc}); lerobot cannot load it")
            continue
        cols = set(pf.schema_arrow.names)
        if cols != expected_cols:
            extra, missing = sorted(cols - expected_cols), sorted(expected_cols - cols)
            problems.append(
                f"{rel}: columns differ from the features (extra {extra}, missing {missing})"
            )
            continue
        t = pf.read(columns=["index", "episode_index", "frame_index", "timestamp", "task_index"])
        index = t.column("index").to_numpy()
        if len(index) and (index[0] != next_index or np.any(np.diff(index) != 1)):
            problems.append(f"{rel}: global index is not continuous from {next_index}")
        next_index += len(index)
        ep_idx = t.column("episode_index").to_numpy()
        frame_idx = t.column("frame_index").to_numpy()
        ts = t.column("timestamp").to_numpy()
        if not np.array_equal(ts.astype(np.float32), (frame_idx / fps).astype(np.float32)):
            problems.append(f"{rel}: timestamp is not frame_index/fps for every row")
        task_idx = t.column("task_index").to_numpy()
        if len(task_idx) and (task_idx.min() < 0 or task_idx.max() >= max(n_tasks, 1)):
            problems.append(f"{rel}: task_index outside 0..{n_tasks - 1}")
        chunk, file = _chunk_file(f)
        for e in np.unique(ep_idx):
            mask = ep_idx == e
            rows_by_episode[int(e)] = rows_by_episode.get(int(e), 0) + int(mask.sum())
            fi = frame_idx[mask]
            if not np.array_equal(fi, np.arange(len(fi))):
                problems.append(f"{rel}: episode {e} frame_index is not 0..{len(fi) - 1}")
            if 0 <= e < len(episodes):
                ep = episodes[e]
                if (ep["data/chunk_index"], ep["data/file_index"]) != (chunk, file):
                    problems.append(
                        f"episode {e}: its rows are in {rel}, not the file its metadata names"
                    )
                if int(index[mask][0]) != ep["dataset_from_index"]:
                    problems.append(
                        f"episode {e}: first global index differs from dataset_from_index"
                    )
            else:
                problems.append(f"{rel}: rows of episode {e}, which has no metadata")
    if next_index != total_frames:
        problems.append(
            f"info.json says {total_frames} frames but the data files hold {next_index} rows"
        )
    for ep in episodes:
        got = rows_by_episode.get(ep["episode_index"], 0)
        if got != ep["length"]:
            problems.append(
                f"episode {ep['episode_index']}: {got} data rows for length {ep['length']}"
            )
    report.checked.append("data")

    # ---- videos
    if check_videos:
        _check_videos(report, root, info, features, episodes, fps)

    # ---- stats
    stats = meta.load_stats_json(root)
    if stats is not None:
        for key, feat in features.items():
            if feat["dtype"] == "string":
                continue
            per = stats.get(key)
            if per is None:
                problems.append(f"stats.json has no entry for {key!r} (lerobot-train needs it)")
                continue
            for name in STAT_NAMES:
                if name not in per:
                    problems.append(f"stats.json {key!r} lacks {name!r}")
                    continue
                shape = np.asarray(per[name]).shape
                if name == "count":
                    want: tuple[int, ...] = (1,)
                elif feat["dtype"] in ("video", "image"):
                    want = (3, 1, 1)
                else:
                    want = tuple(int(s) for s in feat["shape"])
                if shape != want:
                    problems.append(f"stats.json {key!r} {name} has shape {shape}, expected {want}")
            if feat["dtype"] in ("video", "image") and "min" in per and "max" in per:
                lo, hi = np.min(per["min"]), np.max(per["max"])
                if lo < 0 or hi > 1:
                    problems.append(f"stats.json {key!r} is not in [0, 1] units")
        report.checked.append("stats")
    elif total_episodes:
        problems.append(f"{meta.STATS_PATH} is missing (lerobot-train needs it)")


def _check_videos(
    report: VerifyReport,
    root: Path,
    info: dict[str, Any],
    features: dict[str, dict[str, Any]],
    episodes: list[dict[str, Any]],
    fps: int,
) -> None:
    from openk.dataset.video import frame_numbers_of_packets

    problems = report.problems
    template = str(info.get("video_path") or meta.VIDEO_PATH_TEMPLATE)
    for key, feat in features.items():
        if feat["dtype"] != "video":
            continue
        by_file: dict[Path, list[dict[str, Any]]] = {}
        for ep in episodes:
            chunk = ep.get(f"videos/{key}/chunk_index")
            if chunk is None:
                problems.append(f"episode {ep['episode_index']}: no video location for {key!r}")
                continue
            path = root / template.format(
                video_key=key, chunk_index=chunk, file_index=ep[f"videos/{key}/file_index"]
            )
            by_file.setdefault(path, []).append(ep)
            start, end = ep[f"videos/{key}/from_timestamp"], ep[f"videos/{key}/to_timestamp"]
            if abs((end - start) - ep["length"] / fps) > _TOLERANCE_S:
                problems.append(
                    f"episode {ep['episode_index']} {key}: video span {end - start:.4f}s does not "
                    f"match its {ep['length']} frames"
                )
            if abs(start * fps - round(start * fps)) > _TOLERANCE_S * fps:
                problems.append(
                    f"episode {ep['episode_index']} {key}: from_timestamp {start} is not on a frame"
                )
        for path, eps in by_file.items():
            rel = path.relative_to(root)
            if not path.exists():
                problems.append(f"{rel} is missing (lerobot would try the Hub)")
                continue
            try:
                numbers = sorted(frame_numbers_of_packets(path, fps))
            except Exception as exc:
                problems.append(f"{rel} cannot be read as a video ({exc})")
                continue
            frames = len(numbers)
            if numbers != list(range(frames)):
                problems.append(
                    f"{rel}: frame times are not one frame every 1/{fps} s from 0 "
                    "(lerobot would raise FrameTimestampError)"
                )
            needed = max(round(ep[f"videos/{key}/to_timestamp"] * fps) for ep in eps)
            if frames < needed:
                problems.append(f"{rel} has {frames} frames, episodes need {needed}")
            elif frames > needed:
                problems.append(f"{rel} has {frames - needed} frames no episode refers to")
        present = (
            set((root / "videos" / key).glob("*/*.mp4"))
            if (root / "videos" / key).exists()
            else set()
        )
        for orphan in sorted(present - set(by_file)):
            problems.append(f"{orphan.relative_to(root)} is not used by any episode")
    report.checked.append("videos")


def _check_leftovers(report: VerifyReport, root: Path) -> None:
    for tmp in sorted(root.rglob("*" + layout.TEMP_SUFFIX)):
        report.problems.append(f"leftover temp file {tmp.relative_to(root)}")
    if (root / layout.OPENK_DIR / "commit.json").exists():
        report.problems.append(
            "an episode commit was interrupted; resume the dataset (or `openk recover`) "
            "to finish it"
        )
    if (root / JOURNAL_DIR).exists():
        for entry in list_journal(root):
            report.problems.append(
                f"unsaved episode in the journal ({entry.describe()}); run `openk recover` to "
                "save or discard it"
            )
    if (root / "images").exists() and any(p.is_file() for p in (root / "images").rglob("*")):
        report.problems.append("images/ holds staged frames from an interrupted lerobot recording")


def _chunk_file(path: Path) -> tuple[int, int]:
    try:
        return int(path.parent.name.split("-")[1]), int(path.stem.split("-")[1])
    except (IndexError, ValueError):
        return -1, -1
