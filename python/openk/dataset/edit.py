"""Dataset edits: delete, trim, split, retask and merge LeRobot v3.0 datasets, losslessly.

Every edit is a list of `Pick`s (an episode of a source dataset, the frames kept, its task)
that `build` writes as a new, complete dataset: parquet rows copied and renumbered, videos
joined by packet copy (`remux`), the episodes, tasks and stats metadata rebuilt (`meta`) so the
stats equal the aggregate of the per-episode stats of the result, openk's per-episode telemetry
carried along. The result is verified before it is used.

In place, the swap is crash safe: the result is built beside the dataset, a marker file is
written, then `old -> backup`, `new -> place`, backup removed, marker removed. Whatever moment
a crash hits, `finish_interrupted_edit(root)` (run by `openk edit`, `verify`, `view`, `record`)
either rolls the swap forward (the marker exists: the new dataset is complete) or throws the
unfinished build away (no marker). A split builds both datasets (the one at --output beside
its final place, named in an intent file beside the dataset) before the one marker; the marker
also moves the output in, so a crash never leaves its episodes in both datasets. Beside the
output's build a second record names the source, so `finish_interrupted_edit(output)` finishes
(or drops) the split through its source too: a command run first on the output after a crash
never sees the output without the source rolled forward. Readers (`open_dataset`) refuse a
dataset (source or output) whose edit was committed but not finished, naming `openk verify`.

An edit holds the dataset lock (`layout.lock_dataset`) of what it writes (a split: the source
and the output) for its whole run, so a recording or another edit cannot write the dataset
meanwhile, and `finish_interrupted_edit` leaves alone an edit whose process is still alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from openk.dataset import layout, meta, stats
from openk.dataset.features import STAT_NAMES
from openk.dataset.remux import RemuxReport, Segment, keyframes, plan_segment, write_segments
from openk.errors import DatasetError

_MB = 1024 * 1024

# What `build` writes itself; anything else at the dataset's top level is copied along.
_LAYOUT_ENTRIES = {"meta", "data", "videos", "images", layout.OPENK_DIR}

# Test hooks: OPENK_EDIT_CRASH_AT=<point> kills the process (SIGKILL) at that point;
# OPENK_EDIT_PAUSE_AT=<point> stops it there (SIGSTOP) until a test continues it (SIGCONT).
CRASH_POINTS = ("build-data", "build-videos", "built", "marked", "old-moved", "new-moved")
SPLIT_CRASH_POINTS = (
    "build-data",
    "build-videos",
    "built",
    "marked",
    "output-moved",
    "old-moved",
    "new-moved",
)


def _crash_point(name: str) -> None:
    layout.crash_point("OPENK_EDIT_CRASH_AT", name, "OPENK_EDIT_PAUSE_AT")


# ------------------------------------------------------------------------------------ sources
class Source:
    """A dataset read for editing: info, full episode rows (with stats), tasks, telemetry."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.info: dict[str, Any] = meta.read_info(self.root)
        from openk.dataset.journal import JOURNAL_DIR, list_journal

        commit_log = self.root / layout.OPENK_DIR / "commit.json"
        writer = (
            layout.dataset_writer(self.root)
            if commit_log.exists() or (self.root / JOURNAL_DIR).exists()
            else None
        )
        if writer is not None:  # its journal is a recording in progress, not an interrupted one
            raise layout.busy_error(self.root, writer)
        if commit_log.exists() or list_journal(self.root):
            raise DatasetError(
                f"{self.root} holds an interrupted recording; run `openk recover {self.root}` "
                "(or `--discard`) before editing it"
            )
        if self.info.get("codebase_version") != meta.CODEBASE_VERSION:
            raise DatasetError(
                f"{self.root} is a {self.info.get('codebase_version')} dataset; openk edits "
                "v3.0 datasets (convert it with lerobot's converter first)"
            )
        self.fps = int(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        rows: list[dict[str, Any]] = []
        for f in meta.episode_files(self.root):
            rows += pq.read_table(f).to_pylist()  # with the per-episode stats
        self.episodes = sorted(rows, key=lambda r: int(r["episode_index"]))
        self.tasks: list[str] = (
            meta.task_texts(self.root) if meta.tasks_path(self.root).exists() else []
        )
        self._video_frames: dict[str, dict[Path, int]] = {}
        self.extras: dict[int, dict[str, Any]] = {}
        extras_path = meta.extras_path(self.root)
        if extras_path.exists():
            for line in extras_path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.extras[int(entry["episode_index"])] = entry

    @property
    def total_episodes(self) -> int:
        return len(self.episodes)

    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "video"]

    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "image"]

    def data_path(self, ep: dict[str, Any]) -> Path:
        return meta.data_path_of(
            self.root, self.info, ep["data/chunk_index"], ep["data/file_index"]
        )

    def video_path(self, key: str, ep: dict[str, Any]) -> Path:
        return meta.video_path_of(
            self.root,
            self.info,
            key,
            ep[f"videos/{key}/chunk_index"],
            ep[f"videos/{key}/file_index"],
        )

    def frames_in_video_file(self, key: str, path: Path) -> int:
        """Frames of camera `key` that the episodes keep in the video file `path`."""
        frames = sum(int(ep["length"]) for ep in self.episodes if self.video_path(key, ep) == path)
        return max(frames, 1)

    def video_first_frame(self, key: str, ep: dict[str, Any]) -> int:
        return round(float(ep[f"videos/{key}/from_timestamp"]) * self.fps)

    def rows(self, index: int, columns: Sequence[str] | None = None) -> pa.Table:
        """The episode's rows in frame order; `columns` reads only those (skipping, e.g., the
        PNG bytes of image cameras)."""
        ep = self.episodes[index]
        wanted = None if columns is None else list(dict.fromkeys(["frame_index", *columns]))
        table = pq.read_table(
            self.data_path(ep), columns=wanted, filters=[("episode_index", "=", index)]
        )
        return table.sort_by("frame_index")

    def check_episodes(self, episodes: Sequence[int], what: str) -> None:
        bad = [e for e in episodes if not 0 <= e < self.total_episodes]
        if bad:
            raise DatasetError(
                f"{what}: episode(s) {', '.join(map(str, bad))} do not exist in {self.root} "
                f"(it has episodes 0..{self.total_episodes - 1}); nothing was changed"
            )


@dataclass
class Pick:
    """One episode of the result: an episode of `source`, frames [start, end), its task."""

    source: Source
    index: int
    start: int = 0
    end: int | None = None
    task: str | None = None  # None: the source episode's task

    @property
    def source_length(self) -> int:
        return int(self.source.episodes[self.index]["length"])

    @property
    def stop(self) -> int:
        return self.source_length if self.end is None else self.end

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def trimmed(self) -> bool:
        return self.start != 0 or self.stop != self.source_length

    def source_task(self) -> str:
        tasks = self.source.episodes[self.index].get("tasks") or []
        return str(tasks[0]) if tasks else ""

    def result_task(self) -> str:
        return self.task if self.task is not None else self.source_task()


@dataclass
class Plan:
    """What an edit makes: the result's episodes, in order, and a description of the change."""

    picks: list[Pick]
    summary: list[str] = field(default_factory=list)

    @property
    def total_frames(self) -> int:
        return sum(p.length for p in self.picks)

    def video_work(self) -> dict[str, int]:
        """Frames to re-encode per camera (cuts inside a GOP), without writing anything."""
        work: dict[str, int] = {}
        cache: dict[Path, tuple[list[int], bool]] = {}
        for p in self.picks:
            if not p.trimmed:
                continue
            ep = p.source.episodes[p.index]
            for key in p.source.video_keys():
                path = p.source.video_path(key, ep)
                if path not in cache:
                    cache[path] = keyframes(path, p.source.fps)
                keys, reordered = cache[path]
                first = p.source.video_first_frame(key, ep) + p.start
                work[key] = work.get(key, 0) + plan_segment(keys, reordered, first, p.length)
        return work

    def describe(self) -> str:
        tasks = sorted({p.result_task() for p in self.picks})
        lines = list(self.summary)
        lines.append(
            f"result: {len(self.picks)} episode(s), {self.total_frames} frames, "
            f"{len(tasks)} task(s)"
        )
        work = self.video_work()
        if any(work.values()):
            for key, n in work.items():
                if n:
                    lines.append(f"video {key}: {n} frame(s) re-encoded (cuts inside a GOP)")
        else:
            lines.append("videos: packet copy, no frame re-encoded")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ plans
def parse_episodes(text: str) -> list[int]:
    """'3,7' or '2-5,9' -> sorted unique episode numbers."""
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else ("-", "")
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise DatasetError(
                f"--episodes {text!r}: {part!r} is not an episode number or range like 2-5"
            ) from None
    if not out:
        raise DatasetError("--episodes is empty; list episode numbers like 3,7 or 2-5")
    return sorted(out)


def _require_nonempty(picks: list[Pick], what: str) -> None:
    if not picks:
        raise DatasetError(f"{what} would leave an empty dataset; nothing was changed")


def plan_delete(src: Source, episodes: Sequence[int]) -> Plan:
    src.check_episodes(episodes, "delete")
    gone = set(episodes)
    picks = [Pick(src, i) for i in range(src.total_episodes) if i not in gone]
    _require_nonempty(picks, f"deleting episodes {sorted(gone)}")
    frames = sum(int(src.episodes[i]["length"]) for i in gone)
    return Plan(picks, [f"delete episode(s) {_fmt(gone)} ({frames} frames)"])


def plan_split(src: Source, episodes: Sequence[int]) -> tuple[Plan, Plan]:
    """(what stays, what moves to the new dataset)."""
    src.check_episodes(episodes, "split")
    moved = set(episodes)
    stay = [Pick(src, i) for i in range(src.total_episodes) if i not in moved]
    go = [Pick(src, i) for i in sorted(moved)]
    _require_nonempty(stay, f"moving episodes {_fmt(moved)} out")
    return (
        Plan(stay, [f"split: episode(s) {_fmt(moved)} leave the dataset"]),
        Plan(go, [f"split: episode(s) {_fmt(moved)} form the new dataset"]),
    )


def plan_retask(src: Source, episodes: Sequence[int], task: str) -> Plan:
    src.check_episodes(episodes, "retask")
    if not task.strip():
        raise DatasetError("--task is empty; give the task text")
    chosen = set(episodes)
    picks = [Pick(src, i, task=task if i in chosen else None) for i in range(src.total_episodes)]
    return Plan(picks, [f"retask episode(s) {_fmt(chosen)} to {task!r}"])


def plan_trim(src: Source, episode: int, start_s: float | None, end_s: float | None) -> Plan:
    src.check_episodes([episode], "trim")
    length = int(src.episodes[episode]["length"])
    start = 0 if start_s is None else round(start_s * src.fps)
    stop = length if end_s is None else round(end_s * src.fps)
    if start_s is None and end_s is None:
        raise DatasetError("trim needs --start and/or --end (seconds), or --idle")
    if not 0 <= start < stop <= length:
        raise DatasetError(
            f"trim episode {episode}: --start {start_s} / --end {end_s} give frames "
            f"{start}..{stop - 1}, outside the episode's 0..{length - 1} "
            f"({length / src.fps:.3f} s) or empty; nothing was changed"
        )
    picks = [Pick(src, i) for i in range(src.total_episodes)]
    picks[episode] = Pick(src, episode, start, stop)
    return Plan(
        picks,
        [f"trim episode {episode}: keep frames {start}..{stop - 1} of {length}"],
    )


def default_idle_threshold(src: Source, feature: str = "action") -> float:
    """1% of the widest per-joint range of `feature` over the dataset."""
    st = meta.read_stats(src.root)
    if feature not in st:
        raise DatasetError(f"{feature!r} has no statistics in {src.root}; pass --idle-threshold")
    return float(np.max(st[feature]["max"] - st[feature]["min"])) * 0.01


def idle_bounds(values: np.ndarray, threshold: float) -> tuple[int, int]:
    """[start, stop) without the idle head and tail: frames whose every joint stays within
    `threshold` of the first (head) or last (tail) frame. At least one frame is kept."""
    n = len(values)
    moving_head = np.any(np.abs(values - values[0]) > threshold, axis=1)
    moving_tail = np.any(np.abs(values - values[-1]) > threshold, axis=1)
    if not moving_head.any():
        return 0, 1
    start = max(int(np.argmax(moving_head)) - 1, 0)
    stop = n - max(int(np.argmax(moving_tail[::-1])) - 1, 0)
    return start, max(stop, start + 1)


def plan_trim_idle(src: Source, threshold: float, feature: str = "action") -> Plan:
    if feature not in src.features:
        raise DatasetError(f"{src.root} has no {feature!r} feature to detect idle frames")
    picks: list[Pick] = []
    lines = [f"trim idle frames: {feature} within {threshold:.6g} of the first/last frame"]
    for i in range(src.total_episodes):
        col = src.rows(i, [feature]).column(feature).combine_chunks()
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            values = np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(len(col), -1)
        else:
            values = np.asarray(col.to_numpy(zero_copy_only=False)).reshape(-1, 1)
        start, stop = idle_bounds(values.astype(np.float64), threshold)
        picks.append(Pick(src, i, start, stop))
        if start or stop != len(values):
            lines.append(
                f"  episode {i}: drop {start} idle frame(s) at the start, "
                f"{len(values) - stop} at the end"
            )
    return Plan(picks, lines)


_INFO_MUST_MATCH = ("fps", "robot_type", "codebase_version")


def check_mergeable(sources: Sequence[Source]) -> None:
    first = sources[0]
    for other in sources[1:]:
        for key in _INFO_MUST_MATCH:
            if first.info.get(key) != other.info.get(key):
                raise DatasetError(
                    f"cannot merge: {key} is {first.info.get(key)!r} in {first.root} but "
                    f"{other.info.get(key)!r} in {other.root}"
                )
        a, b = first.features, other.features
        if set(a) != set(b):
            raise DatasetError(
                f"cannot merge: features differ: only in {first.root}: "
                f"{sorted(set(a) - set(b))}, only in {other.root}: {sorted(set(b) - set(a))}"
            )
        for key in a:
            for prop in ("dtype", "shape", "names"):
                if a[key].get(prop) != b[key].get(prop):
                    raise DatasetError(
                        f"cannot merge: feature {key!r} {prop} is {a[key].get(prop)!r} in "
                        f"{first.root} but {b[key].get(prop)!r} in {other.root}"
                    )
            ia, ib = a[key].get("info") or {}, b[key].get("info") or {}
            for prop in ("video.codec", "video.pix_fmt", "video.height", "video.width"):
                if prop in ia and prop in ib and ia[prop] != ib[prop]:
                    raise DatasetError(
                        f"cannot merge: camera {key!r} {prop} is {ia[prop]!r} in {first.root} "
                        f"but {ib[prop]!r} in {other.root} (videos are joined without "
                        "re-encoding)"
                    )


def plan_merge(sources: Sequence[Source]) -> Plan:
    if len(sources) < 2:
        raise DatasetError("merge needs at least two datasets")
    check_mergeable(sources)
    picks = [Pick(s, i) for s in sources for i in range(s.total_episodes)]
    _require_nonempty(picks, "merging")
    return Plan(
        picks,
        [f"merge {len(sources)} datasets: " + ", ".join(str(s.root) for s in sources)],
    )


def _fmt(episodes: Any) -> str:
    return ",".join(str(e) for e in sorted(episodes))


# ------------------------------------------------------------------------------------ build
@dataclass
class BuildReport:
    root: Path
    episodes: int = 0
    frames: int = 0
    video: dict[str, RemuxReport] = field(default_factory=dict)

    @property
    def reencoded(self) -> int:
        return sum(r.reencoded for r in self.video.values())

    def lines(self) -> list[str]:
        out = [f"{self.root}: {self.episodes} episode(s), {self.frames} frames"]
        for key, r in self.video.items():
            text = f"video {key}: {r.copied} frame(s) copied, {r.reencoded} re-encoded"
            out.append(text)
            out += [f"  {why}" for why in (r.reasons or [])]
        return out


def _features_schema(src: Source) -> pa.Schema:
    first = src.data_path(src.episodes[0])
    return pq.read_schema(first)


def build(plan: Plan, out: Path) -> BuildReport:
    """Write the plan's result as a complete dataset into the (new, empty) folder `out`."""
    picks = plan.picks
    if not picks:
        raise DatasetError("the edit would leave an empty dataset; nothing was changed")
    base = picks[0].source
    fps = base.fps
    features = base.features
    info = json.loads(json.dumps(base.info))
    chunks_size = int(info.get("chunks_size") or meta.DEFAULT_CHUNKS_SIZE)
    data_limit = float(info.get("data_files_size_in_mb") or meta.DEFAULT_DATA_FILE_SIZE_IN_MB)
    video_limit = float(info.get("video_files_size_in_mb") or meta.DEFAULT_VIDEO_FILE_SIZE_IN_MB)
    video_keys = base.video_keys()
    schema = _features_schema(base)
    report = BuildReport(out, episodes=len(picks), frames=plan.total_frames)
    out.mkdir(parents=True, exist_ok=False)

    # ---- tasks, in order of first use
    tasks: list[str] = []
    for p in picks:
        if p.result_task() not in tasks:
            tasks.append(p.result_task())
    task_index = {t: i for i, t in enumerate(tasks)}

    # ---- data rows: copied, renumbered; one row group per episode; files roll at the limit
    meta_rows: list[dict[str, Any]] = []  # the episode rows, their stats added at the end
    ep_stats: list[dict[str, stats.Stats]] = []
    chunk, file = 0, 0
    writer: pq.ParquetWriter | None = None
    written = 0
    from_index = 0
    try:
        for e, p in enumerate(picks):
            table = p.source.rows(p.index).slice(p.start, p.length)
            if table.num_rows != p.length:
                raise DatasetError(
                    f"{p.source.root}: episode {p.index} has {table.num_rows} rows in its data "
                    f"file where {p.length} are expected"
                )
            frame_index = np.arange(p.length, dtype=np.int64)
            replace = {
                "index": pa.array(frame_index + from_index),
                "episode_index": pa.array(np.full(p.length, e, dtype=np.int64)),
                "frame_index": pa.array(frame_index),
                "timestamp": pa.array((frame_index / fps).astype(np.float32)),
                "task_index": pa.array(
                    np.full(p.length, task_index[p.result_task()], dtype=np.int64)
                ),
            }
            columns = []
            for name in schema.names:
                col = replace[name] if name in replace else table.column(name)
                columns.append(col.cast(schema.field(name).type))
            table = pa.Table.from_arrays(columns, schema=schema)
            if writer is not None and written + table.nbytes > data_limit * _MB:
                writer.close()
                writer = None
                chunk, file = meta.next_file_index(chunk, file, chunks_size)
                written = 0
            if writer is None:
                path = out / meta.data_file(chunk, file)
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(str(path), schema, compression="snappy")
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
            written += table.nbytes
            meta_rows.append(
                {
                    "episode_index": e,
                    "tasks": [p.result_task()],
                    "length": p.length,
                    "data/chunk_index": chunk,
                    "data/file_index": file,
                    "dataset_from_index": from_index,
                    "dataset_to_index": from_index + p.length,
                }
            )
            ep_stats.append(_row_stats(table, features, p))
            from_index += p.length
    finally:
        if writer is not None:
            writer.close()
    _crash_point("build-data")

    # ---- videos: packet copy, files roll at the size limit
    for key in video_keys:
        remux = RemuxReport()
        groups: list[list[tuple[int, Segment]]] = [[]]
        size = 0.0
        for e, p in enumerate(picks):
            ep = p.source.episodes[p.index]
            path = p.source.video_path(key, ep)
            in_file = p.source.frames_in_video_file(key, path)
            estimate = path.stat().st_size * p.length / in_file if path.exists() else 0.0
            if groups[-1] and size + estimate > video_limit * _MB:
                groups.append([])
                size = 0.0
            first = p.source.video_first_frame(key, ep) + p.start
            groups[-1].append((e, Segment(path, first, p.length)))
            size += estimate
        vchunk, vfile = 0, 0
        for g, group in enumerate(groups):
            if g:
                vchunk, vfile = meta.next_file_index(vchunk, vfile, chunks_size)
            target = out / meta.video_file(key, vchunk, vfile)
            target.parent.mkdir(parents=True, exist_ok=True)
            r = write_segments(target, [s for _, s in group], fps, features[key].get("info"))
            remux.frames += r.frames
            remux.copied += r.copied
            remux.reencoded += r.reencoded
            for why in r.reasons or []:
                remux.add_reason(why)
            offset = 0
            for e, seg in group:
                meta_rows[e][f"videos/{key}/chunk_index"] = vchunk
                meta_rows[e][f"videos/{key}/file_index"] = vfile
                meta_rows[e][f"videos/{key}/from_timestamp"] = offset / fps
                meta_rows[e][f"videos/{key}/to_timestamp"] = (offset + seg.count) / fps
                offset += seg.count
        report.video[key] = remux
        # camera statistics of a trimmed episode come from its kept (decoded) frames
        for e, p in enumerate(picks):
            if p.trimmed:
                ep_stats[e][key] = _decoded_stats(out, key, meta_rows[e], fps)
    _crash_point("build-videos")

    # ---- episode rows, stats, tasks, telemetry, info
    rows = []
    for e, row in enumerate(meta_rows):
        full = meta.episode_row(
            episode_index=e,
            task=row["tasks"][0],
            length=row["length"],
            data_chunk=row["data/chunk_index"],
            data_file=row["data/file_index"],
            from_index=row["dataset_from_index"],
            video_columns={k: v for k, v in row.items() if k.startswith("videos/")},
            episode_stats=ep_stats[e],
        )
        full[meta.EPISODES_CHUNK_COLUMN], full[meta.EPISODES_FILE_COLUMN] = 0, 0
        rows.append(full)
    meta_path = out / meta.episodes_file(0, 0)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta.episodes_writer(features, video_keys, rows)(meta_path)
    total_stats = {key: stats.aggregate([s[key] for s in ep_stats]) for key in ep_stats[0]}
    meta.stats_writer(total_stats)(meta.stats_path(out))
    meta.tasks_writer({t: i for i, t in enumerate(tasks)})(meta.tasks_path(out))
    extras = []
    for e, p in enumerate(picks):
        entry = p.source.extras.get(p.index)
        if entry is None:
            continue
        entry = dict(entry, episode_index=e, length=p.length)
        if p.trimmed:
            entry["trimmed"] = {"from_frame": p.start, "to_frame": p.stop}
        if p.source.root != base.root or p.index != e:
            entry["edited_from"] = {"dataset": str(p.source.root), "episode_index": p.index}
        extras.append(json.dumps(entry))
    if extras:
        meta.extras_path(out).parent.mkdir(parents=True, exist_ok=True)
        meta.extras_path(out).write_text("\n".join(extras) + "\n")
    for item in sorted(base.root.iterdir()):  # the dataset card, .gitattributes, notes
        if item.name in _LAYOUT_ENTRIES:
            continue
        if item.is_dir():
            shutil.copytree(item, out / item.name, symlinks=True)
        else:
            shutil.copy2(item, out / item.name, follow_symlinks=False)
    info = meta.info_after_episode(
        info,
        episode_index=len(picks) - 1,
        total_frames=plan.total_frames,
        total_tasks=len(tasks),
        video_info={},
    )
    meta.info_writer(info)(meta.info_path(out))
    _fsync_tree(out)
    return report


def _row_stats(table: pa.Table, features: dict[str, Any], p: Pick) -> dict[str, stats.Stats]:
    """Per-episode stats: numeric ones from the result's rows; camera ones from the source
    episode (recomputed by the caller for trimmed episodes)."""
    src_ep = p.source.episodes[p.index]
    out: dict[str, stats.Stats] = {}
    for key, feat in features.items():
        if feat["dtype"] == "string":
            continue
        if feat["dtype"] in ("video", "image"):
            if feat["dtype"] == "image" and p.trimmed:
                out[key] = _png_stats(table.column(key).to_pylist())
                continue
            out[key] = {
                name: np.asarray(
                    src_ep[f"stats/{key}/{name}"], dtype=np.int64 if name == "count" else np.float64
                )
                for name in STAT_NAMES
                if f"stats/{key}/{name}" in src_ep
            }
            continue
        col = table.column(key).combine_chunks()
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            values = np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(
                table.num_rows, -1
            )
        else:
            values = np.asarray(col.to_numpy(zero_copy_only=False))
        out[key] = stats.numeric_stats(values)
    return out


def _png_stats(cells: list[dict[str, Any]]) -> stats.Stats:
    from openk.dataset.images import decode_png

    acc = stats.ImageStatsAccumulator()
    for cell in cells:
        acc.update(decode_png(cell["bytes"]))
    return acc.result()


def _decoded_stats(root: Path, key: str, row: dict[str, Any], fps: int) -> stats.Stats:
    from openk.dataset.video import decode_frames

    path = root / meta.video_file(
        key, row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]
    )
    acc = stats.ImageStatsAccumulator()
    for frame in decode_frames(path, row[f"videos/{key}/from_timestamp"], row["length"], fps):
        acc.update(frame)
    return acc.result()


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            layout.fsync_file(Path(dirpath) / name)
        layout.fsync_dir(Path(dirpath))


# ------------------------------------------------------------------------------------ swap
def _siblings(root: Path) -> tuple[Path, Path, Path]:
    """(new build, backup of the old dataset, swap marker) beside `root`."""
    root = Path(os.path.realpath(root))
    parent, name = root.parent, root.name
    return (
        parent / f".{name}.openk-edit-new",
        parent / f".{name}.openk-edit-old",
        parent / f".{name}.openk-edit-swap.json",
    )


def finish_interrupted_edit(root: Path) -> str | None:
    """Complete or undo an in-place edit a crash interrupted; says what it did (None: nothing).

    `root` may also be the output of a split: the split is finished through its source. An edit
    still running in another process is no crash: its dataset lock (and the source's, for a
    split's output) is held, and this raises DatasetBusyError, touching nothing."""
    if not _edit_leftovers(root):
        return None
    with contextlib.ExitStack() as locks:
        locks.enter_context(layout.lock_dataset(root))
        source = _split_source(root)
        if source is not None:
            locks.enter_context(layout.lock_dataset(source))
        done = [d for d in (_finish_split_into(root), _finish_swap(root)) if d]
    return "\n".join(done) or None


def _edit_leftovers(root: Path) -> bool:
    """Whether an edit (or a split into `root`) left files beside `root`."""
    return any(p.exists() for p in (*_siblings(root), _split_intent(root), _output_record(root)))


def pending_edit(root: Path) -> str | None:
    """Why `root` must not be read yet: an edit or split of it (or one that moves episodes into
    it) was committed but a crash stopped it before it finished; None when there is none."""
    source = _split_source(root)
    if _siblings(root)[2].exists() or (source is not None and _siblings(source)[2].exists()):
        return (
            f"{root}: an edit a crash interrupted is not finished yet (its episodes may still "
            f"be in two places); run `openk verify {root}` to finish it"
        )
    return None


def _finish_split_into(out: Path) -> str | None:
    """A split whose output is `out`, interrupted: finished or dropped by its source."""
    record = _output_record(out)
    source = _split_source(out)
    if source is None and not record.exists():
        return None
    did = _finish_swap(source) if source is not None else None
    # the source's finish removes this record; one left over names nothing pending
    record.unlink(missing_ok=True)
    layout.fsync_dir(record.parent)
    if did is None:
        return None
    if not _output_paths(out)[0].exists():
        did += f"; nothing was split off to {out}"
    return did


def _finish_swap(root: Path) -> str | None:
    new, old, marker = _siblings(root)
    root = Path(os.path.realpath(root))
    if marker.exists():
        # the new dataset was complete and verified before the marker was written: roll forward
        output = _move_output_in(marker)
        if new.exists():
            if root.exists():
                if old.exists():
                    shutil.rmtree(old)
                os.replace(root, old)
                layout.fsync_dir(root.parent)
            os.replace(new, root)
            layout.fsync_dir(root.parent)
        elif not root.exists() and old.exists():
            os.replace(old, root)  # nothing to roll forward to: keep the old dataset
        shutil.rmtree(old, ignore_errors=True)
        marker.unlink(missing_ok=True)
        _drop_split_records(root, output)
        also = f"; {output} holds the split-off episodes" if output else ""
        return f"{root}: finished an interrupted edit (the edited dataset is in place{also})"
    did = None
    intent = _split_intent(root)
    if intent.exists():
        # a split that never reached its marker: its second dataset was never moved in
        output = _record_output(intent)
        if output is not None:
            shutil.rmtree(_output_paths(output)[1], ignore_errors=True)
        _drop_split_records(root, output)
        did = f"{root}: dropped an unfinished edit (the dataset is unchanged)"
    if new.exists():
        shutil.rmtree(new, ignore_errors=True)
        did = f"{root}: dropped an unfinished edit (the dataset is unchanged)"
    if old.exists():
        if root.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, root)
        did = did or f"{root}: cleaned up after an interrupted edit"
    return did


def _output_paths(out: Path) -> tuple[Path, Path]:
    """(final, temp build) of a new dataset written to `out`."""
    out = Path(os.path.abspath(out))
    return out, out.with_name(f".{out.name}.openk-edit-new")


def _split_intent(root: Path) -> Path:
    """Beside `root` while a split builds: names the output, whose build a crash leaves."""
    root = Path(os.path.realpath(root))
    return root.parent / f".{root.name}.openk-edit-split.json"


def _output_record(out: Path) -> Path:
    """Beside a split's output (and its build) while the split runs: names the source, so a
    command on the output finishes the split too."""
    out = _output_paths(out)[0]
    return out.with_name(f".{out.name}.openk-edit-split-source.json")


def _split_source(out: Path) -> Path | None:
    """The source of the interrupted split whose output is `out`, if its record says one."""
    try:
        return Path(json.loads(_output_record(out).read_text())["source"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_output(record: Path) -> Path | None:
    """The split output an intent or marker file names (None: not a split, or unreadable)."""
    try:
        return Path(json.loads(record.read_text())["output"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _drop_split_records(root: Path, output: Path | None) -> None:
    """The split is finished or dropped: its records beside `root` and the output go."""
    _split_intent(root).unlink(missing_ok=True)
    layout.fsync_dir(root.parent)
    if output is not None:
        record = _output_record(output)
        record.unlink(missing_ok=True)
        layout.fsync_dir(record.parent)


def _move_output_in(marker: Path) -> Path | None:
    """A split's second dataset: its build, complete and verified, goes to its place."""
    output = _record_output(marker)
    if output is None:
        return None
    out, tmp = _output_paths(output)
    if tmp.exists():
        if out.exists():
            out.rmdir()  # only ever an empty folder: the split refuses a non-empty one
        os.replace(tmp, out)
        layout.fsync_dir(out.parent)
    return out


def build_verified(plan: Plan, out: Path) -> BuildReport:
    """Build into `out` (must not exist), verify, delete it again if anything is wrong."""
    from openk.dataset.verify import verify

    try:
        report = build(plan, out)
        check = verify(out)
        if not check.ok:
            raise DatasetError(
                "the edited dataset failed verification, nothing was changed:\n" + str(check)
            )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return report


def apply_in_place(plan: Plan, root: Path) -> BuildReport:
    """Build the result beside `root`, verify it, then swap it in (crash safe, see module doc).
    Holds `root`'s dataset lock throughout (DatasetBusyError if another process writes it)."""
    with layout.lock_dataset(root):
        return _swap_in(plan, root, None)[0]


def apply_split(
    stay: Plan, moved: Plan, root: Path, output: Path
) -> tuple[BuildReport, BuildReport]:
    """`root` keeps `stay`, a new dataset at `output` gets `moved`, as one crash-safe step: both
    are built and verified first, then one marker commits both moves, so a crash leaves either
    the old dataset (and no output) or both new ones, never an episode in two places.

    Holds the dataset locks of both `root` and `output` throughout.

    Returns (output's report, root's report)."""
    with layout.lock_dataset(root), layout.lock_dataset(output):
        report, out_report = _swap_in(stay, root, (moved, output))
    assert out_report is not None
    return out_report, report


def _swap_in(
    plan: Plan, root: Path, also: tuple[Plan, Path] | None
) -> tuple[BuildReport, BuildReport | None]:
    root = Path(os.path.realpath(root))
    new, old, marker = _siblings(root)
    finish_interrupted_edit(root)
    record = {"new": new.name, "old": old.name}
    out_report = None
    intent = _split_intent(root)
    if also is not None:
        out, out_tmp = _output_paths(also[1])
        finish_interrupted_edit(out)  # an older split into `out`, interrupted, goes first
        _check_new_output(out)
        record["output"] = str(out)
        layout.replace_atomically(intent, layout.write_bytes_to(json.dumps(record).encode()))
        source = json.dumps({"source": str(root)}).encode()
        layout.replace_atomically(_output_record(out), layout.write_bytes_to(source))
        shutil.rmtree(out_tmp, ignore_errors=True)
    try:
        if also is not None:
            out_report = build_verified(also[0], out_tmp)
            out_report.root = out
        report = build_verified(plan, new)
    except BaseException:
        if also is not None:
            shutil.rmtree(out_tmp, ignore_errors=True)
            _drop_split_records(root, out)
        raise
    _crash_point("built")
    layout.replace_atomically(marker, layout.write_bytes_to(json.dumps(record).encode()))
    _crash_point("marked")
    _move_output_in(marker)
    if also is not None:
        _crash_point("output-moved")
    os.replace(root, old)
    layout.fsync_dir(root.parent)
    _crash_point("old-moved")
    os.replace(new, root)
    layout.fsync_dir(root.parent)
    _crash_point("new-moved")
    shutil.rmtree(old)
    marker.unlink()
    _drop_split_records(root, Path(record["output"]) if "output" in record else None)
    report.root = root
    return report, out_report


def _check_new_output(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"--output {out} exists and is not empty; choose a new folder")


def write_new(plan: Plan, out: Path) -> BuildReport:
    """Write the result as a new dataset at `out` (refused if `out` holds anything), holding
    `out`'s dataset lock."""
    with layout.lock_dataset(out):
        return _write_new(plan, out)


def _write_new(plan: Plan, out: Path) -> BuildReport:
    out, tmp = _output_paths(out)
    _check_new_output(out)
    if out.exists():
        out.rmdir()
    shutil.rmtree(tmp, ignore_errors=True)
    report = build_verified(plan, tmp)
    os.replace(tmp, out)
    layout.fsync_dir(out.parent)
    report.root = out
    return report


def check_output_not_source(out: Path, sources: Sequence[Source]) -> None:
    target = Path(os.path.realpath(out))
    for s in sources:
        if Path(os.path.realpath(s.root)) == target:
            raise DatasetError(
                f"--output {out} is the source dataset; leave --output out to edit in place"
            )
