"""Camera encoding in a child process per camera, fed through shared memory.

Measured on the 2-core VM: PyAV's libsvtav1 `encode()` keeps the GIL for up to ~0.5 s at a
time, which stalls every Python thread of the recorder (camera capture stamps, row intake).
A child process has its own GIL. Frames go into a ring of shared-memory slots; a feeder thread
copies them in order and never drops one: while the ring is full, frames wait in an unbounded
in-memory queue. The child survives across episodes (one start-up per camera per writer) and
exits as soon as the parent disappears, leaving the fragmented journal mp4 readable.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing as mp
import os
import threading
import time
from dataclasses import asdict
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

from openk.dataset.video import EncodedEpisodeVideo, VideoConfig
from openk.errors import DatasetError

_SLOTS = 24


def _child_main(
    shm_name: str,
    slots: int,
    width: int,
    height: int,
    fps: int,
    config: dict[str, Any],
    commands: Any,
    replies: Any,
    consumed: Any,
) -> None:
    os.environ.setdefault("SVT_LOG", "1")
    import av

    from openk.dataset.stats import ImageStatsAccumulator

    # spawn children share the parent's resource tracker, which unlinks the segment if the
    # parent dies; attaching registers the same name again, which is harmless
    shm = shared_memory.SharedMemory(name=shm_name)
    frame_bytes = width * height * 3
    cfg = VideoConfig(**config)
    out = stream = stats = None
    count = 0
    error: str | None = None
    while True:
        try:
            cmd = commands.recv()
        except (EOFError, OSError):
            os._exit(0)  # parent gone: what was muxed stays readable in the journal
        kind = cmd[0]
        if kind == "open":
            path = cmd[2]
            count, error, stats = 0, None, ImageStatsAccumulator()
            try:
                out = av.open(
                    path,
                    "w",
                    format="mp4",
                    options={
                        "movflags": "frag_keyframe+empty_moov+default_base_moof",
                        "flush_packets": "1",
                    },
                )
                stream = out.add_stream(cfg.encoder, rate=fps, options=cfg.codec_options())
                stream.width, stream.height, stream.pix_fmt = width, height, cfg.pix_fmt
            except Exception as exc:
                error, out = f"{type(exc).__name__}: {exc}", None
        elif kind == "frame":
            slot = cmd[1]
            try:
                if error is None and out is not None and stats is not None:
                    view = np.ndarray((height, width, 3), np.uint8, shm.buf, slot * frame_bytes)
                    frame = av.VideoFrame.from_ndarray(view, format="rgb24")
                    stats.update(view)
                    consumed.value += 1
                    frame.pts = count
                    for packet in stream.encode(frame):
                        out.mux(packet)
                    count += 1
                else:
                    consumed.value += 1
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        elif kind in ("finish", "abort"):
            result: dict[str, Any] = {"episode": cmd[1], "frames": count, "error": error}
            try:
                if out is not None:
                    if kind == "finish" and error is None:
                        for packet in stream.encode():
                            out.mux(packet)
                    out.close()
                if kind == "finish" and error is None and stats is not None and count:
                    result["stats"] = {k: v.tolist() for k, v in stats.result().items()}
            except Exception as exc:
                result["error"] = f"{type(exc).__name__}: {exc}"
            out = stream = None
            replies.send(result)
        elif kind == "stop":
            return


class EncoderWorker:
    """One camera's encoder process. `begin(path)` starts an episode's video file."""

    def __init__(
        self, key: str, width: int, height: int, fps: int, config: VideoConfig, slots: int = _SLOTS
    ) -> None:
        self.key, self.width, self.height = key, width, height
        self._frame_bytes = width * height * 3
        self._slots = slots
        ctx = mp.get_context("spawn")
        self._shm = shared_memory.SharedMemory(create=True, size=slots * self._frame_bytes)
        self._consumed = ctx.Value("q", 0, lock=False)
        cmd_r, self._cmd_w = ctx.Pipe(duplex=False)
        self._rep_r, rep_w = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_child_main,
            args=(
                self._shm.name,
                slots,
                width,
                height,
                fps,
                asdict(config),
                cmd_r,
                rep_w,
                self._consumed,
            ),
            name=f"openk-encoder-{key}",
            daemon=True,
        )
        self._proc.start()
        cmd_r.close()
        rep_w.close()
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._cv = threading.Condition()
        self._sent = 0
        self._results: dict[int, dict[str, Any]] = {}
        self._results_cv = threading.Condition()
        self._ids = itertools.count()
        self.error: str | None = None
        self._stopping = False
        self._feeder = threading.Thread(target=self._feed, name=f"openk-feed-{key}", daemon=True)
        self._feeder.start()
        self._reader = threading.Thread(target=self._read, name=f"openk-reply-{key}", daemon=True)
        self._reader.start()

    @property
    def queued(self) -> int:
        return len(self._queue) + max(0, self._sent - int(self._consumed.value))

    def begin(self, path: Path) -> EncoderSession:
        episode = next(self._ids)
        self._enqueue(("open", episode, str(path)))
        return EncoderSession(self, episode, path)

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        if self.error is not None:
            raise DatasetError(f"video encoder process for {self.key} failed: {self.error}")
        with self._cv:
            self._queue.append(item)
            self._cv.notify()

    def _feed(self) -> None:
        buf = np.ndarray((self._slots, self.height, self.width, 3), np.uint8, self._shm.buf)
        try:
            while True:
                with self._cv:
                    while not self._queue:
                        self._cv.wait()
                    item = self._queue.popleft()
                if item[0] == "frame":
                    while self._sent - self._consumed.value >= self._slots:
                        if not self._proc.is_alive():
                            raise DatasetError("the encoder process died")
                        time.sleep(0.002)
                    slot = self._sent % self._slots
                    buf[slot] = item[1]
                    self._cmd_w.send(("frame", slot))
                    self._sent += 1
                else:
                    self._cmd_w.send(item)
                    if item[0] == "stop":
                        return
        except (OSError, DatasetError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            with self._results_cv:
                self._results_cv.notify_all()

    def _read(self) -> None:
        while True:
            try:
                result = self._rep_r.recv()
            except (EOFError, OSError):
                if not self._stopping:
                    self.error = self.error or "the encoder process exited unexpectedly"
                with self._results_cv:
                    self._results_cv.notify_all()
                return
            with self._results_cv:
                self._results[result["episode"]] = result
                self._results_cv.notify_all()

    def _wait(self, episode: int) -> dict[str, Any]:
        with self._results_cv:
            while episode not in self._results:
                if self.error is not None:
                    raise DatasetError(f"video encoder process for {self.key} failed: {self.error}")
                self._results_cv.wait(0.1)
            return self._results.pop(episode)

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(DatasetError):
            self._enqueue(("stop",))
        self._feeder.join(timeout=10)
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
        self._shm.close()
        with contextlib.suppress(FileNotFoundError):
            self._shm.unlink()


class EncoderSession:
    """One episode's video on an EncoderWorker; same interface as the thread CameraEncoder."""

    def __init__(self, worker: EncoderWorker, episode: int, path: Path) -> None:
        self.worker, self.episode, self.path = worker, episode, path
        self.frames_in = 0
        self._ended = False

    @property
    def backlog(self) -> int:
        return self.worker.queued

    def put(self, frame: np.ndarray) -> None:
        self.frames_in += 1
        self.worker._enqueue(("frame", frame))

    def end(self) -> None:
        """Mark the end of the episode's frames. Must happen before the next episode begins
        on this worker, since the child handles commands in order."""
        if not self._ended:
            self._ended = True
            self.worker._enqueue(("finish", self.episode))

    def finish(self) -> EncodedEpisodeVideo:
        self.end()
        result = self.worker._wait(self.episode)
        if result["error"]:
            raise DatasetError(f"video encoder for {self.worker.key} failed: {result['error']}")
        if "stats" not in result:
            raise DatasetError(f"video encoder for {self.worker.key} received no frame")
        stats = {
            k: np.asarray(v, dtype=np.int64 if k == "count" else np.float64)
            for k, v in result["stats"].items()
        }
        return EncodedEpisodeVideo(self.path, int(result["frames"]), stats)

    def abort(self) -> None:
        """Drop this episode's frames not yet fed and close its file; does not wait."""
        worker = self.worker
        with worker._cv:
            while worker._queue and worker._queue[-1][0] == "frame":
                worker._queue.pop()
        with contextlib.suppress(DatasetError):
            worker._enqueue(("abort", self.episode))
