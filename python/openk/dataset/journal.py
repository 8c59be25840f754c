"""The crash journal: episodes not yet committed, and the commit redo log.

`.openk/journal/ep-<n>/` holds an episode while it records (and until its commit finished):
`episode.json` (task), `rows.arrows` (Arrow IPC stream, flushed per batch), one fragmented
`<camera>.mp4` per video camera (readable up to its last whole fragment), or `<camera>/` PNG
frames for image datasets, and `saved.json` once `save_episode` was called.

`.openk/commit.json` lists the temp -> final renames of a commit whose temp files are complete;
`roll_forward` finishes them after a crash, so a commit is all-or-nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from openk.dataset import layout, meta
from openk.dataset.video import WRITING_SUFFIX, count_packets, wait_for_writer

JOURNAL_DIR = f"{layout.OPENK_DIR}/journal"


@dataclass
class JournalEpisode:
    """An episode found in the journal, as offered back to the user.

    `length` is THE decision of what a recovery keeps: the rows up to the last frame that
    every camera of the dataset holds whole on disk. `describe` announces exactly that, and
    the writer keeps exactly that (nothing when it is 0).
    """

    path: Path
    task: str
    fps: int
    rows: int
    frames: dict[str, int]
    saved: dict[str, Any] | None
    # The dataset's camera features: each needs a frame per kept row (a missing file: 0).
    cameras: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return min([self.rows, *(self.frames.get(k, 0) for k in self.cameras)])

    @property
    def duration_s(self) -> float:
        return self.length / self.fps if self.fps else 0.0

    def _short_cameras(self) -> list[str]:
        return [k for k in self.cameras if self.frames.get(k, 0) < self.rows]

    def describe(self) -> str:
        state = (
            "saved, not yet committed" if self.saved is not None else "interrupted while recording"
        )
        head = f"task {self.task!r}"
        if self.rows == 0:
            return f"{head}, no rows recorded, {state}: nothing to keep"
        short = self._short_cameras()
        if self.length == 0:
            missing = ", ".join(repr(k) for k in short)
            return (
                f"{head}, {self.rows} rows but no whole camera frame on disk for {missing} (the "
                f"recording stopped before the video was written), {state}: nothing can be kept"
            )
        if short:
            counts = ", ".join(f"{k!r} has {self.frames.get(k, 0)}" for k in short)
            return (
                f"{head}, {self.length} of its {self.rows} rows ({self.duration_s:.1f} s; the "
                f"camera video ends there: {counts} frames), {state}"
            )
        return f"{head}, {self.length} frames ({self.duration_s:.1f} s), {state}"


def read_journal_rows(folder: Path) -> pa.Table:
    """Every whole batch of the rows journal (a torn last batch is ignored)."""
    path = folder / "rows.arrows"
    batches: list[pa.RecordBatch] = []
    schema = None
    try:
        with open(path, "rb") as fh:
            reader = pa.ipc.open_stream(fh)
            schema = reader.schema
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
                except (pa.ArrowInvalid, OSError):
                    break
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return pa.table({})
    if schema is None:
        return pa.table({})
    return pa.Table.from_batches(batches, schema=schema)


def _count_pngs(folder: Path) -> int:
    n = 0
    while (folder / f"frame-{n:06d}.png").exists():
        n += 1
    return n


def _camera_keys(root: Path) -> list[str] | None:
    """The camera features of the dataset at `root` (None if its info.json is unreadable)."""
    from openk.dataset.features import camera_keys

    try:
        info = json.loads(meta.info_path(root).read_text())
        return camera_keys(info["features"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _committing_journal(root: Path) -> Path | None:
    """The journal entry of a commit interrupted after its redo log (`roll_forward` ends it)."""
    try:
        record = json.loads((root / layout.OPENK_DIR / "commit.json").read_text())
        return root / str(record["journal"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_journal(root: Path) -> list[JournalEpisode]:
    """Episodes left in the journal of the dataset at `root`, oldest first."""
    base = Path(root) / JOURNAL_DIR
    if not base.is_dir():
        return []
    cameras = _camera_keys(Path(root))
    committing = _committing_journal(Path(root))
    out = []
    for folder in sorted(
        base.iterdir(),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else 0,
    ):
        if not folder.is_dir() or folder == committing:
            continue  # an episode whose commit passed its commit point is not pending
        try:
            started = json.loads((folder / "episode.json").read_text())
        except (OSError, ValueError):
            started = {"task": "", "fps": 0}
        saved = None
        if (folder / "saved.json").exists():
            try:
                saved = json.loads((folder / "saved.json").read_text())
            except (OSError, ValueError):
                saved = {}
        frames: dict[str, int] = {}
        try:
            if not _recorder_alive(started):
                # the recorder died: its encoder process may still be writing out the frames
                # it holds (the file may not even exist yet)
                for marker in folder.glob("*" + WRITING_SUFFIX):
                    wait_for_writer(marker.with_name(marker.name[: -len(WRITING_SUFFIX)]))
            for item in folder.iterdir():
                if item.suffix == ".mp4":
                    frames[item.stem] = count_packets(item)
                elif item.is_dir():
                    frames[item.name] = _count_pngs(item)
        except FileNotFoundError:
            continue  # committed (or discarded) by a live recorder meanwhile
        out.append(
            JournalEpisode(
                path=folder,
                task=str(started.get("task", "")),
                fps=int(started.get("fps", 0)),
                rows=read_journal_rows(folder).num_rows,
                frames=frames,
                saved=saved,
                cameras=sorted(frames) if cameras is None else cameras,
            )
        )
    return out


def _recorder_alive(started: dict[str, Any]) -> bool:
    """Is the process that recorded the episode (its pid in episode.json) still running?"""
    pid = started.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def roll_forward(root: Path) -> None:
    """Finish a commit interrupted after its redo log was written; drop stray temp files."""
    root = Path(root)
    log_path = root / layout.OPENK_DIR / "commit.json"
    if log_path.exists():
        record = json.loads(log_path.read_text())
        dirs = set()
        for tmp_rel, final_rel in record["renames"]:
            tmp, final = root / tmp_rel, root / final_rel
            if tmp.exists():
                os.replace(tmp, final)
                dirs.add(final.parent)
        for d in dirs:
            layout.fsync_dir(d)
        journal = root / record["journal"]
        if journal.exists():
            import shutil

            shutil.rmtree(journal, ignore_errors=True)
        log_path.unlink()
        layout.fsync_dir(log_path.parent)
    # Temp files without a redo log belong to a commit that never reached its commit point.
    for pattern in (
        "meta/*" + layout.TEMP_SUFFIX,
        "meta/*/*" + layout.TEMP_SUFFIX,
        "meta/*/*/*" + layout.TEMP_SUFFIX,
        "data/*/*" + layout.TEMP_SUFFIX,
        "videos/*/*/*" + layout.TEMP_SUFFIX,
    ):
        for stray in root.glob(pattern):
            stray.unlink(missing_ok=True)
