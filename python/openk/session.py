"""The session layer every command stands on: the loop, the cameras, keys and signals.

A command (`openk record`, `teleoperate`, `replay`, and the coming `rollout`) connects a
`Session` — the Rust control loop of `openk._core` seen through a small protocol, so tests can
put a scripted one in its place — plus its cameras, reads the user's keys into `Events`, and
turns `kill` into Ctrl-C. Nothing here decides about episodes or datasets; the commands in
`openk.commands` do. Nothing here is on the control path either: the loop runs in Rust.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from openk.config import (
    MOTION_SAFETY,
    CameraConfig,
    DeviceConfig,
    FindJointLimitsConfig,
    RecordConfig,
    ReplayConfig,
    TeleoperateConfig,
    to_dict,
)
from openk.devices import Role, is_sim_port, load_core
from openk.errors import ConfigError, PortError
from openk.log import setup_logging
from openk.terminal import Key, StatusLine

if TYPE_CHECKING:
    from openk._core import LoopTelemetry

log = logging.getLogger(__name__)

# How often a command redraws its status line, and how long one read waits for loop rows.
STATUS_PERIOD_S = 0.25
BATCH_WAIT_S = 0.05


# --- what a command needs from the loop and the cameras --------------------------------


class Session(Protocol):
    """A running teleop loop (leader → follower) that can emit dataset rows."""

    @property
    def schema(self) -> Any:
        """pyarrow Schema of the batches (joint names in field metadata)."""

    def start_episode(self) -> None: ...

    def end_episode(self) -> None: ...

    def read_batch(self, timeout_s: float) -> Any | None:
        """Next batch of rows (pyarrow RecordBatch) or None when none arrived in time."""

    def telemetry(self) -> LoopTelemetry:
        """The loop's report of the current (or last) episode, of the whole run before any
        episode started."""

    def close(self) -> None: ...


def loop_metadata(session: Session) -> dict[str, Any]:
    """The episode's loop report for `meta/openk/episodes.jsonl` (`openk_loop`), with the
    session's own counters (a policy's) beside it."""
    out: dict[str, Any] = session.telemetry().to_dict()
    extra = getattr(session, "policy_stats", None)
    if callable(extra):
        out.update(extra())
    return out


class Camera(Protocol):
    def start(self, on_frame: Callable[[Any, int], None]) -> None:
        """Start capturing; `on_frame(rgb_uint8_hwc, t_ns)` from a capture thread."""

    def stop(self) -> None: ...


SessionFactory = Callable[
    [RecordConfig | TeleoperateConfig | ReplayConfig | FindJointLimitsConfig], Session
]
CameraFactory = Callable[[str, CameraConfig], Camera]


# --- checks before anything is connected ------------------------------------------------------


def check_ports(dev: DeviceConfig | None, role: str) -> None:
    """Fail before connecting anything when a configured serial port does not exist."""
    if dev is None:
        return
    for key in ("port", "sts_port"):
        port = getattr(dev, key)
        if port is None or is_sim_port(port):
            continue
        if not os.path.exists(port):
            raise PortError(
                f"serial port {port} (--{role}.{key}, {dev.type}) does not exist; plug the "
                f"adapter in and find its name with `openk find-port`, or use --{role}.{key}=sim"
            )


# --- events from keys and signals -------------------------------------------------------------


@dataclass
class Events:
    """What the user asked for; set from the key thread, read by the main loop."""

    exit_early: threading.Event = field(default_factory=threading.Event)
    rerecord: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    # SPACE (lerobot's DAgger pause key): hands the arm between the policy and the leader.
    on_space: Callable[[], None] | None = None

    def on_key(self, key: Key) -> None:
        if key is Key.SPACE and self.on_space is not None:
            self.on_space()
        if key is Key.RIGHT:
            self.exit_early.set()
        elif key is Key.LEFT:
            self.rerecord.set()
            self.exit_early.set()
        elif key is Key.ESC:
            self.stop.set()
            self.exit_early.set()
        log.info("key %s", key.value)


class _Interrupts:
    """Ctrl-C (SIGINT) and `kill` (SIGTERM) as KeyboardInterrupt, never in a shielded step.

    Python raises KeyboardInterrupt wherever the main thread happens to be when the signal
    comes; in the middle of "read rows, hand them to the writer, count them" that loses rows
    or leaves the count behind the writer (an episode holding rows then looks empty and is
    discarded). While `shielded()` blocks run, a signal is remembered and raised when the
    outermost block ends, so such a step is whole or not begun.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.depth:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.pending and not self.depth:
            self.pending = False
            raise KeyboardInterrupt


_INTERRUPTS = _Interrupts()


def shielded() -> contextlib.AbstractContextManager[None]:
    """A step Ctrl-C / `kill` do not cut in half inside `sigterm_as_interrupt()`: a signal that
    comes during it is raised as KeyboardInterrupt when it ends. Keep such steps short (one
    batch read and written)."""
    return _INTERRUPTS.shielded()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """`kill` (SIGTERM) stops like Ctrl-C so finished episodes are kept; neither signal cuts a
    `shielded()` step in half. (Ctrl-C is left alone if it was not Python's default, e.g.
    ignored for a background job.)"""
    handled = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        handled.append(signal.SIGINT)
    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in handled:
            previous[sig] = signal.signal(sig, _INTERRUPTS.handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- helpers the commands share ---------------------------------------------------------------


def vector_names(field_: Any) -> list[str] | None:
    """The joint names a vector column (`observation.state`, `action`) carries in its
    metadata, or None."""
    import json

    meta = field_.metadata or {}
    raw = meta.get(b"names")
    return json.loads(raw) if raw else None


def end_quietly(session: Session) -> None:
    """End the episode in progress, if any, on the way out (errors ignored: already failing)."""
    with contextlib.suppress(Exception):
        session.end_episode()


TeardownStep = Callable[[], object]


def quietly(step: TeardownStep) -> TeardownStep:
    """A `teardown` step whose errors are logged and dropped (a camera that fails to stop must
    not fail a recording already made); an interruption in it still counts."""

    def run() -> None:
        try:
            step()
        except Exception:
            log.debug("teardown: %r failed (ignored)", step, exc_info=True)

    return run


def teardown(*steps: TeardownStep | None) -> None:
    """A command's way out: runs EVERY step in order (None: no such step), even when one fails
    or is interrupted — a second Ctrl-C while a camera stops must not skip the return home nor
    the writer's close. Then re-raises what went wrong: the first interruption
    (KeyboardInterrupt, SystemExit) if any, else the first error of a step not run `quietly`.
    (A Ctrl-C inside `Session.close` cuts the return home short there and is not re-raised.)"""
    interrupted: BaseException | None = None
    failed: Exception | None = None
    for step in steps:
        if step is None:
            continue
        try:
            step()
        except Exception as err:
            if failed is None:
                failed = err
        except BaseException as exc:
            log.info("teardown: %s during %r; the other steps still run", type(exc).__name__, step)
            if interrupted is None:
                interrupted = exc
    if interrupted is not None:
        if failed is not None:
            log.warning("teardown: %s", failed, exc_info=failed)
        raise interrupted
    if failed is not None:
        raise failed


def open_leader_session(
    cfg: TeleoperateConfig | FindJointLimitsConfig,
    command: str,
    *,
    debug: bool,
    session_factory: SessionFactory | None,
    logger: logging.Logger,
) -> Session:
    """The start of a command that drives the follower from the leader without recording
    (`teleoperate`, `find-joint-limits`): the log set up, the config logged (by the command's
    `logger`), both devices' ports checked, the session connected."""
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    logger.info("openk %s config: %s", command, to_dict(cfg))
    check_ports(cfg.robot, "robot")
    check_ports(cfg.teleop, "teleop")
    return (session_factory or connect_session)(cfg)


def read_until_stopped(
    session: Session,
    events: Events,
    ui: StatusLine,
    *,
    status: Callable[[float], str],
    until: Callable[[float], bool],
    on_batch: Callable[[Any], None] | None = None,
) -> str:
    """Read the loop's rows until `until(elapsed_s)` holds (checked before every read; it may
    also raise), Esc sets `events.stop`, or Ctrl-C / `kill` (raised as KeyboardInterrupt).
    Each non-empty batch goes to `on_batch`, if given; every
    STATUS_PERIOD_S the line `status(elapsed_s)` is drawn. Returns the last line drawn ("" if
    none)."""
    start = time.monotonic()
    last = 0.0
    last_line = ""
    with sigterm_as_interrupt():
        while not events.stop.is_set():
            elapsed = time.monotonic() - start
            if until(elapsed):
                break
            batch = session.read_batch(BATCH_WAIT_S)
            if on_batch is not None and batch is not None and batch.num_rows:
                on_batch(batch)
            if time.monotonic() - last >= STATUS_PERIOD_S:
                last = time.monotonic()
                last_line = status(elapsed)
                ui.update(last_line)
    return last_line


# --- the native session and cameras -----------------------------------------------------------


def _vector_field(name: str, names: Sequence[str]) -> Any:
    import json

    import pyarrow as pa

    return pa.field(
        name,
        pa.list_(pa.float32(), len(names)),
        nullable=False,
        metadata={"names": json.dumps(list(names))},
    )


class NativeSession:
    """`openk._core.TeleopSession` seen through the `Session` protocol."""

    def __init__(self, core_session: Any, switchable: bool = False) -> None:
        import pyarrow as pa

        self.core = core_session
        self._episode_started = False
        self._events_seen = 0
        # The batch schema is known from the device's feature names before any row exists.
        self._schema = pa.schema(
            [
                pa.field("capture_time_ns", pa.int64(), nullable=False),
                _vector_field("observation.state", core_session.observation_names),
                _vector_field("action", core_session.action_names),
            ]
        )
        if switchable:
            # The leader and the policy take turns: rows say which one drove (lerobot DAgger).
            self._schema = self._schema.append(pa.field("intervention", pa.bool_(), False))

    @property
    def schema(self) -> Any:
        return self._schema

    @property
    def action_names(self) -> list[str]:
        return list(self.core.action_names)

    def start_episode(self) -> None:
        self.core.start_episode()
        self._episode_started = True

    def end_episode(self) -> None:
        self.core.end_episode()

    def read_batch(self, timeout_s: float) -> Any | None:
        import pyarrow as pa

        batch = self.core.next_batch(timeout_s)
        self._log_events()
        if batch is None:
            failure = self.core.failure()
            if failure is not None:
                raise failure
            return None
        return pa.table(batch)

    def _log_events(self) -> None:
        events = self.core.events()
        for event in events[self._events_seen :]:
            # The stop the command itself asked for is routine (a refused resume, the end of a
            # run), not a safety event for the user's terminal; it stays in the log file.
            routine = event.get("reason") == "stop requested"
            log.log(
                logging.INFO if routine else logging.WARNING,
                "%s: %s %s: %s",
                "loop event" if routine else "safety event",
                event.get("device"),
                event.get("motor"),
                event.get("reason"),
            )
        self._events_seen = len(events)

    def telemetry(self) -> LoopTelemetry:
        report: LoopTelemetry = (
            self.core.episode_telemetry() if self._episode_started else self.core.telemetry()
        )
        return report

    def send_action(self, values: Sequence[float]) -> None:
        self.core.send_action(list(values))

    def send_actions(self, actions: Any, start_ns: int | None = None) -> None:
        """A timed sequence played by the loop's clock (see `TeleopSession.send_actions`)."""
        self.core.send_actions(actions, start_ns)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once every scheduled action was reached; False after `timeout_s`."""
        done = bool(self.core.wait_idle(timeout_s))
        self._log_events()
        return done

    @property
    def pending_actions(self) -> int:
        return int(self.core.pending_actions)

    def close(self) -> None:
        """Stops the loop: the follower returns home first when end_home_ramp_time_s > 0 (a
        Ctrl-C meanwhile cuts it short); the stop's events are logged after."""
        log.info("stopping the loop")
        try:
            try:
                self.core.stop()
            except KeyboardInterrupt:
                # Ctrl-C just before the stop began (inside it, it cuts the return home
                # short): the command is stopping anyway, so stop; a further one cuts short.
                log.info("stopping the loop (Ctrl-C)")
                self.core.stop()
        finally:
            self._log_events()


def _device_dict(dev: DeviceConfig, direction_map: Mapping[str, float] | None) -> dict[str, Any]:
    out = dev.to_core()
    if direction_map:
        out["direction_map"] = dict(direction_map)
    return out


def motion_kwargs(cfg: Any) -> dict[str, Any]:
    """The motion-safety options of a command's config (`MOTION_SAFETY`: start ramp, return
    home) as `TeleopSession` keyword arguments. A config without them gets none (ramps off)."""
    return {name: getattr(cfg, name) for name in MOTION_SAFETY if hasattr(cfg, name)}


def start_native(
    robot: DeviceConfig,
    teleop: DeviceConfig | None,
    *,
    direction_map: Mapping[str, float] | None,
    fps: float,
    control_hz: float | None,
    realtime: str,
    motion: Mapping[str, Any] | None = None,
) -> NativeSession:
    core = load_core()
    kwargs: dict[str, Any] = {"record_fps": float(fps), "realtime": realtime, **(motion or {})}
    if control_hz is not None:
        kwargs["control_hz"] = float(control_hz)
    # The reference applies direction_map to the leader's action on its way to the follower;
    # the native loop takes it with the robot's config.
    session = core.TeleopSession(
        _device_dict(robot, direction_map),
        teleop.to_core() if teleop is not None else None,
        **kwargs,
    )
    try:
        session.start()
    except BaseException:
        with contextlib.suppress(Exception):
            session.stop()
        raise
    log.info("loop started: %s", getattr(session, "realtime", "?"))
    return NativeSession(session)


def maybe_calibrate(dev: DeviceConfig | None, role: Role, always: bool, ui: StatusLine) -> None:
    """`--always_calibrate=true` runs the calibration dialog on connect, as the reference does
    (simulated devices are calibrated by construction, so they skip it)."""
    if not always or dev is None or is_sim_port(dev.port):
        return
    # The dialog is the calibrate command's; imported here only when asked for.
    from openk.commands.calibrate import run_calibration

    run_calibration(dev, role, scripted=False, ui=ui)


def log_calibration(dev: DeviceConfig | None, role: str) -> None:
    """Say in the log which calibration file a device runs with (the native side is silent)."""
    if dev is None:
        return
    path = Path(load_core().calibration_path(dev.to_core(), role))
    if path.exists():
        log.info("%s %s (id %s): calibration %s", role, dev.type, dev.id, path)
    elif is_sim_port(dev.port):
        log.info(
            "%s %s (id %s): no calibration at %s; the simulator's built-in one is used",
            role,
            dev.type,
            dev.id,
            path,
        )


def connect_session(
    cfg: RecordConfig | TeleoperateConfig | ReplayConfig | FindJointLimitsConfig,
) -> Session:
    """Connect robot (+ teleop) through `openk._core` and start the loop."""
    if isinstance(cfg, RecordConfig):
        fps: float = cfg.dataset.fps
        teleop: DeviceConfig | None = cfg.teleop
        direction_map = cfg.direction_map
    elif isinstance(cfg, TeleoperateConfig):
        fps, teleop, direction_map = cfg.fps, cfg.teleop, cfg.direction_map
    elif isinstance(cfg, FindJointLimitsConfig):
        fps, teleop, direction_map = cfg.control_loop_fps, cfg.teleop, cfg.direction_map
    else:
        fps, teleop, direction_map = float(cfg.dataset.fps or 30), None, None
    ui = StatusLine()
    maybe_calibrate(cfg.robot, "robot", cfg.always_calibrate, ui)
    maybe_calibrate(teleop, "teleop", cfg.always_calibrate, ui)
    log_calibration(cfg.robot, "robot")
    log_calibration(teleop, "teleop")
    return start_native(
        cfg.robot,
        teleop,
        direction_map=direction_map,
        fps=fps,
        control_hz=cfg.control_hz,
        realtime=cfg.realtime,
        motion=motion_kwargs(cfg),
    )


class _CapturedCamera:
    """An `openk.cameras` camera read by a capture thread, frames handed to `on_frame`."""

    def __init__(self, camera: Any) -> None:
        self.camera = camera
        self.thread: Any = None

    def start(self, on_frame: Callable[[Any, int], None]) -> None:
        from openk.cameras import CaptureThread

        self.thread = CaptureThread(self.camera, lambda key, frame, t_ns: on_frame(frame, t_ns))
        self.thread.start()

    @property
    def error(self) -> BaseException | None:
        return None if self.thread is None else self.thread.error

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()


_camera_count = 0


def make_camera(name: str, cam: CameraConfig) -> Camera:
    """A camera from its config: `synthetic` (draws its frame number) or `opencv`."""
    import openk.cameras as cameras

    global _camera_count
    if cam.type == "synthetic":
        _camera_count += 1
        # A different tint per camera so two synthetic streams are told apart in a video.
        return _CapturedCamera(
            cameras.SyntheticCamera(
                name, width=cam.width, height=cam.height, fps=cam.fps, tint=_camera_count - 1
            )
        )
    if cam.type == "opencv":
        device = cam.index_or_path if cam.index_or_path is not None else 0
        return _CapturedCamera(
            cameras.OpenCVCamera(
                name,
                device=device,
                width=cam.width,
                height=cam.height,
                fps=cam.fps,
                fourcc=cam.fourcc or "MJPG",
                color_mode=cam.color_mode,
                rotation=cam.rotation,
                warmup_s=cam.warmup_s,
            )
        )
    raise ConfigError(
        f"camera {name!r}: type {cam.type!r} is not supported by openk (pyrealsense2 is not "
        "used); use type: opencv (a RealSense colour stream is a V4L2 device) or synthetic"
    )


# --- the rerun display (record and teleoperate) ----------------------------------------------


class Display:
    """`--display_data=true`: state/action scalars to rerun, when rerun-sdk is installed."""

    def __init__(self, enabled: bool, session_name: str, ui: StatusLine) -> None:
        self.rr: Any = None
        if not enabled:
            return
        try:
            import rerun as rr
        except ImportError:
            ui.message(
                "note: --display_data=true needs rerun-sdk (pip install 'openk[rerun]'); "
                "continuing without the display"
            )
            return
        rr.init(session_name, spawn=True)
        self.rr = rr
        self._last = 0.0

    def log_batch(self, batch: Any) -> None:
        if self.rr is None or batch.num_rows == 0:
            return
        now = time.monotonic()
        if now - self._last < 0.05:  # ~20 Hz is plenty for a human
            return
        self._last = now
        schema = batch.schema
        for column in ("observation.state", "action"):
            idx = schema.get_field_index(column)
            if idx < 0:
                continue
            values = batch.column(idx)[batch.num_rows - 1].as_py() or []
            names = vector_names(schema.field(idx)) or [str(i) for i in range(len(values))]
            # rerun ≥ 0.23 names the archetype Scalars; older releases Scalar.
            scalar = getattr(self.rr, "Scalars", None) or self.rr.Scalar
            for name, value in zip(names, values, strict=False):
                self.rr.log(f"{column}/{name}", scalar(value))
