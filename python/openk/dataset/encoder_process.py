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
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

from openk.dataset.video import (
    DEMOTE_EVERY_FRAMES,
    EncodedEpisodeVideo,
    VideoConfig,
    demote_realtime_threads,
    hold_writer_lock,
    release_writer_lock,
)
from openk.errors import DatasetError

_SLOTS = 24
_HEADER = 64  # bytes before the frame slots; the first 8 hold the child's consumed counter
_FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


def _child_main(shm_name: str, slots: int, width: int, height: int, fps: int) -> None:
    """The child: JSON commands on stdin, JSON results on stdout, frames in shared memory."""
    os.environ.setdefault("SVT_LOG", "1")
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a C library prints goes to stderr, not into the replies
    import av

    from openk.dataset.stats import ImageStatsAccumulator

    # The parent owns and unlinks the segment (its resource tracker cleans up after a crash).
    shm = shared_memory.SharedMemory(name=shm_name)
    with contextlib.suppress(Exception):
        from multiprocessing import resource_tracker

        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    frame_bytes = width * height * 3
    consumed = np.ndarray((1,), np.int64, shm.buf, 0)
    frames = np.ndarray((slots, height, width, 3), np.uint8, shm.buf, _HEADER)
    out: Any = None
    stream: Any = None
    stats: ImageStatsAccumulator | None = None
    count = 0
    nice = VideoConfig.nice
    error: str | None = None
    writing: tuple[Path, Any] | None = None  # the episode file and its writer lock
    del frame_bytes
    # Started: the parent may begin an episode (interpreter start-up, imports are done).
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "open":
            cfg = VideoConfig(**cmd["config"])
            nice = cfg.nice
            with contextlib.suppress(OSError, AttributeError):  # no os.nice on Windows
                os.nice(max(0, nice - os.nice(0)))
            count, error, stats = 0, None, ImageStatsAccumulator()
            try:
                path = Path(cmd["path"])
                writing = (path, hold_writer_lock(path))
                out = av.open(cmd["path"], "w", format="mp4", options=dict(_FRAGMENTED))
                stream = out.add_stream(cfg.encoder, rate=fps, options=cfg.codec_options())
                stream.width, stream.height, stream.pix_fmt = width, height, cfg.pix_fmt
            except Exception as exc:
                error, out = f"{type(exc).__name__}: {exc}", None
        elif op == "frame":
            view = frames[cmd["slot"]]
            try:
                if error is None and out is not None and stats is not None:
                    frame = av.VideoFrame.from_ndarray(view, format="rgb24")
                    stats.update(view)
                    consumed[0] += 1
                    frame.pts = count
                    for packet in stream.encode(frame):
                        out.mux(packet)
                    if count % DEMOTE_EVERY_FRAMES == 0:  # the encoder starts threads lazily
                        demote_realtime_threads(nice)
                    count += 1
                else:
                    consumed[0] += 1
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        elif op in ("finish", "abort"):
            result: dict[str, Any] = {"episode": cmd["episode"], "frames": count, "error": error}
            try:
                if out is not None:
                    if error is None:  # SVT-AV1 complains when closed without a flush
                        for packet in stream.encode():
                            out.mux(packet)
                    out.close()
                if op == "finish" and error is None and stats is not None and count:
                    result["stats"] = {k: v.tolist() for k, v in stats.result().items()}
            except Exception as exc:
                result["error"] = f"{type(exc).__name__}: {exc}"
            out = stream = None
            if writing is not None:
                release_writer_lock(*writing)
                writing = None
            replies.write(json.dumps(result) + "\n")
        elif op == "stop":
            break
    # stdin closed without "finish": the parent died mid-episode (SIGKILL, a crash). The frames
    # the encoder still holds (SVT-AV1 keeps about a second in its look-ahead) are written out,
    # then the file is closed, so the journal keeps every frame this process received.
    if out is not None:
        with contextlib.suppress(Exception):
            if error is None:
                for packet in stream.encode():
                    out.mux(packet)
            out.close()
    if writing is not None:
        release_writer_lock(*writing)
    del consumed, frames
    shm.close()


class EncoderWorker:
    """One camera's encoder process. `begin(path)` starts an episode's video file."""

    def __init__(
        self, key: str, width: int, height: int, fps: int, config: VideoConfig, slots: int = _SLOTS
    ) -> None:
        self.key, self.width, self.height = key, width, height
        self._frame_bytes = width * height * 3
        self._slots = slots
        self._config = config
        self._shm = shared_memory.SharedMemory(
            create=True, size=_HEADER + slots * self._frame_bytes
        )
        self._consumed = np.ndarray((1,), np.int64, self._shm.buf, 0)
        self._consumed[0] = 0
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        # A fresh interpreter (not multiprocessing): it never re-imports the caller's script.
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "openk.dataset._encoder_child",
                self._shm.name,
                str(slots),
                str(width),
                str(height),
                str(fps),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._cv = threading.Condition()
        self._sent = 0
        self._results: dict[int, dict[str, Any]] = {}
        self._results_cv = threading.Condition()
        self._ids = itertools.count()
        self._ready = threading.Event()
        self.error: str | None = None
        self._stopping = False
        self._feeder = threading.Thread(target=self._feed, name=f"openk-feed-{key}", daemon=True)
        self._feeder.start()
        self._reader = threading.Thread(target=self._read, name=f"openk-reply-{key}", daemon=True)
        self._reader.start()

    @property
    def queued(self) -> int:
        return len(self._queue) + max(0, self._sent - int(self._consumed[0]))

    def wait_ready(self, timeout: float) -> None:
        """Waits until the child has started (its interpreter and imports: about a second of
        CPU on a small machine). Episodes should start after that: a start-up overlapping the
        first episode starved the capture threads, which fell behind by up to a second."""
        if not self._ready.wait(timeout):
            raise DatasetError(
                f"video encoder process for {self.key} did not start within {timeout:g} s; "
                "is the machine overloaded?"
            )
        if self.error is not None:
            raise DatasetError(f"video encoder process for {self.key} failed: {self.error}")

    def begin(self, path: Path) -> EncoderSession:
        episode = next(self._ids)
        self._enqueue(("open", {"op": "open", "path": str(path), "config": asdict(self._config)}))
        return EncoderSession(self, episode, path)

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        if self.error is not None:
            raise DatasetError(f"video encoder process for {self.key} failed: {self.error}")
        with self._cv:
            self._queue.append(item)
            self._cv.notify()

    def _send(self, message: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(message) + "\n")
        self._proc.stdin.flush()

    def _feed(self) -> None:
        buf = np.ndarray(
            (self._slots, self.height, self.width, 3), np.uint8, self._shm.buf, _HEADER
        )
        try:
            while True:
                with self._cv:
                    while not self._queue:
                        self._cv.wait()
                    item = self._queue.popleft()
                if item[0] == "frame":
                    while self._sent - int(self._consumed[0]) >= self._slots:
                        if self._proc.poll() is not None:
                            raise DatasetError("the encoder process died")
                        time.sleep(0.002)
                    slot = self._sent % self._slots
                    buf[slot] = item[1]
                    self._send({"op": "frame", "slot": slot})
                    self._sent += 1
                else:
                    self._send(item[1])
                    if item[0] == "stop":
                        return
        except (OSError, DatasetError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            with self._results_cv:
                self._results_cv.notify_all()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        while True:
            line = self._proc.stdout.readline()
            try:
                result = json.loads(line) if line else None
            except ValueError:
                continue
            if result is None:
                if not self._stopping:
                    self.error = self.error or "the encoder process exited unexpectedly"
                self._ready.set()
                with self._results_cv:
                    self._results_cv.notify_all()
                return
            if result.get("ready"):
                self._ready.set()
                continue
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
            self._enqueue(("stop", {"op": "stop"}))
        self._feeder.join(timeout=10)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        self._reader.join(timeout=5)
        del self._consumed
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
            self.worker._enqueue(("finish", {"op": "finish", "episode": self.episode}))

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
            worker._enqueue(("abort", {"op": "abort", "episode": self.episode}))
