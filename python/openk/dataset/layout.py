"""Paths, names and atomic file replacement for the LeRobot v3.0 layout."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openk.repo_id import validate_repo_id

CODEBASE_VERSION = "v3.0"
DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200
DATA_PATH_TEMPLATE = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH_TEMPLATE = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH_TEMPLATE = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
# Our private state (journal, commit log). push must skip it, like lerobot skips images/.
OPENK_DIR = ".openk"
TEMP_SUFFIX = ".openk-tmp"


def lerobot_home() -> Path:
    """`$HF_LEROBOT_HOME`, else `$HF_HOME/lerobot`, else `~/.cache/huggingface/lerobot`."""
    if os.environ.get("HF_LEROBOT_HOME"):
        return Path(os.environ["HF_LEROBOT_HOME"]).expanduser()
    hf_home = os.environ.get("HF_HOME")
    base = Path(hf_home).expanduser() if hf_home else Path.home() / ".cache" / "huggingface"
    return base / "lerobot"


def default_root(repo_id: str) -> Path:
    return lerobot_home() / validate_repo_id(repo_id)


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


def temp_path_for(final: Path) -> Path:
    # The suffix keeps temp files out of lerobot's `*/*.parquet` globs.
    return final.with_name(final.name + TEMP_SUFFIX)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(final: Path, produce: Callable[[Path], None]) -> Path:
    """Let `produce` write a complete temp file next to `final`; fsync it; return its path."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    try:
        produce(tmp)
        fsync_file(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def replace_atomically(final: Path, produce: Callable[[Path], None]) -> None:
    """temp + fsync + rename: readers see the old file or the new one, never a torn one."""
    tmp = write_temp(final, produce)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=4, ensure_ascii=False) + "\n").encode()


def write_bytes_to(data: bytes) -> Callable[[Path], None]:
    def produce(path: Path) -> None:
        with open(path, "wb") as fh:
            fh.write(data)

    return produce


def describe_os_error(exc: OSError, what: str) -> str:
    """Plain-words message for an OSError hit while writing a dataset."""
    import errno

    hint = "check the path and free space"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "the disk is full; free space, then resume (the episode journal is kept)"
    elif exc.errno == errno.EFBIG:
        hint = "a file size limit was hit (disk quota or ulimit -f); raise it, then resume"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "the location is not writable; choose another --dataset.root or fix permissions"
    return f"{what}: {exc.strerror or exc} ({hint})"
