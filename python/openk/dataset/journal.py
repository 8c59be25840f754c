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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from openk.dataset import layout
from openk.dataset.video import count_packets

JOURNAL_DIR = f"{layout.OPENK_DIR}/journal"


@dataclass
class JournalEpisode:
    """An episode found in the journal, as offered back to the user."""

    path: Path
    task: str
    fps: int
    rows: int
    frames: dict[str, int]
    saved: dict[str, Any] | None

    def recoverable_length(self, video_keys: list[str], image_keys: list[str]) -> int:
        counts = [self.rows]
        counts += [self.frames.get(k, 0) for k in video_keys]
        counts += [self.frames.get(k, 0) for k in image_keys]
        return min(counts)

    @property
    def length(self) -> int:
        return min([self.rows, *self.frames.values()])

    @property
    def duration_s(self) -> float:
        return self.length / self.fps if self.fps else 0.0

    def describe(self) -> str:
        state = (
            "saved, not yet committed" if self.saved is not None else "interrupted while recording"
        )
        return f"task {self.task!r}, {self.length} frames ({self.duration_s:.1f} s), {state}"


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


def list_journal(root: Path) -> list[JournalEpisode]:
    """Episodes left in the journal of the dataset at `root`, oldest first."""
    base = Path(root) / JOURNAL_DIR
    if not base.is_dir():
        return []
    out = []
    for folder in sorted(
        base.iterdir(),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else 0,
    ):
        if not folder.is_dir():
            continue
        try:
            meta = json.loads((folder / "episode.json").read_text())
        except (OSError, ValueError):
            meta = {"task": "", "fps": 0}
        saved = None
        if (folder / "saved.json").exists():
            try:
                saved = json.loads((folder / "saved.json").read_text())
            except ValueError:
                saved = {}
        frames: dict[str, int] = {}
        for item in folder.iterdir():
            if item.suffix == ".mp4":
                frames[item.stem] = count_packets(item)
            elif item.is_dir():
                frames[item.name] = _count_pngs(item)
        out.append(
            JournalEpisode(
                path=folder,
                task=str(meta.get("task", "")),
                fps=int(meta.get("fps", 0)),
                rows=read_journal_rows(folder).num_rows,
                frames=frames,
                saved=saved,
            )
        )
    return out


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
