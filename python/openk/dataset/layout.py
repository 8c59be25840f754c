"""Where datasets live, how their files are replaced atomically (temp + fsync + rename), and
the one-writer lock of a dataset (`lock_dataset`).

The LeRobot metadata itself (paths, info, tasks, episodes, stats) is `openk.dataset.meta`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; a dataset is then not guarded against a second writer
    fcntl = None  # type: ignore[assignment]

from openk.errors import DatasetBusyError, DatasetError
from openk.repo_id import validate_repo_id


def crash_point(env_var: str, name: str, pause_var: str | None = None) -> None:
    """A test hook: when the environment variable `env_var` equals `name`, the process kills
    itself (SIGKILL, no cleanup) right here, so a test can crash it at a named step. When
    `pause_var` equals `name`, it stops itself (SIGSTOP) instead, until a test continues it."""
    import signal

    if os.environ.get(env_var) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if pause_var is not None and os.environ.get(pause_var) == name:
        os.kill(os.getpid(), signal.SIGSTOP)


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


# ------------------------------------------------------------------------ one writer per dataset
# Beside the dataset root, keyed by its real path (an in-place edit renames the root, so a file
# inside it would move): `<parent>/.<name>.openk-lock`, flock-ed by the one process writing the
# dataset and holding its pid and command line for the message a second writer gets. The OS
# drops the flock when the process dies, so a kill -9 leaves no lock that blocks anyone.
LOCK_SUFFIX = ".openk-lock"
_held: dict[Path, list[Any]] = {}  # lock file -> [fd or None, count]: this process's locks
_held_guard = threading.Lock()


def lock_path(root: Path) -> Path:
    real = Path(os.path.realpath(root))
    return real.parent / f".{real.name}{LOCK_SUFFIX}"


class DatasetLock:
    """This process writes the dataset; `release` (or leaving the `with`) ends that."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._released = False

    def release(self) -> None:
        with _held_guard:
            if self._released:
                return
            self._released = True
            entry = _held[self.path]
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[self.path]
            if entry[0] is not None:
                # unlinked while still locked: a process that opened it meanwhile sees its
                # lock on a file no longer at the path and opens the path again
                with contextlib.suppress(OSError):
                    self.path.unlink()
                os.close(entry[0])

    def __enter__(self) -> DatasetLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError:
        text = ""
    pid, _, command = text.partition("\n")
    if not pid.strip():
        return "another openk process"
    return f"process {pid.strip()}" + (f" ({command.strip()})" if command.strip() else "")


def _this_command() -> str:
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    # `python -m openk.cli` runs .../openk/cli.py: the user knows it as `openk`
    name = "openk" if program.parts[-2:] == ("openk", "cli.py") else program.name
    return " ".join([name, *sys.argv[1:]])[:300]


def busy_error(root: Path, holder: str, outcome: str = "nothing was changed") -> DatasetBusyError:
    """The one message for a dataset that `holder` (see `dataset_writer`) is writing."""
    busy = DatasetBusyError(
        f"{root} is being written by {holder} (a recording or an edit is in progress); wait "
        f"for it to finish or stop it, then try again ({outcome})"
    )
    busy.holder = holder
    return busy


def lock_dataset(root: Path) -> DatasetLock:
    """Take the one-writer lock of the dataset at `root` (it need not exist yet), for the whole
    time this process writes it; a process may take it again (nested), each taking released.

    Raises DatasetBusyError, naming the other process, when a live process holds it."""
    path = lock_path(root)
    with _held_guard:
        if path in _held:
            _held[path][1] += 1
            return DatasetLock(path)
        if fcntl is None:
            _held[path] = [None, 1]
            return DatasetLock(path)
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise DatasetError(
                    describe_os_error(exc, f"cannot create the dataset lock file {path}")
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder(fd)
                os.close(fd)
                raise busy_error(Path(os.path.realpath(root)), holder) from None
            try:
                here = os.stat(path)
                mine = os.fstat(fd)
                if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                    break
            except OSError:
                pass
            os.close(fd)  # its holder removed the file before we locked it: take the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{_this_command()}\n".encode(), 0)
        _held[path] = [fd, 1]
        return DatasetLock(path)


def dataset_writer(root: Path) -> str | None:
    """The other live process that writes the dataset at `root` ("process 123 (openk record
    ...)"), or None. It only looks (a shared lock taken and dropped at once)."""
    path = lock_path(root)
    with _held_guard:
        if fcntl is None or path in _held:
            return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file: nobody writes it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
