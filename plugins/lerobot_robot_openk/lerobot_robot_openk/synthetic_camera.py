"""`--robot.cameras={front: {type: openk_synthetic, width: 64, height: 48, fps: 30}}`: openk's
synthetic camera (frame n shows the number n) as a lerobot camera, for trying the plugin and
for tests without a camera (`openk record`'s `type: synthetic`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from lerobot.cameras.camera import Camera
from lerobot.cameras.configs import CameraConfig

from openk.errors import ConfigError, PortError

TYPE_NAME = "openk_synthetic"


@CameraConfig.register_subclass(TYPE_NAME)
@dataclass
class OpenkSyntheticCameraConfig(CameraConfig):
    fps: int | None = 30
    width: int | None = 640
    height: int | None = 480

    def __post_init__(self) -> None:
        for name in ("fps", "width", "height"):
            value = getattr(self, name)
            if value is None or value <= 0:
                raise ConfigError(f"camera {TYPE_NAME}: {name} must be a positive number")


class OpenkSyntheticCamera(Camera):
    """openk.cameras.SyntheticCamera read by a thread; the newest frame is kept."""

    def __init__(self, config: OpenkSyntheticCameraConfig) -> None:
        super().__init__(config)
        from openk.cameras import SyntheticCamera

        assert config.width and config.height and config.fps
        self.config = config
        self.camera = SyntheticCamera(
            TYPE_NAME, width=config.width, height=config.height, fps=config.fps
        )
        self._cond = threading.Condition()
        self._frame: Any = None
        self._stamp_ns = 0
        self._taken = 0
        self._count = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def is_connected(self) -> bool:
        return self._thread is not None

    @staticmethod
    def find_cameras() -> list[dict[str, Any]]:
        return []

    def connect(self, warmup: bool = True) -> None:
        self.camera.connect()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=TYPE_NAME, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame, stamp = self.camera.read()
            with self._cond:
                self._frame, self._stamp_ns = frame, stamp
                self._count += 1
                self._cond.notify_all()

    def read(self) -> Any:
        return self.async_read(timeout_ms=2000)

    def async_read(self, timeout_ms: float = 200) -> Any:
        if not self.is_connected:
            raise PortError(f"camera {TYPE_NAME} is not connected")
        with self._cond:
            if not self._cond.wait_for(lambda: self._count > self._taken, timeout_ms / 1000):
                raise TimeoutError(f"camera {TYPE_NAME}: no frame in {timeout_ms} ms")
            self._taken = self._count
            return self._frame

    def read_latest(self, max_age_ms: int = 500) -> Any:
        if not self.is_connected:
            raise PortError(f"camera {TYPE_NAME} is not connected")
        with self._cond:
            if self._frame is None:
                self._cond.wait_for(lambda: self._frame is not None, max_age_ms / 1000)
            if self._frame is None:
                raise TimeoutError(f"camera {TYPE_NAME}: no frame yet")
            self._taken = self._count
            return self._frame

    def disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._thread = None
        self.camera.disconnect()
