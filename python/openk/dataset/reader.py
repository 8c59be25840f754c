"""A torch-free reader for LeRobot v3.0 datasets (ours or lerobot's), local or on the Hub.

Episode rows are read with pyarrow filters from the one data file the episode lives in, so
reading an episode costs one small parquet read, not a pass over the dataset.
"""

from __future__ import annotations

import contextlib
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from openk.dataset import layout, meta
from openk.dataset.features import image_keys
from openk.dataset.stats import Stats
from openk.errors import DatasetError
from openk.repo_id import validate_repo_id

Format = Literal["numpy", "arrow", "pandas"]


def open_dataset(
    source: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    download_videos: bool = True,
) -> DatasetReader:
    """Open a dataset directory, or a repo id (local `$HF_LEROBOT_HOME/<repo_id>` first, else a
    Hub snapshot via huggingface_hub)."""
    path = Path(source).expanduser()
    if root is None and meta.info_path(path).exists():
        return DatasetReader(path)
    repo_id = validate_repo_id(str(source))
    local = Path(root).expanduser() if root is not None else layout.default_root(repo_id)
    if meta.info_path(local).exists():
        return DatasetReader(local, repo_id=repo_id)
    try:
        from huggingface_hub import snapshot_download

        patterns = None if download_videos else ["meta/*", "meta/**", "data/**"]
        with contextlib.ExitStack() as locks:
            if root is not None:  # downloaded into a local root: its one writer meanwhile
                locks.enter_context(layout.lock_dataset(local))
            downloaded = snapshot_download(
                repo_id,
                repo_type="dataset",
                revision=revision,
                local_dir=str(local) if root is not None else None,
                allow_patterns=patterns,
            )
    except DatasetError:
        raise
    except Exception as exc:  # huggingface_hub raises many types; all mean "not available"
        raise DatasetError(
            f"dataset {repo_id!r} is neither at {local} nor downloadable from the Hub: {exc}"
        ) from exc
    return DatasetReader(Path(downloaded), repo_id=repo_id)


class DatasetReader:
    """Read-only view of a v3.0 dataset at `root`."""

    def __init__(self, root: str | os.PathLike[str], *, repo_id: str | None = None) -> None:
        from openk.dataset.edit import pending_edit

        self.root = Path(root)
        self.repo_id = repo_id
        why = pending_edit(self.root)  # read-only: the next openk command finishes it
        if why:
            raise DatasetError(why)
        try:
            self.info: dict[str, Any] = meta.load_info(self.root)
        except (OSError, ValueError) as exc:
            raise DatasetError(
                f"{meta.info_path(self.root)} is missing or not valid JSON: {exc}"
            ) from exc
        self.fps = int(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]

    # ------------------------------------------------------------------ metadata
    @property
    def total_episodes(self) -> int:
        return int(self.info["total_episodes"])

    @property
    def total_frames(self) -> int:
        return int(self.info["total_frames"])

    @cached_property
    def tasks(self) -> list[str]:
        return meta.task_texts(self.root)

    @cached_property
    def episodes(self) -> pa.Table:
        """One row per episode (without the per-episode stats columns), in episode order."""
        return meta.read_episodes(self.root)

    def list_episodes(self) -> list[dict[str, Any]]:
        """[{episode_index, length, tasks, duration_s}] for every episode."""
        t = self.episodes
        return [
            {
                "episode_index": int(e),
                "length": int(n),
                "tasks": list(tasks),
                "duration_s": int(n) / self.fps,
            }
            for e, n, tasks in zip(
                t.column("episode_index").to_pylist(),
                t.column("length").to_pylist(),
                t.column("tasks").to_pylist(),
                strict=True,
            )
        ]

    @cached_property
    def stats(self) -> dict[str, Stats]:
        return meta.read_stats(self.root)

    def joint_names(self, feature: str) -> list[str]:
        names = self.features[feature].get("names")
        if isinstance(names, dict):  # older datasets: {"motors": [...]}
            names = next(iter(names.values()))
        if not names:
            return [f"{feature}[{i}]" for i in range(int(self.features[feature]["shape"][0]))]
        return [str(n) for n in names]

    def _episode_row(self, episode_index: int) -> dict[str, Any]:
        t = self.episodes
        if not 0 <= episode_index < t.num_rows:
            raise DatasetError(
                f"episode {episode_index} does not exist; the dataset has {t.num_rows} episodes"
            )
        row: dict[str, Any] = t.slice(episode_index, 1).to_pylist()[0]
        return row

    # ------------------------------------------------------------------ rows
    def episode_table(self, episode_index: int, columns: list[str] | None = None) -> pa.Table:
        """The episode's data rows as a pyarrow Table (pyarrow filter on `episode_index`)."""
        row = self._episode_row(episode_index)
        path = meta.data_path_of(
            self.root, self.info, row["data/chunk_index"], row["data/file_index"]
        )
        return pq.read_table(path, columns=columns, filters=[("episode_index", "=", episode_index)])

    def feature(
        self, episode_index: int, feature: str, fmt: Format = "numpy"
    ) -> np.ndarray | pa.Table | Any:
        """One vector feature of an episode: numpy (n, d), or a pyarrow/pandas table whose
        columns are the joint names."""
        if feature not in self.features or self.features[feature]["dtype"] in ("video", "image"):
            raise DatasetError(f"{feature!r} is not a numeric feature of this dataset")
        col = self.episode_table(episode_index, columns=[feature]).column(feature).combine_chunks()
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            width = int(self.features[feature]["shape"][0])
            values = np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(-1, width)
        else:
            values = np.asarray(col.to_numpy(zero_copy_only=False)).reshape(-1, 1)
        if fmt == "numpy":
            return values
        names = self.joint_names(feature) if values.shape[1] > 1 else [feature]
        table = pa.table({n: values[:, i] for i, n in enumerate(names)})
        if fmt == "arrow":
            return table
        if fmt == "pandas":
            return table.to_pandas()
        raise DatasetError(f"unknown format {fmt!r}; use 'numpy', 'arrow' or 'pandas'")

    def actions(self, episode_index: int, fmt: Format = "numpy") -> Any:
        return self.feature(episode_index, "action", fmt)

    def states(self, episode_index: int, fmt: Format = "numpy") -> Any:
        return self.feature(episode_index, "observation.state", fmt)

    # ------------------------------------------------------------------ cameras
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] in ("video", "image")]

    def camera_frames(self, episode_index: int, key: str) -> np.ndarray:
        """All frames of a camera for an episode -> (n, H, W, 3) uint8 RGB."""
        if key not in self.features and "observation.images." + key in self.features:
            key = "observation.images." + key
        feat = self.features.get(key)
        if feat is None or feat["dtype"] not in ("video", "image"):
            raise DatasetError(f"{key!r} is not a camera of this dataset: {self.camera_keys()}")
        row = self._episode_row(episode_index)
        if feat["dtype"] == "image":
            from openk.dataset.images import decode_png

            return np.stack([decode_png(png) for png in self.image_pngs(episode_index, key)])
        from openk.dataset.video import decode_frames

        path = meta.video_path_of(
            self.root,
            self.info,
            key,
            row[f"videos/{key}/chunk_index"],
            row[f"videos/{key}/file_index"],
        )
        return decode_frames(
            path, float(row[f"videos/{key}/from_timestamp"]), int(row["length"]), self.fps
        )

    def image_pngs(self, episode_index: int, key: str) -> list[bytes]:
        """An image camera's (dtype `image`) stored PNG bytes for an episode, in frame order,
        undecoded: one read of that camera's column for the episode."""
        feat = self.features.get(key)
        if feat is None or feat["dtype"] != "image":
            raise DatasetError(
                f"{key!r} is not an image camera of this dataset: {image_keys(self.features)}"
            )
        table = self.episode_table(episode_index, columns=["frame_index", key])
        col = table.sort_by("frame_index").column(key).combine_chunks()
        return [bytes(png) for png in col.field("bytes").to_pylist()]
