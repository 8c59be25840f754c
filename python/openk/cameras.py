"""Cameras: a small protocol, a synthetic camera for tests, OpenCV capture (V4L2 devices, video
files), and a capture thread that stamps every frame with `time.monotonic_ns()` (the loop's clock).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from openk.errors import ConfigError, PortError

FrameSink = Callable[[str, np.ndarray, int], None]


@runtime_checkable
class Camera(Protocol):
    """What the recorder needs from a camera. `read` blocks until the next frame."""

    key: str
    width: int
    height: int
    fps: int

    def connect(self) -> None: ...

    def read(self) -> tuple[np.ndarray, int]:
        """Next frame as (H x W x 3 uint8 RGB, CLOCK_MONOTONIC ns at capture)."""
        ...

    def disconnect(self) -> None: ...


# Frame numbers are drawn as a grid of black/white blocks: 4 x 4 = 16 bits, with one
# block width of margin so codec ringing at the border does not touch the bits.
_GRID_ROWS, _GRID_COLS = 4, 4
SYNTHETIC_MAX_FRAMES = 1 << (_GRID_ROWS * _GRID_COLS)


def _block_bounds(height: int, width: int) -> tuple[int, int, int, int]:
    bh, bw = height // (_GRID_ROWS + 2), width // (_GRID_COLS + 2)
    return bh, bw, bh, bw  # block height/width, top/left margin


def _synthetic_background(height: int, width: int, tint: int) -> np.ndarray:
    """A synthetic frame showing 0: every bit block black on the tinted background."""
    bh, bw, top, left = _block_bounds(height, width)
    if bh < 4 or bw < 4:
        raise ConfigError(
            f"synthetic frames need at least {6 * 4}x{6 * 4} pixels, got {width}x{height}"
        )
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[...] = (64 + tint % 64, 96, 160 - tint % 64)
    frame[top : top + _GRID_ROWS * bh, left : left + _GRID_COLS * bw] = 0
    return frame


def _draw_bits(frame: np.ndarray, number: int) -> np.ndarray:
    """Sets the blocks of `number`'s one-bits white on a background from
    `_synthetic_background` (in place; returns `frame`)."""
    bh, bw, top, left = _block_bounds(*frame.shape[:2])
    value = number % SYNTHETIC_MAX_FRAMES
    for bit in range(_GRID_ROWS * _GRID_COLS):
        if (value >> bit) & 1:
            r, c = divmod(bit, _GRID_COLS)
            frame[top + r * bh : top + (r + 1) * bh, left + c * bw : left + (c + 1) * bw] = 255
    return frame


def synthetic_frame(number: int, height: int, width: int, tint: int = 0) -> np.ndarray:
    """The synthetic camera's frame `number`: its bits as large blocks on a tinted background."""
    return _draw_bits(_synthetic_background(height, width, tint), number)


def read_synthetic_number(frame: np.ndarray) -> int:
    """Decode the frame number from a (possibly lossy-compressed) synthetic frame."""
    height, width = frame.shape[:2]
    bh, bw, top, left = _block_bounds(height, width)
    value = 0
    for bit in range(_GRID_ROWS * _GRID_COLS):
        r, c = divmod(bit, _GRID_COLS)
        y0, x0 = top + r * bh + bh // 4, left + c * bw + bw // 4
        patch = frame[y0 : y0 + max(bh // 2, 1), x0 : x0 + max(bw // 2, 1)]
        if float(patch.mean()) > 127.5:
            value |= 1 << bit
    return value


class SyntheticCamera:
    """Deterministic frames at a set fps; frame n shows the number n (see `read_synthetic_number`).

    `read` paces itself on CLOCK_MONOTONIC like a real camera; `frame(n)` gives any frame at once.
    Frame n is the scene at `connect + n / fps` and is stamped with that instant, the way a
    camera stamps a frame with its exposure (V4L2 buffer time), not with when a thread got
    round to handing it over: drawing the frame and a late wake-up of the capture thread only
    delay its delivery, which the writer waits for (see `DatasetWriter.add_camera_frame`).
    """

    def __init__(
        self, key: str, width: int = 640, height: int = 480, fps: int = 30, tint: int = 0
    ) -> None:
        self.key, self.width, self.height, self.fps, self.tint = key, width, height, fps, tint
        self._count = 0
        self._start_ns: int | None = None
        self._background: np.ndarray | None = None

    def connect(self) -> None:
        if self._background is None:
            self._background = _synthetic_background(self.height, self.width, self.tint)
        self._start_ns = time.monotonic_ns()
        self._count = 0

    def frame(self, number: int) -> np.ndarray:
        """Frame `number` as a new array. Drawn on a copy of the background: ~0.1 ms at
        640x480, where drawing it whole took ~5 ms of the capture thread (and the GIL) per
        frame, a quarter of a core for two cameras at 30 fps."""
        if self._background is None:
            self._background = _synthetic_background(self.height, self.width, self.tint)
        return _draw_bits(self._background.copy(), number)

    def read(self) -> tuple[np.ndarray, int]:
        if self._start_ns is None:
            raise PortError(f"camera {self.key!r} is not connected; call connect() first")
        due = self._start_ns + self._count * 1_000_000_000 // self.fps
        delay = due - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        number = self._count
        self._count += 1
        return self.frame(number), due

    def disconnect(self) -> None:
        self._start_ns = None


# lerobot's `rotation` values (degrees clockwise; -90 is its ROTATE_270) -> cv2.rotate's codes.
OPENCV_ROTATIONS: dict[int, str | None] = {
    0: None,
    90: "ROTATE_90_CLOCKWISE",
    180: "ROTATE_180",
    -90: "ROTATE_90_COUNTERCLOCKWISE",
}
OPENCV_COLOR_MODES: tuple[str, ...] = ("rgb", "bgr")


def is_video_device(source: int | str | os.PathLike[str]) -> bool:
    """A camera index or a device node (`/dev/video0`, `/dev/v4l/by-id/...`), not a file/URL."""
    return isinstance(source, int) or os.fspath(source).startswith("/dev/")


class OpenCVCamera:
    """A camera read through OpenCV (needs `pip install 'openk[opencv]'`).

    `device` is what lerobot calls `index_or_path`: a camera index or `/dev/...` node opens
    with the V4L2 backend in `fourcc` (MJPG by default) at width x height and fps; anything
    else is a video file or URL opened with OpenCV's default backend (FFMPEG). A local file
    plays at `fps` like a live camera and ends with a PortError.

    `width`/`height` are the frame size after `rotation` (as in lerobot: a camera rotated by
    90 or -90 captures height x width). `color_mode` is `rgb` or `bgr`; `warmup_s` seconds of
    frames are read and dropped on connect (a camera's first frames are often dark).
    """

    def __init__(
        self,
        key: str,
        device: int | str | os.PathLike[str] = 0,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        fourcc: str = "MJPG",
        color_mode: str = "rgb",
        rotation: int = 0,
        warmup_s: float = 0.0,
    ) -> None:
        if not isinstance(device, int):
            device = os.fspath(device)
            if device.isdigit():
                device = int(device)
        self.device: int | str = device
        self.key, self.width, self.height, self.fps = key, width, height, fps
        self.fourcc = fourcc
        self.color_mode = color_mode.lower()
        self.rotation = rotation
        self.warmup_s = warmup_s
        self.is_device = is_video_device(device)
        if self.color_mode not in OPENCV_COLOR_MODES:
            raise ConfigError(
                f"camera {key!r}: color_mode {color_mode!r} is not supported; use "
                f"{' or '.join(OPENCV_COLOR_MODES)}"
            )
        if rotation not in OPENCV_ROTATIONS:
            raise ConfigError(
                f"camera {key!r}: rotation {rotation!r} is not supported; use one of "
                f"{', '.join(map(str, OPENCV_ROTATIONS))} (degrees clockwise)"
            )
        if self.is_device and len(fourcc) != 4:
            raise ConfigError(
                f"camera {key!r}: fourcc {fourcc!r} must be 4 characters, e.g. MJPG or YUYV"
            )
        if fps <= 0:
            raise ConfigError(f"camera {key!r}: fps is {fps}; it must be > 0")
        # What the source must deliver before rotation.
        self._turned = rotation in (90, -90)
        self.capture_width, self.capture_height = (
            (height, width) if self._turned else (width, height)
        )
        self._cap: Any = None
        self._cv2: Any = None
        self._rotate: int | None = None
        self._count = 0
        self._start_ns = 0
        # A local file decodes as fast as the CPU allows; it is played at `fps` instead.
        self._paced = not self.is_device and "://" not in str(device)

    def _describe(self) -> str:
        if isinstance(self.device, int):
            return f"camera {self.key!r} (index {self.device})"
        kind = "device" if self.is_device else "video"
        return f"camera {self.key!r} ({kind} {self.device})"

    def connect(self) -> None:
        try:
            import cv2
        except ImportError:
            raise ConfigError(
                f"camera {self.key!r} needs OpenCV, which is not installed; run "
                "`pip install 'openk[opencv]'` (or opencv-python-headless)"
            ) from None
        self._cv2 = cv2
        if self._paced and not Path(str(self.device)).is_file():
            raise PortError(
                f"{self._describe()}: no such video file; set index_or_path to an existing video "
                "file, a /dev/videoN device or a camera index (see `openk find-cameras`)"
            )
        cap = self._open(cv2)
        if not cap.isOpened():
            if self.is_device:
                hint = "check the device (`openk find-cameras`) and that no other program uses it"
            else:
                hint = "check that it is a video OpenCV can decode (e.g. mp4/mkv) or a live URL"
            raise PortError(f"{self._describe()}: cannot open it; {hint}")
        if self.is_device:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.fourcc))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.capture_width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.capture_height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        got_w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        got_h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if (got_w, got_h) != (self.capture_width, self.capture_height):
            cap.release()
            raise ConfigError(self._mode_mismatch(got_w, got_h))
        name = OPENCV_ROTATIONS[self.rotation]
        self._rotate = None if name is None else getattr(cv2, name)
        self._cap = cap
        self._count = 0
        self._start_ns = time.monotonic_ns()
        if self.warmup_s > 0:
            deadline = time.monotonic() + self.warmup_s
            try:
                self.read()
                while time.monotonic() < deadline:
                    self.read()
            except BaseException:
                self.disconnect()
                raise

    def _open(self, cv2: Any) -> Any:
        """VideoCapture on the right backend, without OpenCV's own warnings on stderr (the
        PortError raised on failure says what went wrong and what to do)."""
        backend = cv2.CAP_ANY
        if self.is_device and hasattr(cv2, "CAP_V4L2"):
            backend = cv2.CAP_V4L2
        logging = getattr(getattr(cv2, "utils", None), "logging", None)
        if logging is None:
            return cv2.VideoCapture(self.device, backend)
        level = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
        try:
            return cv2.VideoCapture(self.device, backend)
        finally:
            logging.setLogLevel(level)

    def _mode_mismatch(self, got_w: int, got_h: int) -> str:
        asked = f"{self.capture_width}x{self.capture_height}"
        if self._turned:
            asked += f" (width x height turned by rotation {self.rotation})"
        # What to configure is the size after rotation.
        set_w, set_h = (got_h, got_w) if self._turned else (got_w, got_h)
        text = f"{self._describe()} delivers {got_w}x{got_h}, not {asked}; set width: {set_w}, "
        text += f"height: {set_h}"
        if self.is_device:
            node = self.device if isinstance(self.device, str) else f"/dev/video{self.device}"
            text += f" or another mode it supports (v4l2-ctl -d {node} --list-formats-ext)"
        return text

    def read(self) -> tuple[np.ndarray, int]:
        if self._cap is None:
            raise PortError(f"camera {self.key!r} is not connected; call connect() first")
        if self._paced:
            due = self._start_ns + self._count * 1_000_000_000 // self.fps
            delay = due - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
        ok, bgr = self._cap.read()
        stamp = time.monotonic_ns()
        if not ok or bgr is None:
            if self.is_device:
                raise PortError(
                    f"{self._describe()} returned no frame (after {self._count}); is it unplugged? "
                    "Check the cable and `openk find-cameras`"
                )
            raise PortError(
                f"{self._describe()} ended after {self._count} frames; use a longer video, "
                "or record shorter/fewer episodes (--dataset.episode_time_s, num_episodes)"
            )
        self._count += 1
        cv2 = self._cv2
        frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if self.color_mode == "rgb" else bgr
        if self._rotate is not None:
            frame = cv2.rotate(frame, self._rotate)
        return frame, stamp

    def disconnect(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class CaptureThread:
    """Reads a camera in a background thread and hands each stamped frame to `sink`.

    `sink` is typically `DatasetWriter.add_camera_frame`; it may be replaced while running.
    Read errors are kept in `error` and stop the thread.
    """

    def __init__(self, camera: Camera, sink: FrameSink | None = None) -> None:
        self.camera = camera
        self.sink = sink
        self.frames = 0
        self.error: BaseException | None = None
        self.latest: tuple[np.ndarray, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"openk-cam-{camera.key}", daemon=True
        )

    def start(self) -> CaptureThread:
        self.camera.connect()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.camera.disconnect()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame, stamp = self.camera.read()
                self.latest = (frame, stamp)
                self.frames += 1
                sink = self.sink
                if sink is not None:
                    sink(self.camera.key, frame, stamp)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> CaptureThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
