"""Cameras: a small protocol, a synthetic camera for tests, OpenCV (V4L2) capture, and a
capture thread that stamps every frame with `time.monotonic_ns()` (the loop's clock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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


def synthetic_frame(number: int, height: int, width: int, tint: int = 0) -> np.ndarray:
    """The synthetic camera's frame `number`: its bits as large blocks on a tinted background."""
    bh, bw, top, left = _block_bounds(height, width)
    if bh < 4 or bw < 4:
        raise ConfigError(
            f"synthetic frames need at least {6 * 4}x{6 * 4} pixels, got {width}x{height}"
        )
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[...] = (64 + tint % 64, 96, 160 - tint % 64)
    value = number % SYNTHETIC_MAX_FRAMES
    for bit in range(_GRID_ROWS * _GRID_COLS):
        r, c = divmod(bit, _GRID_COLS)
        level = 255 if (value >> bit) & 1 else 0
        frame[top + r * bh : top + (r + 1) * bh, left + c * bw : left + (c + 1) * bw] = level
    return frame


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
    """

    def __init__(
        self, key: str, width: int = 640, height: int = 480, fps: int = 30, tint: int = 0
    ) -> None:
        self.key, self.width, self.height, self.fps, self.tint = key, width, height, fps, tint
        self._count = 0
        self._start_ns: int | None = None
        self._cache: dict[int, np.ndarray] = {}

    def connect(self) -> None:
        self._start_ns = time.monotonic_ns()
        self._count = 0

    def frame(self, number: int) -> np.ndarray:
        cached = self._cache.get(number)
        if cached is None:
            cached = synthetic_frame(number, self.height, self.width, self.tint)
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[number] = cached
        return cached

    def read(self) -> tuple[np.ndarray, int]:
        if self._start_ns is None:
            raise PortError(f"camera {self.key!r} is not connected; call connect() first")
        due = self._start_ns + self._count * 1_000_000_000 // self.fps
        delay = due - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        number = self._count
        self._count += 1
        return self.frame(number).copy(), time.monotonic_ns()

    def disconnect(self) -> None:
        self._start_ns = None


class OpenCVCamera:
    """A UVC camera via OpenCV's V4L2 backend with MJPG (needs `pip install 'openk[opencv]'`)."""

    def __init__(
        self,
        key: str,
        device: int | str = 0,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        fourcc: str = "MJPG",
    ) -> None:
        self.key, self.device, self.width, self.height, self.fps = key, device, width, height, fps
        self.fourcc = fourcc
        self._cap: Any = None
        self._cv2: Any = None

    def connect(self) -> None:
        try:
            import cv2
        except ImportError:
            raise ConfigError(
                f"camera {self.key!r} needs OpenCV, which is not installed; run "
                "`pip install 'openk[opencv]'` (or opencv-python-headless)"
            ) from None
        self._cv2 = cv2
        backend = cv2.CAP_V4L2 if hasattr(cv2, "CAP_V4L2") else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.device, backend)
        if not cap.isOpened():
            raise PortError(
                f"camera {self.key!r}: cannot open {self.device!r}; check the device path "
                "(ls /dev/video*) and that no other program uses it"
            )
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        got_w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        got_h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if (got_w, got_h) != (self.width, self.height):
            cap.release()
            raise ConfigError(
                f"camera {self.key!r} ({self.device!r}) delivers {got_w}x{got_h}, not "
                f"{self.width}x{self.height}; set width/height to a mode it supports "
                "(v4l2-ctl --list-formats-ext)"
            )
        self._cap = cap

    def read(self) -> tuple[np.ndarray, int]:
        if self._cap is None:
            raise PortError(f"camera {self.key!r} is not connected; call connect() first")
        ok, bgr = self._cap.read()
        stamp = time.monotonic_ns()
        if not ok or bgr is None:
            raise PortError(
                f"camera {self.key!r} ({self.device!r}) returned no frame; is it unplugged?"
            )
        return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB), stamp

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
