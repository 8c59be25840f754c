"""The LeRobot v3.0 metadata, in one place: where each file lives and how it is read and written.

`meta/info.json` (format version, fps, features, totals, path templates), `meta/tasks.parquet`
(task text ↔ task_index, with the pandas index metadata lerobot needs), `meta/episodes/`
(one row per episode: its files, index range and per-episode stats), `meta/stats.json` (the
aggregated stats) and our own `meta/openk/episodes.jsonl` (loop telemetry, repeated frames).
The writer, the reader, `verify`, the Hub upload and the dataset tools all go through here;
nothing else spells these paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from openk.dataset import stats
from openk.dataset.features import STAT_NAMES
from openk.dataset.layout import json_bytes, write_bytes_to
from openk.errors import DatasetError

CODEBASE_VERSION = "v3.0"
DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200

META_DIR = "meta"
INFO_PATH = f"{META_DIR}/info.json"
STATS_PATH = f"{META_DIR}/stats.json"
TASKS_PATH = f"{META_DIR}/tasks.parquet"
EPISODES_DIR = f"{META_DIR}/episodes"
# Our per-episode extras (loop telemetry, repeated camera frames); lerobot ignores the folder.
EXTRAS_PATH = f"{META_DIR}/openk/episodes.jsonl"

DATA_PATH_TEMPLATE = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH_TEMPLATE = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH_TEMPLATE = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"

# Columns of an episode row naming the episodes file that holds the row.
EPISODES_CHUNK_COLUMN = f"{EPISODES_DIR}/chunk_index"
EPISODES_FILE_COLUMN = f"{EPISODES_DIR}/file_index"


# ---------------------------------------------------------------------------- file names
def data_file(chunk: int, file: int) -> str:
    return DATA_PATH_TEMPLATE.format(chunk_index=chunk, file_index=file)


def video_file(key: str, chunk: int, file: int) -> str:
    return VIDEO_PATH_TEMPLATE.format(video_key=key, chunk_index=chunk, file_index=file)


def episodes_file(chunk: int, file: int) -> str:
    return EPISODES_PATH_TEMPLATE.format(chunk_index=chunk, file_index=file)


def next_file_index(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    """lerobot's numbering: file_index counts up to chunks_size-1, then a new chunk starts."""
    file += 1
    if file >= chunks_size:
        return chunk + 1, 0
    return chunk, file


def data_path_of(root: Path, info: Mapping[str, Any], chunk: int, file: int) -> Path:
    """The data file of (chunk, file), by the dataset's own `data_path` template."""
    template = str(info.get("data_path") or DATA_PATH_TEMPLATE)
    return root / template.format(chunk_index=chunk, file_index=file)


def video_path_of(root: Path, info: Mapping[str, Any], key: str, chunk: int, file: int) -> Path:
    """The video file of camera `key` at (chunk, file), by the dataset's `video_path` template."""
    template = str(info.get("video_path") or VIDEO_PATH_TEMPLATE)
    return root / template.format(video_key=key, chunk_index=chunk, file_index=file)


# ---------------------------------------------------------------------------- info.json
def info_path(root: Path) -> Path:
    return Path(root) / INFO_PATH


def has_dataset(root: Path) -> bool:
    """Whether `root` holds a dataset (its info.json exists)."""
    return info_path(root).is_file()


def load_info(root: Path) -> dict[str, Any]:
    """info.json as a dict; OSError / ValueError as they come (callers word them)."""
    info: dict[str, Any] = json.loads(info_path(root).read_text(encoding="utf-8"))
    return info


def read_info(root: Path) -> dict[str, Any]:
    """info.json, or DatasetError naming what is wrong and what to do."""
    path = info_path(root)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"{path} does not exist: {root} is not a LeRobot dataset root "
            "(pass the folder that contains meta/, data/ and videos/)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is unreadable ({exc}); run `openk verify {root}`") from exc
    if not isinstance(info, dict):
        raise DatasetError(f"{path} is not a JSON object; run `openk verify {root}`")
    return info


def new_info(
    fps: int,
    features: Mapping[str, Any],
    *,
    robot_type: str | None,
    chunks_size: int,
    data_files_size_in_mb: float,
    video_files_size_in_mb: float,
    has_videos: bool,
) -> dict[str, Any]:
    """info.json of a dataset with no episode yet."""
    return {
        "codebase_version": CODEBASE_VERSION,
        "fps": fps,
        "features": dict(features),
        "total_episodes": 0,
        "total_frames": 0,
        "total_tasks": 0,
        "chunks_size": chunks_size,
        "data_files_size_in_mb": data_files_size_in_mb,
        "video_files_size_in_mb": video_files_size_in_mb,
        "data_path": DATA_PATH_TEMPLATE,
        "video_path": VIDEO_PATH_TEMPLATE if has_videos else None,
        "robot_type": robot_type,
        "splits": {},
    }


def info_after_episode(
    info: Mapping[str, Any],
    *,
    episode_index: int,
    total_frames: int,
    total_tasks: int,
    video_info: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """A copy of `info` once episode `episode_index` is in: totals, split, and the `info`
    block of each video feature that had none."""
    out: dict[str, Any] = json.loads(json.dumps(info))
    for key, block in video_info.items():
        out["features"][key]["info"] = dict(block)
    out["total_episodes"] = episode_index + 1
    out["total_frames"] = total_frames
    out["total_tasks"] = total_tasks
    out["splits"] = {"train": f"0:{episode_index + 1}"}
    return out


def info_writer(info: Mapping[str, Any]) -> Callable[[Path], None]:
    return write_bytes_to(json_bytes(info))


# ---------------------------------------------------------------------------- tasks
def tasks_path(root: Path) -> Path:
    return Path(root) / TASKS_PATH


def read_tasks(root: Path) -> dict[str, int]:
    """{task text: task_index}; empty when the dataset has no tasks file yet."""
    path = tasks_path(root)
    if not path.exists():
        return {}
    t = pq.read_table(path)
    return {
        str(task): int(index)
        for task, index in zip(
            t.column("task").to_pylist(), t.column("task_index").to_pylist(), strict=True
        )
    }


def task_texts(root: Path) -> list[str]:
    """The task texts in task_index order."""
    table = pq.read_table(tasks_path(root)).sort_by("task_index")
    return [str(t) for t in table.column("task").to_pylist()]


def tasks_writer(tasks: Mapping[str, int]) -> Callable[[Path], None]:
    """tasks.parquet as lerobot writes it through pandas: the task text is the index."""
    ordered = sorted(tasks.items(), key=lambda kv: kv[1])
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.3.3",
    }
    schema = pa.schema(
        [("task_index", pa.int64()), ("task", pa.string())],
        metadata={b"pandas": json.dumps(pandas_meta).encode()},
    )
    table = pa.Table.from_pydict(
        {"task_index": [i for _, i in ordered], "task": [t for t, _ in ordered]}, schema=schema
    )

    def produce(tmp: Path) -> None:
        pq.write_table(table, str(tmp), compression="snappy")

    return produce


# ---------------------------------------------------------------------------- episodes
def episode_files(root: Path) -> list[Path]:
    """The episodes parquet files, in (chunk, file) order."""
    return sorted((Path(root) / EPISODES_DIR).glob("*/*.parquet"))


def read_episode_file(path: Path) -> pa.Table:
    """One episodes file without its per-episode stats columns."""
    names = pq.read_schema(path).names
    return pq.read_table(path, columns=[n for n in names if not n.startswith("stats/")])


def read_episodes(root: Path) -> pa.Table:
    """One row per episode (without the per-episode stats columns), in episode order."""
    files = episode_files(root)
    if not files:
        return pa.table({"episode_index": pa.array([], pa.int64())})
    tables = [read_episode_file(f) for f in files]
    return pa.concat_tables(tables, promote_options="default").sort_by("episode_index")


def last_episode_row(root: Path) -> dict[str, Any] | None:
    """The newest episode's row (without stats), or None when there is none."""
    files = episode_files(root)
    if not files:
        return None
    t = pq.read_table(files[-1])
    if t.num_rows == 0:
        return None
    cols = [c for c in t.column_names if not c.startswith("stats/")]
    row: dict[str, Any] = t.select(cols).slice(t.num_rows - 1, 1).to_pylist()[0]
    return row


def episode_row(
    *,
    episode_index: int,
    task: str,
    length: int,
    data_chunk: int,
    data_file: int,
    from_index: int,
    video_columns: Mapping[str, Any],
    episode_stats: Mapping[str, stats.Stats],
) -> dict[str, Any]:
    """An episode's row for meta/episodes (its own file's chunk/file are added on writing)."""
    import numpy as np

    row: dict[str, Any] = {
        "episode_index": episode_index,
        "tasks": [task],
        "length": length,
        "data/chunk_index": data_chunk,
        "data/file_index": data_file,
        "dataset_from_index": from_index,
        "dataset_to_index": from_index + length,
        **video_columns,
    }
    for key, per in episode_stats.items():
        for name in STAT_NAMES:
            row[f"stats/{key}/{name}"] = np.asarray(per[name]).tolist()
    return row


def video_columns(key: str, chunk: int, file: int, from_s: float, to_s: float) -> dict[str, Any]:
    """An episode row's columns locating camera `key`'s frames."""
    return {
        f"videos/{key}/chunk_index": chunk,
        f"videos/{key}/file_index": file,
        f"videos/{key}/from_timestamp": from_s,
        f"videos/{key}/to_timestamp": to_s,
    }


def episodes_schema(features: Mapping[str, Mapping[str, Any]], video_keys_: list[str]) -> pa.Schema:
    fields: list[pa.Field] = [
        pa.field("episode_index", pa.int64()),
        pa.field("tasks", pa.list_(pa.string())),
        pa.field("length", pa.int64()),
        pa.field("data/chunk_index", pa.int64()),
        pa.field("data/file_index", pa.int64()),
        pa.field("dataset_from_index", pa.int64()),
        pa.field("dataset_to_index", pa.int64()),
    ]
    for key in video_keys_:
        fields += [
            pa.field(f"videos/{key}/chunk_index", pa.int64()),
            pa.field(f"videos/{key}/file_index", pa.int64()),
            pa.field(f"videos/{key}/from_timestamp", pa.float64()),
            pa.field(f"videos/{key}/to_timestamp", pa.float64()),
        ]
    cube = pa.list_(pa.list_(pa.list_(pa.float64())))
    for key, feat in features.items():
        if feat["dtype"] == "string":
            continue
        value_type = cube if feat["dtype"] in ("video", "image") else pa.list_(pa.float64())
        for name in STAT_NAMES:
            fields.append(
                pa.field(
                    f"stats/{key}/{name}", pa.list_(pa.int64()) if name == "count" else value_type
                )
            )
    fields += [
        pa.field(EPISODES_CHUNK_COLUMN, pa.int64()),
        pa.field(EPISODES_FILE_COLUMN, pa.int64()),
    ]
    return pa.schema(fields)


def episodes_writer(
    features: Mapping[str, Mapping[str, Any]], video_keys_: list[str], rows: list[dict[str, Any]]
) -> Callable[[Path], None]:
    schema = episodes_schema(features, video_keys_)
    table = pa.Table.from_pylist(rows, schema=schema)

    def produce(tmp: Path) -> None:
        pq.write_table(table, str(tmp), compression="snappy")

    return produce


# ---------------------------------------------------------------------------- stats
def stats_path(root: Path) -> Path:
    return Path(root) / STATS_PATH


def load_stats_json(root: Path) -> dict[str, Any] | None:
    """stats.json as plain JSON, or None when the file does not exist."""
    path = stats_path(root)
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def read_stats(root: Path) -> dict[str, stats.Stats]:
    """The aggregated stats as numpy arrays; empty when there is no stats.json."""
    raw = load_stats_json(root)
    return {} if raw is None else stats.from_jsonable(raw)


def stats_writer(values: Mapping[str, stats.Stats]) -> Callable[[Path], None]:
    return write_bytes_to(json_bytes(stats.to_jsonable(dict(values))))


# ---------------------------------------------------------------------------- our extras
def extras_path(root: Path) -> Path:
    return Path(root) / EXTRAS_PATH


def extras_writer(root: Path, extra: Mapping[str, Any]) -> Callable[[Path], None]:
    """The extras file with one more line (`extra`) appended."""
    path = extras_path(root)
    old = path.read_bytes() if path.exists() else b""
    return write_bytes_to(old + (json.dumps(extra) + "\n").encode())
