"""Where datasets live and how their files are replaced atomically (temp + fsync + rename).

The LeRobot metadata itself (paths, info, tasks, episodes, stats) is `openk.dataset.meta`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openk.repo_id import validate_repo_id


def crash_point(env_var: str, name: str) -> None:
    """A test hook: when the environment variable `env_var` equals `name`, the process kills
    itself (SIGKILL, no cleanup) right here, so a test can crash it at a named step."""
    if os.environ.get(env_var) == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


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
