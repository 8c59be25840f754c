"""Streaming video encoding (PyAV), mp4 concatenation by stream copy, probing and decoding.

Each camera gets one encoder thread per episode. Frames are queued without bound, so a slow
encoder makes the queue grow instead of dropping frames. The encoder writes a fragmented mp4 into
the episode journal, which stays readable up to the last fragment if the process is killed; at
commit the packets are copied (not re-encoded) into the dataset's concatenated mp4.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no flock; a recovery then reads the file as it is
    fcntl = None  # type: ignore[assignment]

from openk.dataset.stats import ImageStatsAccumulator, Stats
from openk.errors import DatasetError

# SVT-AV1 prints a ~25-line banner per encoder unless told not to.
os.environ.setdefault("SVT_LOG", "1")

# Re-exported (`as av`): modules that take av from here get it with SVT_LOG set.
import av as av

_CODEC_ALIASES = {
    "av1": "libsvtav1",
    "libsvtav1": "libsvtav1",
    "h264": "libx264",
    "libx264": "libx264",
}
_FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


@dataclass(frozen=True)
class VideoConfig:
    """Encoder settings. Defaults are lerobot 0.6.1's (AV1, yuv420p, g=2, crf=30, preset 12)."""

    vcodec: str = "libsvtav1"
    pix_fmt: str = "yuv420p"
    g: int = 2
    crf: int = 30
    preset: int | str | None = None  # None: 12 for libsvtav1, "veryfast" for h264
    fast_decode: int = 0
    threads: int | None = None
    extra_options: dict[str, str] = field(default_factory=dict)
    # Encode in one child process per camera (see encoder_process.py); False: a thread.
    isolate: bool = True
    # The encoder processes yield the CPU to the recorder's own threads (capture, intake).
    nice: int = 10

    @property
    def encoder(self) -> str:
        try:
            return _CODEC_ALIASES[self.vcodec]
        except KeyError:
            raise DatasetError(
                f"video codec {self.vcodec!r} is not supported; use 'libsvtav1' (default) or 'h264'"
            ) from None

    @property
    def effective_preset(self) -> int | str:
        if self.preset is not None:
            return self.preset
        return 12 if self.encoder == "libsvtav1" else "veryfast"

    def codec_options(self) -> dict[str, str]:
        opts = {"g": str(self.g), "crf": str(self.crf), "preset": str(self.effective_preset)}
        if self.encoder == "libsvtav1":
            params = f"fast-decode={self.fast_decode}"
            if self.threads:
                params += f":lp={self.threads}"
            opts["svtav1-params"] = params
        else:
            # No B-frames: decode order == presentation order, so packets can be cut and
            # concatenated at any frame.
            opts["bf"] = "0"
            if self.fast_decode:
                opts["tune"] = "fastdecode"
            if self.threads:
                opts["threads"] = str(self.threads)
        opts.update(self.extra_options)
        return opts

    def info_settings(self) -> dict[str, Any]:
        return {
            "video.g": self.g,
            "video.crf": self.crf,
            "video.preset": self.effective_preset,
            "video.fast_decode": self.fast_decode,
            "video.video_backend": "pyav",
            "video.extra_options": dict(self.extra_options),
        }


_STOP = object()


@dataclass
class EncodedEpisodeVideo:
    path: Path
    frames: int
    stats: Stats


# How often an encoder re-checks its threads' scheduling (the encoder starts threads lazily).
DEMOTE_EVERY_FRAMES = 30


def demote_realtime_threads(nice: int, keep_prefix: str = "openk-") -> int:
    """Moves this process's SCHED_FIFO/RR threads, except openk's own (named `keep_prefix`…:
    the control loop, bus workers, simulators), to normal scheduling at `nice`.

    SVT-AV1 starts its worker threads SCHED_FIFO 99 when it may (as root, or with an rtprio
    limit): above the control loop and the simulators, so a busy encoder froze the motor
    buses for 10+ ms at a time. Encoding is bulk work; it must never outrank the loop.
    Returns how many threads were moved."""
    realtime = {getattr(os, "SCHED_FIFO", -1), getattr(os, "SCHED_RR", -1)}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:  # not Linux
        return 0
    moved = 0
    for tid in tids:
        with contextlib.suppress(OSError, ValueError):
            if os.sched_getscheduler(int(tid)) not in realtime:
                continue
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            if comm.startswith(keep_prefix):
                continue
            os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, int(tid), nice)
            moved += 1
    return moved


class CameraEncoder:
    """One camera's encoder thread for one episode. `put` never blocks and never drops."""

    def __init__(self, path: Path, width: int, height: int, fps: int, config: VideoConfig) -> None:
        self.path = path
        self.width, self.height, self.fps = width, height, fps
        self.config = config
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stats = ImageStatsAccumulator()
        self.frames_in = 0
        self.frames_out = 0
        self.error: BaseException | None = None
        self._abort = False
        self._thread = threading.Thread(
            target=self._run, name=f"openk-enc-{path.stem}", daemon=True
        )
        self._thread.start()

    @property
    def backlog(self) -> int:
        return self.frames_in - self.frames_out

    def put(self, frame: np.ndarray) -> None:
        if self.error is not None:
            raise DatasetError(f"video encoder for {self.path.stem} failed: {self.error}")
        self.frames_in += 1
        self._queue.put(frame)

    def finish(self) -> EncodedEpisodeVideo:
        """Flush and close the file; waits for the backlog to be encoded."""
        self._queue.put(_STOP)
        self._thread.join()
        if self.error is not None:
            raise DatasetError(f"video encoder for {self.path.stem} failed: {self.error}")
        return EncodedEpisodeVideo(self.path, self.frames_out, self._stats.result())

    def abort(self) -> None:
        self._abort = True
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with av.open(str(self.path), "w", format="mp4", options=dict(_FRAGMENTED)) as out:
                stream = out.add_stream(
                    self.config.encoder, rate=self.fps, options=self.config.codec_options()
                )
                stream.width, stream.height = self.width, self.height
                stream.pix_fmt = self.config.pix_fmt
                while True:
                    item = self._queue.get()
                    if item is _STOP or self._abort:
                        break
                    frame = av.VideoFrame.from_ndarray(item, format="rgb24")
                    frame.pts = self.frames_out
                    for packet in stream.encode(frame):
                        out.mux(packet)
                    if self.frames_out % DEMOTE_EVERY_FRAMES == 0:
                        demote_realtime_threads(self.config.nice)
                    self._stats.update(item)
                    self.frames_out += 1
                if not self._abort:
                    for packet in stream.encode():
                        out.mux(packet)
        except BaseException as exc:  # surfaced to the writer through put()/finish()
            self.error = exc


def _frame_number(value: int | None, time_base: Fraction, fps: int) -> int:
    return round(Fraction(value or 0) * time_base * fps)


def append_video(
    dst: Path, episode_video: Path, frames: int, fps: int, tmp: Path, *, existing_frames: int
) -> None:
    """Write to `tmp` the packets of `dst` (if it exists) followed by the episode's first `frames`.

    Packet timestamps are rewritten to frame numbers (time base 1/fps), so the episode starts
    exactly at `existing_frames / fps` and the file stays constant-frame-rate from PTS 0.
    """
    sources = ([(dst, existing_frames)] if existing_frames else []) + [(episode_video, frames)]
    tb = Fraction(1, fps)
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"}) as out:
        out_stream = None
        offset = 0
        for path, wanted in sources:
            with av.open(str(path)) as src:
                stream = src.streams.video[0]
                if out_stream is None:
                    out_stream = out.add_stream_from_template(stream, opaque=True)
                copied = 0
                try:
                    for packet in src.demux(stream):
                        if packet.size == 0 or packet.pts is None:
                            continue
                        if copied >= wanted:
                            break
                        pts = _frame_number(packet.pts, stream.time_base, fps)
                        dts = _frame_number(
                            packet.dts if packet.dts is not None else packet.pts,
                            stream.time_base,
                            fps,
                        )
                        packet.stream = out_stream
                        packet.time_base = tb
                        packet.pts, packet.dts, packet.duration = pts + offset, dts + offset, 1
                        out.mux(packet)
                        copied += 1
                except av.error.InvalidDataError:
                    pass  # a journal cut by a crash ends mid-fragment; keep what is whole
                if copied != wanted:
                    raise DatasetError(
                        f"{path} holds {copied} video frames where {wanted} were expected"
                    )
                offset += wanted


# Beside a journal mp4 while a process writes it: `<file>.writing`, locked (flock) by the writer.
# An encoder process outlives a recorder killed with SIGKILL long enough to write out the
# frames it still holds; a recovery waits for that instead of reading a file still growing.
WRITING_SUFFIX = ".writing"
_WRITER_WAIT_S = 30.0


def hold_writer_lock(path: Path) -> Any:
    """Mark `path` as being written: returns a handle for `release_writer_lock`."""
    lock = path.with_name(path.name + WRITING_SUFFIX)
    fh = open(lock, "wb")  # noqa: SIM115 - held until release_writer_lock
    if fcntl is not None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    return fh


def release_writer_lock(path: Path, handle: Any) -> None:
    with contextlib.suppress(OSError):
        path.with_name(path.name + WRITING_SUFFIX).unlink()
    with contextlib.suppress(OSError):
        handle.close()


def wait_for_writer(path: Path, timeout_s: float = _WRITER_WAIT_S) -> bool:
    """Wait (up to `timeout_s`) until no process writes `path`; False if one still does."""
    lock = path.with_name(path.name + WRITING_SUFFIX)
    if fcntl is None:
        return True
    try:
        fh = open(lock, "rb")  # noqa: SIM115
    except OSError:
        return True  # no marker: nobody writes it
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
    finally:
        fh.close()


def _complete_boxes_end(path: Path) -> int:
    """Byte offset where the file's last complete top-level mp4 box ends (0 if none)."""
    end = 0
    with open(path, "rb") as fh:
        size_total = os.fstat(fh.fileno()).st_size
        while end + 8 <= size_total:
            fh.seek(end)
            header = fh.read(16)
            size = int.from_bytes(header[:4], "big")
            if size == 1 and len(header) >= 16:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:  # "to the end of the file": cannot tell whether it is whole
                break
            if size < 8 or end + size > size_total:
                break
            end += size
    return end


def count_packets(path: Path) -> int:
    """Number of whole video frames (packets) in an mp4 from the start, tolerating a torn tail.

    A process killed while writing a fragmented mp4 leaves its last fragment cut short. The
    demuxer still returns that fragment's packets, shortened or pointing past the end of the
    file; they do not decode. Only packets lying inside complete top-level boxes count, and
    counting stops at the first one that does not.
    """
    n = 0
    try:
        complete = _complete_boxes_end(path)
        with av.open(str(path)) as src:
            stream = src.streams.video[0]
            try:
                for packet in src.demux(stream):
                    if not packet.size or packet.pts is None:
                        continue
                    pos = packet.pos
                    if pos is None or pos < 0 or pos + packet.size > complete:
                        break
                    n += 1
            except av.error.FFmpegError:
                pass
    except (av.error.FFmpegError, OSError, IndexError):
        return 0  # missing, empty or cut inside its header: no frame is readable
    return n


def frame_numbers_of_packets(path: Path, fps: int) -> list[int]:
    """Presentation times of an mp4's packets as frame numbers at `fps`, in decode order."""
    numbers = []
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        for packet in src.demux(stream):
            if packet.size and packet.pts is not None:
                numbers.append(_frame_number(packet.pts, stream.time_base, fps))
    return numbers


def probe_info(path: Path, config: VideoConfig | None) -> dict[str, Any]:
    """The `info` block lerobot writes for a video feature."""
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        info: dict[str, Any] = {
            "is_depth_map": False,
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.fps": int(stream.base_rate) if stream.base_rate else None,
            "video.channels": 3,
            "has_audio": len(src.streams.audio) > 0,
        }
    if config is not None:
        info.update(config.info_settings())
    return info


def decode_frames(path: Path, from_timestamp: float, count: int, fps: int) -> np.ndarray:
    """Decode `count` RGB frames starting at `from_timestamp` -> (count, H, W, 3) uint8."""
    first = round(from_timestamp * fps)
    frames: list[np.ndarray] = []
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        if first > 0 and stream.time_base is not None:
            src.seek(int(Fraction(first, fps) / stream.time_base), stream=stream, backward=True)
        for frame in src.decode(stream):
            if frame.pts is None:
                continue
            index = _frame_number(frame.pts, stream.time_base, fps)
            if index < first:
                continue
            if index >= first + count:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    if len(frames) != count:
        raise DatasetError(
            f"{path}: decoded {len(frames)} frames at {from_timestamp}s, expected {count}"
        )
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), dtype=np.uint8)
