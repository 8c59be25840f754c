"""The episode writer: Arrow rows + camera frames -> a LeRobot v3.0 dataset, crash-safe.

Lifecycle: `DatasetWriter.create(...)` or `DatasetWriter.resume(...)`, then per episode
`start_episode(task)`, `add_rows(batch)` / `add_camera_frame(key, frame, t_ns)` from any threads,
and `save_episode()` or `discard_episode()`; `close()` at the end (not needed for validity).

`save_episode` only hands the episode to a committer thread and returns: the cameras' encoder
threads have been encoding during the episode, and the committer finishes them, writes the
parquet, appends the mp4 packets and replaces the metadata while the next episode records.
Every commit goes through a redo log (`.openk/commit.json`): all new files are written and
fsynced under temp names first, then renamed, so a crash at any point leaves either the old
dataset or the new one. The episode in progress lives in `.openk/journal/` until committed.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute  # imported now, not at the first episode's first cast
import pyarrow.parquet as pq

from openk.dataset import layout, meta, stats
from openk.dataset.encoder_process import EncoderSession, EncoderWorker
from openk.dataset.features import (
    CAMERA_PREFIX,
    Features,
    arrow_type,
    camera_keys,
    data_schema,
    image_keys,
    row_keys,
    schema_differences,
    video_keys,
    with_defaults,
)
from openk.dataset.images import encode_png
from openk.dataset.journal import (
    JOURNAL_DIR,
    JournalEpisode,
    list_journal,
    read_journal_rows,
    roll_forward,
)
from openk.dataset.video import (
    CameraEncoder,
    EncodedEpisodeVideo,
    VideoConfig,
    append_video,
    probe_info,
)
from openk.errors import DatasetError
from openk.repo_id import validate_repo_id

log = logging.getLogger(__name__)

_VideoSink = CameraEncoder | EncoderSession
_VIDEO_SINKS = (CameraEncoder, EncoderSession)
_OPEN_WRITERS: weakref.WeakSet[DatasetWriter] = weakref.WeakSet()


@atexit.register
def _close_open_writers() -> None:
    # A writer the program forgot to close still commits its saved episodes at exit (the
    # committer is a daemon thread and would otherwise be stopped mid-way; the journal would
    # keep the episodes, but the user expects them saved).
    for writer in list(_OPEN_WRITERS):
        with contextlib.suppress(Exception):
            writer.close()


def _full_features(
    features: Mapping[str, Mapping[str, Any]], use_videos: bool | None
) -> dict[str, Any]:
    """The dataset's features: `features` with cameras stored as videos or images as
    `use_videos` says (None: as given), plus lerobot's default columns."""
    feats: dict[str, Any] = dict(features)
    if use_videos is not None:
        for key, spec in list(feats.items()):
            if spec.get("dtype") in ("video", "image"):
                feats[key] = {**spec, "dtype": "video" if use_videos else "image"}
    return with_defaults(feats)


@contextlib.contextmanager
def _released_on_error(lock: layout.DatasetLock) -> Iterator[layout.DatasetLock]:
    """The dataset lock `create`/`resume` took, released if they fail (the writer keeps it)."""
    try:
        yield lock
    except BaseException:
        lock.release()
        raise


JournalChoice = Literal["error", "recover", "discard"]
CAPTURE_TIME = "capture_time_ns"
_FSYNC_EVERY_NS = 1_000_000_000
# A row waits at most this long for a camera frame stamped after it before the latest
# earlier frame is used (a stalled camera must not stall the episode).
_MAX_CAMERA_LAG_NS = 300_000_000
# How long a camera's encoder process may take to start (interpreter and imports).
_ENCODER_START_S = 60.0
_MB = 1024 * 1024
# A test hook: OPENK_WRITER_CRASH_AT=<point> kills the process (SIGKILL) at that point of a commit.
WRITER_CRASH_POINTS = ("saved", "staged", "logged")
_CRASH_ENV = "OPENK_WRITER_CRASH_AT"


@dataclass
class EpisodeSummary:
    """What `save_episode` returns. `repeated_frames` counts rows that reused a camera frame."""

    episode_index: int
    length: int
    task: str
    repeated_frames: dict[str, int]
    wait_s: float
    recovered: bool = False


# ---------------------------------------------------------------------------- camera sync
class _CameraSync:
    """Picks, for each row, the latest frame stamped at or before the row's time (its capture
    time, or its slot on the dataset clock: see `_row_times`)."""

    def __init__(self, key: str, shape: tuple[int, int, int], fps: int) -> None:
        self.key = key
        self.shape = shape
        self.frames: deque[tuple[int, int, np.ndarray]] = deque()
        self._next_id = 0
        self.last: tuple[int, int, np.ndarray] | None = None
        self.repeats = 0
        self.newest_t: int | None = None
        self._cap = max(4, 5 * fps)
        # frames delivered during the episode, and their first/last stamps (measured fps)
        self.received = 0
        self.first_t: int | None = None

    def measured(self) -> dict[str, Any]:
        fps = None
        if self.received > 1 and self.first_t is not None and self.newest_t is not None:
            span = self.newest_t - self.first_t
            fps = round((self.received - 1) * 1e9 / span, 3) if span > 0 else None
        return {"frames_received": self.received, "measured_fps": fps, "repeated": self.repeats}

    def add(self, frame: np.ndarray, t_ns: int) -> None:
        self.received += 1
        if self.first_t is None:
            self.first_t = t_ns
        self.frames.append((t_ns, self._next_id, frame))
        self._next_id += 1
        self.newest_t = t_ns if self.newest_t is None else max(self.newest_t, t_ns)
        while len(self.frames) > self._cap:
            self.frames.popleft()

    def reset_for_episode(self) -> None:
        # Keep only the newest frame: the first rows may need it.
        if self.frames:
            self.last = None
            self.frames = deque([self.frames[-1]])
        elif self.last is not None:
            self.frames = deque([self.last])
            self.last = None
        self.repeats = 0
        self.received = 0
        self.first_t = None

    def ready(self, t_row: int) -> bool:
        return self.newest_t is not None and self.newest_t > t_row

    def pick(self, t_row: int) -> np.ndarray | None:
        chosen = None
        while self.frames and self.frames[0][0] <= t_row:
            chosen = self.frames.popleft()
        if chosen is None:
            if self.last is not None:
                self.repeats += 1
                return self.last[2]
            if not self.frames:
                return None
            # The camera's first frame came after this row: use it, and count it.
            chosen = self.frames[0]
            self.repeats += 1
        elif self.last is not None and chosen[1] == self.last[1]:
            self.repeats += 1
        self.last = chosen
        return chosen[2]


def _row_times(ep: _Episode, capture_times: list[int]) -> list[int]:
    """The times rows are matched with camera frames at: a row's slot on the dataset clock
    (the episode's first row + k / fps) when it was captured at most `_MAX_CAMERA_LAG_NS`
    after it, else its capture time; never earlier than the previous row's.

    The loop takes rows on its own tick grid, up to a tick after their slot: at 200 Hz rows
    of a 30 fps dataset come 30 or 35 ms apart. A 30 fps camera's frames, 33.3 ms apart,
    then fell twice into one of those intervals and never into the next whenever their phase
    was within a tick of the slots: one repeated and one skipped frame every 100 ms for a
    whole episode. On the slots, rows are exactly one period apart like the frames, and every
    row gets the next frame. A late tick emits the rows it missed at once with the state it
    has (the loop counts them as `rows_repeated`); on their slots they still get the camera's
    frames of their time. A slot is never after the row's capture, so a row never gets a
    frame from after its state; a row captured before its slot (a source faster than fps) or
    long after it (a slower one) keeps its capture time.
    """
    period = 1e9 / ep.fps
    out = []
    for t in capture_times:
        if ep.first_row_t is None:
            ep.first_row_t = t
        slot = ep.first_row_t + round(ep.rows_timed * period)
        ep.rows_timed += 1
        matched = slot if 0 <= t - slot <= _MAX_CAMERA_LAG_NS else t
        ep.last_row_match_t = max(matched, ep.last_row_match_t or matched)
        out.append(ep.last_row_match_t)
    return out


class _ImageSink:
    """`video=False`: PNG-encodes frames in a thread into the journal, like a video encoder."""

    def __init__(self, folder: Path) -> None:
        import queue

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stats = stats.ImageStatsAccumulator()
        self.count = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="openk-png", daemon=True)
        self._thread.start()

    def put(self, frame: np.ndarray) -> None:
        if self.error is not None:
            raise DatasetError(f"image writer for {self.folder.name} failed: {self.error}")
        self._queue.put(frame)

    def _run(self) -> None:
        try:
            while True:
                frame = self._queue.get()
                if frame is None:
                    return
                path = self.folder / f"frame-{self.count:06d}.png"
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(encode_png(frame))
                os.replace(tmp, path)
                self._stats.update(frame)
                self.count += 1
        except BaseException as exc:
            self.error = exc

    def finish(self) -> tuple[int, stats.Stats]:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise DatasetError(f"image writer for {self.folder.name} failed: {self.error}")
        return self.count, self._stats.result()

    def abort(self) -> None:
        self._queue.put(None)
        self._thread.join()


# ---------------------------------------------------------------------------- episodes
@dataclass
class _Episode:
    seq: int
    journal: Path
    task: str
    fps: int
    syncs: dict[str, _CameraSync]
    sinks: dict[str, _VideoSink | _ImageSink]
    batches: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    pending_times: deque[int] = field(default_factory=deque)
    newest_row_t: int | None = None
    # The dataset clock of the episode: its first row's capture time and the rows seen so far.
    first_row_t: int | None = None
    rows_timed: int = 0
    last_row_match_t: int | None = None
    rows_writer: pa.ipc.RecordBatchStreamWriter | None = None
    rows_file: Any = None


@dataclass
class _ReadyEpisode:
    """An episode handed to the committer (live or recovered from a journal)."""

    journal: Path
    task: str
    table: pa.Table
    length: int
    videos: dict[str, _VideoSink | EncodedEpisodeVideo]
    images: dict[str, _ImageSink | Path]
    metadata: dict[str, Any]
    repeated: dict[str, int]
    recovered: bool
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    summary: EpisodeSummary | None = None


# ---------------------------------------------------------------------------- on-disk state
@dataclass
class _Cursor:
    chunk: int
    file: int
    open: bool  # may the next episode be appended to this file?
    frames: int = 0  # frames already in the file (videos) / rows (data)


@dataclass
class _Commit:
    """One episode's commit, gathered step by step before its commit point."""

    ready: _ReadyEpisode
    length: int
    episode_index: int
    from_index: int  # global index of the episode's first row
    task_index: int
    new_task: bool
    tasks: dict[str, int]  # every task, the episode's included
    videos: dict[str, EncodedEpisodeVideo] = field(default_factory=dict)
    image_stats: dict[str, stats.Stats] = field(default_factory=dict)
    image_dirs: dict[str, Path] = field(default_factory=dict)
    data: pa.Table | None = None
    episode_stats: dict[str, stats.Stats] = field(default_factory=dict)
    dataset_stats: dict[str, stats.Stats] = field(default_factory=dict)
    data_cursor: _Cursor | None = None
    video_cursors: dict[str, _Cursor] = field(default_factory=dict)
    video_columns: dict[str, Any] = field(default_factory=dict)
    video_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # probed, for info.json
    meta_cursor: _Cursor | None = None
    meta_rows: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    # (temp file, final name) of every file the commit replaces, info.json last
    renames: list[tuple[Path, Path]] = field(default_factory=list)


class DatasetWriter:
    """Writes LeRobot v3.0 episodes. Build it with `create` or `resume`."""

    def __init__(
        self,
        root: Path,
        repo_id: str,
        info: dict[str, Any],
        *,
        video: VideoConfig,
        rename_map: Mapping[str, str] | None,
        single_task: str | None,
        dataset_lock: layout.DatasetLock | None = None,
    ) -> None:
        self.root = root
        # one writer per dataset: held from `create`/`resume` until `close`
        self._dataset_lock = dataset_lock
        self.repo_id = repo_id
        self._info = info
        self.video_config = video
        self.rename_map = dict(rename_map or {})
        self.single_task = single_task
        self.features: Features = info["features"]
        self.fps: int = int(info["fps"])
        self._row_keys = row_keys(self.features)
        self._video_keys = video_keys(self.features)
        self._image_keys = image_keys(self.features)
        self._camera_keys = camera_keys(self.features)
        self._schema = data_schema(self.features)
        self._lock = threading.RLock()
        self._syncs = {
            k: _CameraSync(k, tuple(self.features[k]["shape"]), self.fps) for k in self._camera_keys
        }
        self._episode: _Episode | None = None
        self.recovered: list[EpisodeSummary] = []
        self._seq = int(time.time_ns())
        self._load_state()
        self._next_index = self.total_episodes
        self._queue: list[_ReadyEpisode] = []
        self._queue_cv = threading.Condition()
        self._commit_error: BaseException | None = None
        self._closed = False
        self._workers: dict[str, EncoderWorker] = {}
        if video.isolate:
            for key in self._video_keys:
                height, width, _ = self.features[key]["shape"]
                self._workers[key] = EncoderWorker(key, width, height, self.fps, video)
        self._committer = threading.Thread(
            target=self._commit_loop, name="openk-commit", daemon=True
        )
        self._committer.start()
        self._syncer = threading.Thread(
            target=self._sync_journal_loop, name="openk-journal-sync", daemon=True
        )
        self._syncer.start()
        _OPEN_WRITERS.add(self)

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        repo_id: str,
        fps: int,
        features: Mapping[str, Mapping[str, Any]],
        *,
        root: str | os.PathLike[str] | None = None,
        robot_type: str | None = None,
        use_videos: bool | None = None,
        video: VideoConfig | None = None,
        rename_map: Mapping[str, str] | None = None,
        single_task: str | None = None,
        chunks_size: int = meta.DEFAULT_CHUNKS_SIZE,
        data_files_size_in_mb: float = meta.DEFAULT_DATA_FILE_SIZE_IN_MB,
        video_files_size_in_mb: float = meta.DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    ) -> DatasetWriter:
        """Create a new dataset at `root` (default `$HF_LEROBOT_HOME/<repo_id>`).

        `features` is lerobot's dict (`{"action": {"dtype": "float32", "shape": [7], "names":
        [...]}, "observation.images.front": {"dtype": "video", "shape": [480, 640, 3], ...}}`);
        the five default features are added. `use_videos=True/False` turns every camera feature into
        `video` (mp4) or `image` (PNG in the parquet); None keeps the dtypes given.
        """
        validate_repo_id(repo_id)
        if not isinstance(fps, int) or fps <= 0:
            raise DatasetError(f"fps must be a positive integer, got {fps!r}")
        if min(data_files_size_in_mb, video_files_size_in_mb) <= 0 or chunks_size <= 0:
            raise DatasetError("file sizes and chunks_size must be positive (lerobot refuses 0)")
        root_path = Path(root).expanduser() if root is not None else layout.default_root(repo_id)
        with _released_on_error(layout.lock_dataset(root_path)) as dataset_lock:
            full = _full_features(features, use_videos)
            if meta.info_path(root_path).exists():
                raise DatasetError(
                    f"a dataset already exists at {root_path}; resume it (--resume=true) or choose "
                    "another --dataset.root / repo id"
                )
            try:
                root_path.mkdir(parents=True, exist_ok=True)
                if any(p for p in root_path.iterdir() if p.name != layout.OPENK_DIR):
                    raise DatasetError(
                        f"{root_path} exists and is not empty; choose an empty or new "
                        "--dataset.root"
                    )
                info = meta.new_info(
                    fps,
                    full,
                    robot_type=robot_type,
                    chunks_size=chunks_size,
                    data_files_size_in_mb=data_files_size_in_mb,
                    video_files_size_in_mb=video_files_size_in_mb,
                    has_videos=bool(video_keys(full)),
                )
                layout.replace_atomically(meta.info_path(root_path), meta.info_writer(info))
            except OSError as exc:
                raise DatasetError(
                    layout.describe_os_error(exc, f"cannot create {root_path}")
                ) from exc
            return cls(
                root_path,
                repo_id,
                info,
                video=video or VideoConfig(),
                rename_map=rename_map,
                single_task=single_task,
                dataset_lock=dataset_lock,
            )

    @classmethod
    def resume(
        cls,
        repo_id: str,
        *,
        root: str | os.PathLike[str] | None = None,
        fps: int | None = None,
        robot_type: str | None = None,
        features: Mapping[str, Mapping[str, Any]] | None = None,
        use_videos: bool | None = None,
        video: VideoConfig | None = None,
        rename_map: Mapping[str, str] | None = None,
        single_task: str | None = None,
        journal: JournalChoice = "error",
        announced: list[JournalEpisode] | None = None,
    ) -> DatasetWriter:
        """Open an existing dataset (ours or lerobot's) to append episodes.

        A different `fps`, `robot_type` or feature schema is refused. An episode left in the
        journal by a crash must be dealt with: `journal="recover"` saves it as an episode,
        `"discard"` deletes it, `"error"` (default) raises so the caller can ask the user
        (see `openk.dataset.pending_journal`). `announced`: the journal entries exactly as
        shown to the user (`pending_journal`); each keeps its `length`, nothing re-counted.
        """
        validate_repo_id(repo_id)
        root_path = Path(root).expanduser() if root is not None else layout.default_root(repo_id)
        with _released_on_error(layout.lock_dataset(root_path)) as dataset_lock:
            if not meta.info_path(root_path).exists():
                raise DatasetError(
                    f"no dataset at {root_path} (no {meta.INFO_PATH}); create it first "
                    "(--resume=false)"
                )
            try:
                roll_forward(root_path)
            except OSError as exc:
                raise DatasetError(
                    layout.describe_os_error(
                        exc, f"cannot finish the interrupted commit in {root_path}"
                    )
                ) from exc
            info = meta.load_info(root_path)
            problems = []
            if fps is not None and int(info["fps"]) != fps:
                problems.append(f"fps {fps} differs from the dataset's {info['fps']}")
            if robot_type is not None and info.get("robot_type") != robot_type:
                problems.append(
                    f"robot type {robot_type!r} differs from the dataset's "
                    f"{info.get('robot_type')!r}"
                )
            if features is not None:
                problems += schema_differences(
                    _full_features(features, use_videos), info["features"]
                )
            if problems:
                raise DatasetError(
                    f"cannot resume {root_path}: "
                    + "; ".join(problems)
                    + ". Record into a new dataset (another repo id or --dataset.root) instead."
                )
            if video is None:
                video = _video_config_from_info(info)
            pending = list_journal(root_path) if announced is None else list(announced)
            if pending and journal == "error":
                described = "; ".join(p.describe() for p in pending)
                raise DatasetError(
                    f"{root_path} has an unsaved episode from an interrupted recording "
                    f"({described}). "
                    "Resume with journal='recover' to save it or journal='discard' to delete it "
                    "(CLI: `openk recover`)."
                )
            writer = cls(
                root_path,
                repo_id,
                info,
                video=video,
                rename_map=rename_map,
                single_task=single_task,
                dataset_lock=dataset_lock,
            )
            for entry in pending:
                if journal == "recover":
                    summary = writer._recover(entry)
                    if summary is not None:
                        writer.recovered.append(summary)
                else:
                    shutil.rmtree(entry.path, ignore_errors=True)
            if journal == "recover" and pending:
                writer.flush()
            return writer

    # ------------------------------------------------------------------ properties
    @property
    def info(self) -> dict[str, Any]:
        copied: dict[str, Any] = json.loads(json.dumps(self._info))
        return copied

    @property
    def total_episodes(self) -> int:
        return int(self._info["total_episodes"])

    @property
    def next_episode_index(self) -> int:
        """The index the next saved episode gets: committed episodes plus those still queued
        for commit (`total_episodes` counts only the committed ones)."""
        return self._next_index

    @property
    def total_frames(self) -> int:
        return int(self._info["total_frames"])

    @property
    def episode_in_progress(self) -> bool:
        return self._episode is not None

    @property
    def camera_keys(self) -> list[str]:
        return list(self._camera_keys)

    def camera_backlog(self) -> dict[str, int]:
        """Frames queued but not yet encoded, per camera, for the episode in progress."""
        ep = self._episode
        if ep is None:
            return {}
        return {k: s.backlog for k, s in ep.sinks.items() if isinstance(s, _VIDEO_SINKS)}

    def camera_repeats(self) -> dict[str, int]:
        """Rows so far that reused a camera's previous frame, per camera, for the episode in
        progress (the live figure; `save_episode` returns the final one)."""
        ep = self._episode
        if ep is None:
            return {}
        return {k: s.repeats for k, s in ep.syncs.items()}

    # ------------------------------------------------------------------ episode API
    def start_episode(self, task: str | None = None) -> None:
        """Begin an episode. `task` defaults to the writer's `single_task`.

        The first call waits until the cameras' encoder processes have started, so their
        start-up does not compete with the episode's capture threads."""
        self._raise_commit_error()
        for worker in self._workers.values():
            worker.wait_ready(_ENCODER_START_S)
        task = task if task is not None else self.single_task
        if not task or not isinstance(task, str):
            raise DatasetError(
                "an episode needs a task: pass task='...' or single_task at creation"
            )
        with self._lock:
            if self._episode is not None:
                raise DatasetError("an episode is already in progress; save or discard it first")
            self._seq += 1
            jdir = self.root / JOURNAL_DIR / f"ep-{self._seq}"
            try:
                jdir.mkdir(parents=True, exist_ok=False)
                (jdir / "episode.json").write_text(
                    json.dumps(
                        {
                            "task": task,
                            "fps": self.fps,
                            "started_ns": time.monotonic_ns(),
                            "pid": os.getpid(),
                        }
                    )
                )
            except OSError as exc:
                raise DatasetError(
                    layout.describe_os_error(exc, f"cannot write the journal in {jdir}")
                ) from exc
            sinks: dict[str, _VideoSink | _ImageSink] = {}
            for key in self._camera_keys:
                height, width, _ = self.features[key]["shape"]
                if key in self._workers:
                    sinks[key] = self._workers[key].begin(jdir / f"{key}.mp4")
                elif key in self._video_keys:
                    sinks[key] = CameraEncoder(
                        jdir / f"{key}.mp4", width, height, self.fps, self.video_config
                    )
                else:
                    sinks[key] = _ImageSink(jdir / key)
                self._syncs[key].reset_for_episode()
            self._episode = _Episode(self._seq, jdir, task, self.fps, self._syncs, sinks)

    def add_rows(self, batch: Any) -> None:
        """Append loop rows (pyarrow RecordBatch/Table or any Arrow C stream) to the episode."""
        self._raise_commit_error()
        table = batch if isinstance(batch, pa.Table) else pa.table(batch)
        if table.num_rows == 0:
            return
        selected, times = self._select_columns(table)
        with self._lock:
            ep = self._require_episode()
            try:
                if ep.rows_writer is None:
                    ep.rows_file = open(ep.journal / "rows.arrows", "wb")  # noqa: SIM115
                    ep.rows_writer = pa.ipc.new_stream(ep.rows_file, selected.schema)
                ep.rows_writer.write_table(selected)
                # in the OS after every batch (survives kill -9); the syncer thread fsyncs
                ep.rows_file.flush()
            except OSError as exc:
                raise DatasetError(
                    layout.describe_os_error(exc, "cannot journal the episode rows")
                ) from exc
            ep.batches.append(selected)
            ep.rows += selected.num_rows
            if self._camera_keys:
                ep.pending_times.extend(_row_times(ep, times))
                ep.newest_row_t = times[-1]
                self._drain(ep, final=False)

    def add_camera_frame(self, key: str, frame: np.ndarray, t_ns: int) -> None:
        """Offer a camera frame (H x W x 3 uint8 RGB) stamped with `time.monotonic_ns()`.

        Thread-safe; the array is kept as is (do not modify it afterwards). Frames may arrive
        between episodes: the newest one is used if an episode starts before the next frame.
        """
        full_key = key if key in self._syncs else CAMERA_PREFIX + key
        full_key = self.rename_map.get(full_key, full_key)
        sync = self._syncs.get(full_key)
        if sync is None:
            raise DatasetError(
                f"camera {key!r} is not a declared feature; declared: {self._camera_keys}"
            )
        arr = np.asarray(frame)
        if arr.dtype != np.uint8 or arr.shape != sync.shape:
            raise DatasetError(
                f"camera {key!r}: frame has shape {arr.shape} {arr.dtype}, "
                f"expected {sync.shape} uint8 RGB"
            )
        with self._lock:
            sync.add(np.ascontiguousarray(arr), int(t_ns))
            ep = self._episode
            if ep is None:
                # between episodes only the newest frame can ever be used
                while len(sync.frames) > 1:
                    sync.frames.popleft()
            elif ep.pending_times:
                self._drain(ep, final=False)

    def save_episode(
        self, metadata: Mapping[str, Any] | None = None, *, wait: bool = False
    ) -> EpisodeSummary:
        """End the episode and queue it for commit; returns at once unless `wait=True`.

        `metadata` (JSON-serialisable, e.g. loop telemetry) is stored with the episode in
        `meta/openk/episodes.jsonl`. A commit failure is raised by the next call.
        """
        started = time.perf_counter()
        self._raise_commit_error()
        with self._lock:
            ep = self._require_episode()
            if ep.rows == 0:
                raise DatasetError("the episode has no rows; record some or discard it")
            self._drain(ep, final=True)
            for sink in ep.sinks.values():
                if isinstance(sink, EncoderSession):
                    sink.end()
            self._close_rows_journal(ep)
            self._episode = None
        table = pa.concat_tables(ep.batches) if len(ep.batches) > 1 else ep.batches[0]
        repeated = {k: s.repeats for k, s in ep.syncs.items()}
        try:
            json.dumps(dict(metadata or {}))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"episode metadata must be JSON-serialisable: {exc}") from exc
        ready = _ReadyEpisode(
            journal=ep.journal,
            task=ep.task,
            table=table,
            length=table.num_rows,
            videos={k: s for k, s in ep.sinks.items() if isinstance(s, _VIDEO_SINKS)},
            images={k: s for k, s in ep.sinks.items() if isinstance(s, _ImageSink)},
            metadata=dict(metadata or {}),
            repeated=repeated,
            recovered=False,
            cameras={k: s.measured() for k, s in ep.syncs.items()},
        )
        summary = self._enqueue(ready)
        if wait:
            self._wait_for(ready)
        summary.wait_s = time.perf_counter() - started
        return summary

    def discard_episode(self) -> None:
        """Drop the episode in progress; nothing of it stays on disk."""
        with self._lock:
            ep = self._require_episode()
            self._episode = None
        for sink in ep.sinks.values():
            sink.abort()
        self._close_rows_journal(ep)
        shutil.rmtree(ep.journal, ignore_errors=True)

    def flush(self) -> None:
        """Wait until every saved episode is committed; raise DatasetError if one failed."""
        with self._queue_cv:
            while self._queue and self._commit_error is None:
                self._queue_cv.wait(0.05)
        self._raise_commit_error()

    def close(self, *, discard_unsaved: bool = False) -> None:
        """Commit saved episodes and stop. An unsaved episode is kept in the journal (offered
        back on resume) unless `discard_unsaved`."""
        if self._closed:
            return
        _OPEN_WRITERS.discard(self)
        ep = self._episode
        if ep is not None:
            if discard_unsaved:
                self.discard_episode()
            else:
                with self._lock, contextlib.suppress(DatasetError):
                    self._drain(ep, final=True)  # every row gets its frame, as on a save
                self._episode = None
                for sink in ep.sinks.values():
                    with contextlib.suppress(DatasetError):
                        sink.finish()
                self._close_rows_journal(ep)
        try:
            self.flush()
        finally:
            self._closed = True
            with self._queue_cv:
                self._queue_cv.notify_all()
            self._committer.join(timeout=60)
            for worker in self._workers.values():
                worker.close()
            # leave no empty private folders behind (they would show up in uploads)
            for folder in (self.root / JOURNAL_DIR, self.root / layout.OPENK_DIR):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if self._dataset_lock is not None:
                self._dataset_lock.release()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ row handling
    def _require_episode(self) -> _Episode:
        if self._episode is None:
            raise DatasetError("no episode in progress; call start_episode(task) first")
        return self._episode

    def _select_columns(self, table: pa.Table) -> tuple[pa.Table, list[int]]:
        if self.rename_map:
            table = table.rename_columns([self.rename_map.get(n, n) for n in table.column_names])
        columns, fields = [], []
        for key in self._row_keys:
            if key not in table.column_names:
                raise DatasetError(
                    f"the rows have no column {key!r} (a declared feature); "
                    f"columns: {table.column_names}"
                )
            feat = self.features[key]
            col = table.column(key)
            src_field = table.schema.field(key)
            names = feat.get("names")
            if src_field.metadata and b"names" in src_field.metadata and isinstance(names, list):
                got = json.loads(src_field.metadata[b"names"])
                if list(got) != list(names):
                    raise DatasetError(
                        f"column {key!r} carries joint names {got}, "
                        f"but the dataset declares {names}"
                    )
            target = arrow_type(feat)
            try:
                col = col.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DatasetError(
                    f"column {key!r} of type {col.type} cannot be stored as {feat['dtype']}"
                    f"{feat['shape']}: {exc}"
                ) from exc
            columns.append(col)
            fields.append(pa.field(key, target))
        selected = pa.Table.from_arrays(columns, schema=pa.schema(fields))
        times: list[int] = []
        if self._camera_keys:
            if CAPTURE_TIME not in table.column_names:
                raise DatasetError(
                    f"rows need a {CAPTURE_TIME!r} column to be matched with camera frames"
                )
            times = table.column(CAPTURE_TIME).cast(pa.int64()).to_pylist()
        return selected, times

    def _drain(self, ep: _Episode, *, final: bool) -> None:
        """Give rows their camera frames once each camera has a frame stamped after the row."""
        while ep.pending_times:
            t_row = ep.pending_times[0]
            if not final:
                # stamps share CLOCK_MONOTONIC with this process, so lag is measured on it
                lagging = time.monotonic_ns() - t_row > _MAX_CAMERA_LAG_NS
                if not lagging and not all(s.ready(t_row) for s in ep.syncs.values()):
                    return
            picked = {}
            for key, sync in ep.syncs.items():
                frame = sync.pick(t_row)
                if frame is None:
                    if not final:
                        return
                    raise DatasetError(
                        f"camera {key!r} delivered no frame during this episode; check it is "
                        "connected and running, then discard and re-record the episode"
                    )
                picked[key] = frame
            for key, frame in picked.items():
                ep.sinks[key].put(frame)
            ep.pending_times.popleft()

    def _sync_journal_loop(self) -> None:
        """fsync the journal of the episode in progress about once a second (power loss).

        In a thread of its own: under disk load one fsync took up to ~0.3 s, which must not
        land on the caller of add_rows.
        """
        while not self._closed:
            time.sleep(_FSYNC_EVERY_NS / 1e9)
            ep = self._episode
            if ep is None:
                continue
            with contextlib.suppress(OSError, ValueError, AttributeError):
                if ep.rows_file is not None and not ep.rows_file.closed:
                    os.fsync(ep.rows_file.fileno())
            for key in self._video_keys:
                with contextlib.suppress(OSError):
                    layout.fsync_file(ep.journal / f"{key}.mp4")

    def _close_rows_journal(self, ep: _Episode) -> None:
        if ep.rows_writer is not None:
            # No fsync here: this runs inside save_episode, and the commit that follows makes
            # the episode durable in its final files within a fraction of a second.
            with contextlib.suppress(OSError, pa.ArrowException):
                ep.rows_writer.close()
                ep.rows_file.close()
            ep.rows_writer = None

    # ------------------------------------------------------------------ committer
    def _enqueue(self, ready: _ReadyEpisode) -> EpisodeSummary:
        summary = EpisodeSummary(
            episode_index=self._next_index,
            length=ready.length,
            task=ready.task,
            repeated_frames=dict(ready.repeated),
            wait_s=0.0,
            recovered=ready.recovered,
        )
        self._next_index += 1
        ready.summary = summary
        with self._queue_cv:
            self._queue.append(ready)
            self._queue_cv.notify_all()
        return summary

    def _wait_for(self, ready: _ReadyEpisode) -> None:
        while not ready.done.wait(0.05):
            if self._commit_error is not None:
                break
        self._raise_commit_error()

    def _raise_commit_error(self) -> None:
        if self._commit_error is not None:
            exc = self._commit_error
            if isinstance(exc, DatasetError):
                raise DatasetError(str(exc)) from exc
            if isinstance(exc, OSError):
                raise DatasetError(
                    layout.describe_os_error(exc, f"saving an episode to {self.root} failed")
                ) from exc
            raise DatasetError(f"saving an episode to {self.root} failed: {exc!r}") from exc

    def _commit_loop(self) -> None:
        while True:
            with self._queue_cv:
                while not self._queue and not self._closed:
                    self._queue_cv.wait()
                if not self._queue:
                    return
                ready = self._queue[0]
            try:
                self._commit(ready)
            except BaseException as exc:
                log.error("commit of episode failed: %s", exc)
                self._commit_error = exc
                for r in self._queue:
                    r.done.set()
                    for sink in r.videos.values():
                        if isinstance(sink, _VIDEO_SINKS):
                            sink.abort()
                with self._queue_cv:
                    self._queue.clear()
                    self._queue_cv.notify_all()
                return
            with self._queue_cv:
                self._queue.pop(0)
                self._queue_cv.notify_all()
            ready.done.set()

    # ------------------------------------------------------------------ state on disk
    def _load_state(self) -> None:
        info = self._info
        self._tasks: dict[str, int] = meta.read_tasks(self.root)
        self._stats: dict[str, stats.Stats] = {}
        if info["total_episodes"] > 0:
            self._stats = meta.read_stats(self.root)
        # Resumed datasets always continue in new files, as lerobot does: a file another
        # process wrote (or one left by a crash) is never rewritten.
        last = meta.last_episode_row(self.root) if info["total_episodes"] > 0 else None
        if last is None:
            self._data = _Cursor(0, 0, open=False)
            self._data_fresh = True
            self._videos = {k: _Cursor(0, 0, open=False) for k in self._video_keys}
            self._videos_fresh = dict.fromkeys(self._video_keys, True)
            self._meta = _Cursor(0, 0, open=False)
            self._meta_fresh = True
        else:
            self._data = _Cursor(
                int(last["data/chunk_index"]), int(last["data/file_index"]), open=False
            )
            self._data_fresh = False
            self._videos = {}
            self._videos_fresh = {}
            for k in self._video_keys:
                ck, fk = last.get(f"videos/{k}/chunk_index"), last.get(f"videos/{k}/file_index")
                self._videos[k] = _Cursor(int(ck or 0), int(fk or 0), open=False)
                self._videos_fresh[k] = ck is None
            self._meta = _Cursor(
                int(last.get(meta.EPISODES_CHUNK_COLUMN) or 0),
                int(last.get(meta.EPISODES_FILE_COLUMN) or 0),
                open=False,
            )
            self._meta_fresh = False
        self._meta_rows: list[dict[str, Any]] = []

    def _target(
        self, cursor: _Cursor, fresh: bool, current: Path | None, limit_mb: float, incoming: float
    ) -> tuple[_Cursor, bool]:
        """Where the next episode goes: append to the open file, or roll to the next file."""
        chunks_size = int(self._info.get("chunks_size") or meta.DEFAULT_CHUNKS_SIZE)
        if cursor.open and current is not None and current.exists():
            size = current.stat().st_size
            if size + incoming < limit_mb * _MB:
                return cursor, True
        if fresh:
            return _Cursor(cursor.chunk, cursor.file, open=True), False
        chunk, file = meta.next_file_index(cursor.chunk, cursor.file, chunks_size)
        return _Cursor(chunk, file, open=True), False

    # ------------------------------------------------------------------ one commit
    def _commit(self, ready: _ReadyEpisode) -> None:
        """Write every file of the episode under a temp name, then rename them all at once
        through the redo log, then let the in-memory state follow the disk."""
        if not ready.recovered:
            self._mark_saved(ready)
        layout.crash_point(_CRASH_ENV, "saved")
        c = self._open_commit(ready)
        self._finish_cameras(c)
        self._build_rows(c)
        self._compute_stats(c)
        try:
            self._stage_data(c)
            self._stage_videos(c)
            self._stage_tasks(c)
            self._stage_episode_row(c)
            self._stage_stats(c)
            self._stage_extras(c)
            self._stage_info(c)  # last: info.json names the totals of everything above
        except BaseException:
            for tmp, _ in c.renames:
                tmp.unlink(missing_ok=True)
            raise
        layout.crash_point(_CRASH_ENV, "staged")
        # The commit point: the redo log names every rename, then they happen.
        _apply_commit(self.root, c.renames, ready.journal)
        self._adopt(c)

    def _mark_saved(self, ready: _ReadyEpisode) -> None:
        """Mark the journal entry as saved (and keep its metadata) should the commit fail."""
        (ready.journal / "saved.json").write_text(
            json.dumps({"metadata": ready.metadata, "repeated": ready.repeated})
        )

    def _open_commit(self, ready: _ReadyEpisode) -> _Commit:
        """The episode's place in the dataset: its index, first global row and task index."""
        assert ready.summary is not None
        episode_index = ready.summary.episode_index
        if episode_index != self.total_episodes:
            raise DatasetError(f"episode {episode_index} committed out of order")
        task_index = self._tasks.get(ready.task)
        tasks = dict(self._tasks)
        new_task = task_index is None
        if task_index is None:
            task_index = len(self._tasks)
            tasks[ready.task] = task_index
        return _Commit(
            ready=ready,
            length=ready.length,
            episode_index=episode_index,
            from_index=self.total_frames,
            task_index=task_index,
            new_task=new_task,
            tasks=tasks,
        )

    def _finish_cameras(self, c: _Commit) -> None:
        """Wait for the encoders (videos) and image writers; check every row has a frame."""
        for key, v in c.ready.videos.items():
            c.videos[key] = v.finish() if isinstance(v, _VIDEO_SINKS) else v
            if c.videos[key].frames < c.length:
                raise DatasetError(
                    f"camera {key!r}: {c.videos[key].frames} video frames for {c.length} rows"
                )
        for key, sink in c.ready.images.items():
            if isinstance(sink, _ImageSink):
                _, c.image_stats[key] = sink.finish()
                c.image_dirs[key] = sink.folder
            else:
                c.image_dirs[key] = sink
                c.image_stats[key] = _image_stats_from_dir(sink, c.length)

    def _build_rows(self, c: _Commit) -> None:
        """The episode's data table: the loop's rows plus lerobot's index columns (and PNG
        bytes for image features)."""
        length, fps = c.length, self.fps
        frame_index = np.arange(length, dtype=np.int64)
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        table = c.ready.table.slice(0, length)
        for key, feat in self.features.items():
            if feat["dtype"] == "video":
                continue
            if key in self._row_keys:
                columns[key] = table.column(key)
            elif key in c.image_dirs:
                files = [c.image_dirs[key] / f"frame-{i:06d}.png" for i in range(length)]
                columns[key] = pa.array(
                    [
                        {"bytes": f.read_bytes(), "path": f"frame-{i:06d}.png"}
                        for i, f in enumerate(files)
                    ],
                    type=arrow_type(feat),
                )
            elif key == "timestamp":
                columns[key] = pa.array((frame_index / fps).astype(np.float32))
            elif key == "frame_index":
                columns[key] = pa.array(frame_index)
            elif key == "episode_index":
                columns[key] = pa.array(np.full(length, c.episode_index, dtype=np.int64))
            elif key == "index":
                columns[key] = pa.array(frame_index + c.from_index)
            elif key == "task_index":
                columns[key] = pa.array(np.full(length, c.task_index, dtype=np.int64))
        c.data = pa.Table.from_pydict(columns, schema=self._schema)

    def _compute_stats(self, c: _Commit) -> None:
        """Per-episode stats of every feature, and the dataset's stats with them folded in."""
        assert c.data is not None
        for key, feat in self.features.items():
            if feat["dtype"] == "string":
                continue
            if key in c.videos:
                c.episode_stats[key] = c.videos[key].stats
            elif key in c.image_stats:
                c.episode_stats[key] = c.image_stats[key]
            else:
                col = c.data.column(key)
                if pa.types.is_fixed_size_list(col.type):
                    values = np.asarray(col.combine_chunks().flatten()).reshape(c.length, -1)
                else:
                    values = np.asarray(col.to_numpy())
                c.episode_stats[key] = stats.numeric_stats(values)
        c.dataset_stats = {
            k: (stats.aggregate([self._stats[k], v]) if k in self._stats else v)
            for k, v in c.episode_stats.items()
        }

    def _stage_data(self, c: _Commit) -> None:
        """The data parquet: the open file with the episode appended, or a new file."""
        assert c.data is not None
        current = self._data_path(self._data)
        cursor, append = self._target(
            self._data,
            self._data_fresh,
            current,
            float(self._info["data_files_size_in_mb"]),
            incoming=_estimate_incoming(current, self._data.frames, c.length),
        )
        final = self._data_path(cursor)
        existing = final if append else None
        c.renames.append(
            (layout.write_temp(final, _parquet_writer(self._schema, existing, c.data)), final)
        )
        cursor.frames = (self._data.frames if append else 0) + c.length
        c.data_cursor = cursor

    def _stage_videos(self, c: _Commit) -> None:
        """Each camera's mp4: the episode's packets appended to the open file or a new one."""
        length, fps = c.length, self.fps
        for key, enc in c.videos.items():
            cur = self._videos[key]
            cursor, append = self._target(
                cur,
                self._videos_fresh[key],
                self._video_path(key, cur),
                float(self._info["video_files_size_in_mb"]),
                enc.path.stat().st_size,
            )
            final = self._video_path(key, cursor)
            before = cur.frames if append else 0
            tmp = layout.write_temp(final, _video_appender(final, enc.path, length, fps, before))
            c.renames.append((tmp, final))
            cursor.frames = before + length
            c.video_cursors[key] = cursor
            c.video_columns.update(
                meta.video_columns(
                    key, cursor.chunk, cursor.file, before / fps, (before + length) / fps
                )
            )
            if "info" not in self.features[key]:
                c.video_info[key] = probe_info(tmp, self.video_config)

    def _stage_tasks(self, c: _Commit) -> None:
        if c.new_task:
            c.renames.append(_temp_for(meta.tasks_path(self.root), meta.tasks_writer(c.tasks)))

    def _stage_episode_row(self, c: _Commit) -> None:
        """The episode's row, appended to the open episodes file or starting a new one."""
        assert c.data_cursor is not None
        row = meta.episode_row(
            episode_index=c.episode_index,
            task=c.ready.task,
            length=c.length,
            data_chunk=c.data_cursor.chunk,
            data_file=c.data_cursor.file,
            from_index=c.from_index,
            video_columns=c.video_columns,
            episode_stats=c.episode_stats,
        )
        cursor, append = self._target(
            self._meta,
            self._meta_fresh,
            self._meta_path(self._meta),
            float(self._info["data_files_size_in_mb"]),
            incoming=0,
        )
        row[meta.EPISODES_CHUNK_COLUMN] = cursor.chunk
        row[meta.EPISODES_FILE_COLUMN] = cursor.file
        c.meta_rows = [*(self._meta_rows if append else []), row]
        c.meta_cursor = cursor
        c.renames.append(
            _temp_for(
                self._meta_path(cursor),
                meta.episodes_writer(self.features, self._video_keys, c.meta_rows),
            )
        )

    def _stage_stats(self, c: _Commit) -> None:
        c.renames.append(_temp_for(meta.stats_path(self.root), meta.stats_writer(c.dataset_stats)))

    def _stage_extras(self, c: _Commit) -> None:
        """Our own per-episode line: loop telemetry, repeated frames, camera figures."""
        extra = {
            "episode_index": c.episode_index,
            "length": c.length,
            "repeated_frames": c.ready.repeated,
            "cameras": c.ready.cameras,
            "recovered": c.ready.recovered,
            "metadata": c.ready.metadata,
        }
        c.renames.append(
            _temp_for(meta.extras_path(self.root), meta.extras_writer(self.root, extra))
        )

    def _stage_info(self, c: _Commit) -> None:
        c.info = meta.info_after_episode(
            self._info,
            episode_index=c.episode_index,
            total_frames=c.from_index + c.length,
            total_tasks=len(c.tasks),
            video_info=c.video_info,
        )
        c.renames.append(_temp_for(meta.info_path(self.root), meta.info_writer(c.info)))

    def _adopt(self, c: _Commit) -> None:
        """After the commit point: the in-memory state follows the disk."""
        assert c.data_cursor is not None and c.meta_cursor is not None
        self._info = c.info
        self.features = c.info["features"]
        self._tasks = c.tasks
        self._stats = c.dataset_stats
        self._data, self._data_fresh = c.data_cursor, False
        for key, cursor in c.video_cursors.items():
            self._videos[key], self._videos_fresh[key] = cursor, False
        self._meta, self._meta_fresh = c.meta_cursor, False
        self._meta_rows = c.meta_rows

    def _data_path(self, c: _Cursor) -> Path:
        return self.root / meta.data_file(c.chunk, c.file)

    def _video_path(self, key: str, c: _Cursor) -> Path:
        return self.root / meta.video_file(key, c.chunk, c.file)

    def _meta_path(self, c: _Cursor) -> Path:
        return self.root / meta.episodes_file(c.chunk, c.file)

    # ------------------------------------------------------------------ recovery
    def _recover(self, entry: JournalEpisode) -> EpisodeSummary | None:
        # entry.length decides, as entry.describe() announced it to the user
        length = entry.length
        if length <= 0:
            log.warning("dropping the journal episode %s: %s", entry.path, entry.describe())
            shutil.rmtree(entry.path, ignore_errors=True)
            return None
        table = read_journal_rows(entry.path)
        videos: dict[str, _VideoSink | EncodedEpisodeVideo] = {}
        for key in self._video_keys:
            path = entry.path / f"{key}.mp4"
            videos[key] = EncodedEpisodeVideo(path, length, _video_stats(path, length))
        images: dict[str, _ImageSink | Path] = {k: entry.path / k for k in self._image_keys}
        saved = entry.saved or {}
        ready = _ReadyEpisode(
            journal=entry.path,
            task=entry.task,
            table=table.slice(0, length),
            length=length,
            videos=videos,
            images=images,
            metadata=dict(saved.get("metadata", {})),
            repeated=dict(saved.get("repeated", {})),
            recovered=True,
        )
        return self._enqueue(ready)


# ---------------------------------------------------------------------------- helpers
def _video_config_from_info(info: Mapping[str, Any]) -> VideoConfig:
    for feat in info["features"].values():
        block = feat.get("info") if feat.get("dtype") == "video" else None
        if block:
            codec = block.get("video.codec", "av1")
            vcodec = "h264" if codec == "h264" else "libsvtav1"
            preset = block.get("video.preset")
            return VideoConfig(
                vcodec=vcodec,
                g=int(block.get("video.g") or 2),
                crf=int(block.get("video.crf") or 30),
                preset=preset,
                fast_decode=int(block.get("video.fast_decode") or 0),
            )
    return VideoConfig()


def _estimate_incoming(current: Path, rows_in_file: int, rows: int) -> float:
    if not current.exists() or rows_in_file <= 0:
        return 0.0
    return current.stat().st_size / rows_in_file * rows


def _video_appender(
    final: Path, episode_video: Path, length: int, fps: int, before: int
) -> Callable[[Path], None]:
    """Writes `final` (holding `before` frames) with the episode's packets appended."""

    def produce(tmp: Path) -> None:
        append_video(final, episode_video, length, fps, tmp, existing_frames=before)

    return produce


def _temp_for(final: Path, produce: Callable[[Path], None]) -> tuple[Path, Path]:
    return layout.write_temp(final, produce), final


def _parquet_writer(
    schema: pa.Schema, existing: Path | None, new: pa.Table
) -> Callable[[Path], None]:
    def produce(tmp: Path) -> None:
        with pq.ParquetWriter(str(tmp), schema, compression="snappy", use_dictionary=True) as w:
            if existing is not None:
                pf = pq.ParquetFile(existing)
                for i in range(pf.num_row_groups):
                    w.write_table(pf.read_row_group(i))
            # one row group per episode, as lerobot's readers expect by convention
            w.write_table(new, row_group_size=max(new.num_rows, 1))

    return produce


def _apply_commit(root: Path, renames: list[tuple[Path, Path]], journal: Path) -> None:
    """Write the redo log, perform the renames, then drop the log and the episode journal."""
    log_path = root / layout.OPENK_DIR / "commit.json"
    record = {
        "renames": [[str(t.relative_to(root)), str(f.relative_to(root))] for t, f in renames],
        "journal": str(journal.relative_to(root)),
    }
    layout.replace_atomically(log_path, layout.write_bytes_to(json.dumps(record).encode()))
    layout.crash_point(_CRASH_ENV, "logged")
    roll_forward(root)


def _video_stats(path: Path, length: int) -> stats.Stats:
    """Camera statistics of a recovered episode, from up to ~100 decoded frames."""
    import av

    acc = stats.ImageStatsAccumulator()
    wanted = set(np.round(np.linspace(0, length - 1, min(length, 100))).astype(int).tolist())
    try:
        with av.open(str(path)) as src:
            for i, frame in enumerate(src.decode(video=0)):
                if i >= length:
                    break
                if i in wanted:
                    acc.update(frame.to_ndarray(format="rgb24"))
    except av.error.InvalidDataError:
        pass
    return acc.result()


def _image_stats_from_dir(folder: Path, length: int) -> stats.Stats:
    from openk.dataset.images import decode_png

    acc = stats.ImageStatsAccumulator()
    for i in np.round(np.linspace(0, length - 1, min(length, 100))).astype(int).tolist():
        acc.update(decode_png((folder / f"frame-{i:06d}.png").read_bytes()))
    return acc.result()
