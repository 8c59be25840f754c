"""The recording orchestrator behind `openk record` (and teleoperate, replay, calibrate).

The Rust session runs the hard-timed loop and hands over Arrow batches; this module only moves
them (and camera frames) into the dataset writer, decides when episodes start and end (time,
→ / ← / Esc, Ctrl-C), shows the status line and logs. Nothing here is on the control path.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from openk.config import (
    CalibrateConfig,
    CameraConfig,
    DeviceConfig,
    RecordConfig,
    ReplayConfig,
    TeleoperateConfig,
    dataset_root,
    is_sim_port,
    to_dict,
)
from openk.errors import (
    BusTimeoutError,
    CalibrationError,
    ConfigError,
    DatasetError,
    OpenKError,
    PortError,
)
from openk.log import setup_logging
from openk.terminal import EpisodeStatus, Key, KeyReader, LiveBlock, StatusLine

log = logging.getLogger("openk.record")

STATUS_PERIOD_S = 0.25
BATCH_WAIT_S = 0.05


# --- what the orchestrator needs from the loop and the cameras --------------------------------


class Session(Protocol):
    """A running teleop loop (leader → follower) that can emit dataset rows."""

    @property
    def schema(self) -> Any:
        """pyarrow Schema of the batches (joint names in field metadata)."""

    def start_episode(self) -> None: ...

    def end_episode(self) -> None: ...

    def read_batch(self, timeout_s: float) -> Any | None:
        """Next batch of rows (pyarrow RecordBatch) or None when none arrived in time."""

    def telemetry(self) -> Mapping[str, Any]:
        """At least: achieved_hz, lateness_p99_ns, bus_errors, overruns; of the current (or
        last) episode, of the whole run before any episode started."""

    def close(self) -> None: ...


class Camera(Protocol):
    def start(self, on_frame: Callable[[Any, int], None]) -> None:
        """Start capturing; `on_frame(rgb_uint8_hwc, t_ns)` from a capture thread."""

    def stop(self) -> None: ...


SessionFactory = Callable[[RecordConfig | TeleoperateConfig | ReplayConfig], Session]
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


def resolve_root(root: Path | None, resume: bool, started: float) -> Path | None:
    """Expand `{now}` in --dataset.root (fresh folder per run, used by record_sim.yaml)."""
    if root is None or "{now}" not in str(root):
        return root
    if resume:
        raise ConfigError(
            "--dataset.root contains {now}, which makes a new folder each run; "
            "pass the existing dataset folder to --dataset.root to resume"
        )
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(started))
    return Path(str(root).replace("{now}", stamp))


# --- events from keys and signals -------------------------------------------------------------


@dataclass
class Events:
    """What the user asked for; set from the key thread, read by the main loop."""

    exit_early: threading.Event = field(default_factory=threading.Event)
    rerecord: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def on_key(self, key: Key) -> None:
        if key is Key.RIGHT:
            self.exit_early.set()
        elif key is Key.LEFT:
            self.rerecord.set()
            self.exit_early.set()
        elif key is Key.ESC:
            self.stop.set()
            self.exit_early.set()
        log.info("key %s", key.value)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill` (SIGTERM) stops like Ctrl-C so finished episodes are kept."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the rerun display ------------------------------------------------------------------------


class _Display:
    """`--display_data=true`: state/action scalars to rerun, when rerun-sdk is installed."""

    def __init__(self, enabled: bool, session_name: str, ui: StatusLine) -> None:
        self.rr: Any = None
        if not enabled:
            return
        try:
            import rerun as rr  # type: ignore[import-not-found]
        except ImportError:
            ui.message(
                "note: --display_data=true needs rerun-sdk (pip install 'openk[rerun]'); "
                "recording without the display"
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
            names = _names(schema.field(idx)) or [str(i) for i in range(len(values))]
            # rerun ≥ 0.23 names the archetype Scalars; older releases Scalar.
            scalar = getattr(self.rr, "Scalars", None) or self.rr.Scalar
            for name, value in zip(names, values, strict=False):
                self.rr.log(f"{column}/{name}", scalar(value))


def _names(field_: Any) -> list[str] | None:
    import json

    meta = field_.metadata or {}
    raw = meta.get(b"names")
    return json.loads(raw) if raw else None


# --- recording --------------------------------------------------------------------------------


@dataclass
class RecordResult:
    root: Path
    repo_id: str
    episodes_saved: int
    total_episodes: int
    pushed: bool = False
    summaries: list[Any] = field(default_factory=list)


class _Recorder:
    def __init__(
        self,
        cfg: RecordConfig,
        session: Session,
        writer: Any,
        cameras: dict[str, Camera],
        ui: StatusLine,
        events: Events,
    ) -> None:
        self.cfg = cfg
        self.session = session
        self.writer = writer
        self.cameras = cameras
        self.ui = ui
        self.events = events
        self.display = _Display(cfg.display_data, "openk_record", ui)
        self.camera_errors: list[str] = []
        # Rows handed to the writer in this episode (kept here so Ctrl-C mid-phase sees them).
        self.rows = 0
        self.elapsed_s = 0.0

    def on_frame(self, key: str) -> Callable[[Any, int], None]:
        def push(frame: Any, t_ns: int) -> None:
            try:
                self.writer.add_camera_frame(key, frame, t_ns)
            except OpenKError as err:  # reported once by the main loop; capture goes on
                if len(self.camera_errors) < 1:
                    self.camera_errors.append(str(err))

        return push

    def _status(self, episode: int, elapsed: float, duration: float, rows: int, phase: str) -> str:
        tele = self.session.telemetry()
        backlog = 0
        with contextlib.suppress(Exception):
            backlog = sum(self.writer.camera_backlog().values())
        repeats: int | None = None
        with contextlib.suppress(Exception):
            repeats = sum(self.writer.camera_repeats().values())
        return EpisodeStatus(
            episode=episode,
            num_episodes=self.cfg.dataset.num_episodes,
            elapsed_s=elapsed,
            duration_s=duration,
            control_hz=float(tele.get("achieved_hz", 0.0)),
            lateness_p99_us=float(tele.get("lateness_p99_ns", 0)) / 1000,
            rows=rows,
            camera_repeats=repeats,
            encoder_backlog=backlog,
            bus_errors=int(tele.get("bus_errors", 0)),
            phase=phase,
        ).render(bar_width=20 if self.ui.tty else 0)

    def run_phase(self, episode: int, duration: float, recording: bool) -> None:
        """Pump rows for `duration` seconds or until a key ends the phase."""
        start = time.monotonic()
        last_status = 0.0
        phase = "recording" if recording else "reset"
        while True:
            elapsed = time.monotonic() - start
            self.elapsed_s = elapsed
            if elapsed >= duration or self.events.exit_early.is_set():
                break
            batch = self.session.read_batch(BATCH_WAIT_S)
            if batch is not None and batch.num_rows:
                if recording:
                    self.writer.add_rows(batch)
                    self.rows += batch.num_rows
                self.display.log_batch(batch)
            if self.camera_errors:
                raise DatasetError(self.camera_errors[0])
            for name, cam in self.cameras.items():
                error = getattr(cam, "error", None)
                if error is not None:
                    raise OpenKError(f"camera {name!r} stopped: {error}")
            now = time.monotonic()
            if now - last_status >= STATUS_PERIOD_S:
                last_status = now
                rows = self.rows if recording else 0
                self.ui.update(self._status(episode, now - start, duration, rows, phase))

    def drain(self, recording: bool) -> None:
        """Rows the session produced before end_episode took effect belong to the episode."""
        while True:
            batch = self.session.read_batch(0.0)
            if batch is None:
                return
            if recording and batch.num_rows:
                self.writer.add_rows(batch)
                self.rows += batch.num_rows


def _dataset_features(cfg: RecordConfig, schema: Any) -> dict[str, Any]:
    from openk.dataset.features import features_from_arrow_schema

    cams = {name: (cam.height, cam.width) for name, cam in cfg.robot.cameras.items()}
    return features_from_arrow_schema(
        schema, cameras=cams, use_videos=cfg.dataset.video, rename_map=cfg.dataset.rename_map
    )


def _journal_choice(root: Path, ui: StatusLine) -> str:
    """An episode an interrupted recording left behind is offered back: asked on a terminal,
    kept otherwise (keeping loses nothing; `openk recover --discard` can drop it later)."""
    import sys

    from openk.dataset import pending_journal

    pending = pending_journal(root)
    if not pending:
        return "recover"
    described = "; ".join(p.describe() for p in pending)
    if sys.stdin.isatty():
        ui.message(f"{root} holds an episode from an interrupted recording: {described}")
        answer = input("Keep it as an episode? [Y/n] ").strip().lower()
        if answer in ("n", "no"):
            ui.message("dropping the interrupted episode")
            return "discard"
    ui.message(f"keeping the interrupted episode: {described}")
    return "recover"


def _open_writer(
    cfg: RecordConfig, root: Path, schema: Any, robot_type: str, ui: StatusLine | None = None
) -> Any:
    from openk.dataset.video import VideoConfig
    from openk.dataset.writer import DatasetWriter

    features = _dataset_features(cfg, schema)
    video = VideoConfig(vcodec=cfg.vcodec)
    ds = cfg.dataset
    assert ds.repo_id is not None
    if cfg.resume:
        return DatasetWriter.resume(
            ds.repo_id,
            journal=_journal_choice(root, ui or StatusLine()),
            root=root,
            fps=ds.fps,
            robot_type=robot_type,
            features=features,
            use_videos=ds.video,
            rename_map=ds.rename_map,
            single_task=ds.single_task,
        )
    if (root / "meta" / "info.json").exists():
        raise DatasetError(
            f"a dataset already exists at {root}; add --resume=true to append to it, or choose "
            "another --dataset.root / --dataset.repo_id"
        )
    return DatasetWriter.create(
        ds.repo_id,
        ds.fps,
        features,
        root=root,
        robot_type=robot_type,
        use_videos=ds.video,
        video=video,
        rename_map=ds.rename_map,
        single_task=ds.single_task,
    )


def record(
    cfg: RecordConfig,
    *,
    debug: bool = False,
    session_factory: SessionFactory | None = None,
    camera_factory: CameraFactory | None = None,
    ui: StatusLine | None = None,
    events: Events | None = None,
) -> RecordResult:
    """Run `openk record`. Factories and `ui`/`events` are for tests; the CLI uses defaults."""
    started = time.time()
    ui = ui or StatusLine()
    events = events or Events()
    log_path = setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    log.info("openk record config: %s", to_dict(cfg))
    if cfg.play_sounds:
        ui.message("note: voice prompts (play_sounds) are not supported by openk; continuing")
    ds = cfg.dataset
    assert ds.repo_id is not None and ds.single_task is not None
    root = dataset_root(ds.repo_id, resolve_root(ds.root, cfg.resume, started))
    check_ports(cfg.robot, "robot")
    check_ports(cfg.teleop, "teleop")
    if cfg.resume and not (root / "meta" / "info.json").exists():
        raise DatasetError(
            f"--resume=true but there is no dataset at {root}; check --dataset.root/"
            "--dataset.repo_id, or drop --resume to create it"
        )

    policy_setup: Any = None
    if cfg.policy is not None and session_factory is None:
        # Checked against the robot and loaded before anything is connected.
        from openk.policy.run import policy_factories

        policy_setup, session_factory, camera_factory = policy_factories(cfg, ui, camera_factory)
    session_factory = session_factory or connect_session
    camera_factory = camera_factory or make_camera
    session = session_factory(cfg)
    bind_events = getattr(session, "bind_events", None)
    if callable(bind_events):  # a policy session ends the episode on a policy failure
        bind_events(events)
    cameras: dict[str, Camera] = {}
    writer: Any = None
    result = RecordResult(root=root, repo_id=ds.repo_id, episodes_saved=0, total_episodes=0)
    keys = KeyReader(events.on_key)
    # Frames go nowhere until the recorder exists: the cameras open first, so a camera that
    # cannot start fails the command before a dataset folder is created.
    sinks: dict[str, Callable[[Any, int], None]] = {}
    try:
        for name, cam_cfg in cfg.robot.cameras.items():
            cameras[name] = camera_factory(name, cam_cfg)
            cameras[name].start(_late_sink(sinks, name))
        writer = _open_writer(cfg, root, session.schema, str(cfg.robot.type), ui)
        ui.message(
            f"{'resuming' if cfg.resume else 'recording'} {ds.repo_id} at {root} "
            f"({writer.total_episodes} episodes so far)"
        )
        recorder = _Recorder(cfg, session, writer, cameras, ui, events)
        for name in cameras:
            sinks[name] = recorder.on_frame(name)
        if keys.start():
            ui.message("keys: → end episode early, ← re-record, Esc stop, Ctrl-C stop")
        if log_path is not None:
            ui.message(f"log: {log_path}")
        with _sigterm_as_interrupt():
            _episodes(cfg, recorder, writer, session, ui, events, result)
    finally:
        keys.stop()
        for cam in cameras.values():
            with contextlib.suppress(Exception):
                cam.stop()
        with contextlib.suppress(Exception):
            session.close()
        if writer is not None:
            try:
                writer.close()
            except KeyboardInterrupt:
                writer.close()
        if writer is not None:
            result.total_episodes = writer.total_episodes
    if policy_setup is not None:
        from openk.policy.run import stats_line

        log.info("policy: %s", policy_setup.stats())
        ui.message(stats_line(policy_setup.stats()))
    log.info("saved %d episodes; dataset now has %d", result.episodes_saved, result.total_episodes)
    ui.message(
        f"dataset: {root.resolve()} ({result.total_episodes} episodes, {result.episodes_saved} new)"
    )
    failure = getattr(session, "policy_error", None)
    if failure is not None:
        raise type(failure)(f"{failure}; the episodes recorded so far are kept in {root}")
    if ds.push_to_hub and result.episodes_saved > 0:
        _push(root, ds.repo_id, ds.private, ds.tags, ui)
        result.pushed = True
    _print_next_steps(root.resolve(), ds.repo_id, ui)
    return result


def _late_sink(
    sinks: dict[str, Callable[[Any, int], None]], name: str
) -> Callable[[Any, int], None]:
    """A frame callback that forwards to `sinks[name]` once it is set (drops frames before)."""

    def on_frame(frame: Any, t_ns: int) -> None:
        sink = sinks.get(name)
        if sink is not None:
            sink(frame, t_ns)

    return on_frame


def _episodes(
    cfg: RecordConfig,
    recorder: _Recorder,
    writer: Any,
    session: Session,
    ui: StatusLine,
    events: Events,
    result: RecordResult,
) -> None:
    ds = cfg.dataset
    recorded = 0
    while recorded < ds.num_episodes and not events.stop.is_set():
        episode = recorded + 1
        events.exit_early.clear()
        events.rerecord.clear()
        writer.start_episode(ds.single_task)
        session.start_episode()
        log.info(
            "episode %d/%d started (dataset episode %d)",
            episode,
            ds.num_episodes,
            writer.total_episodes,
        )
        recorder.rows = 0
        try:
            recorder.run_phase(episode, ds.episode_time_s, recording=True)
            session.end_episode()
            recorder.drain(recording=True)
            tele = dict(session.telemetry())
            log.info("episode %d loop telemetry: %s", episode, tele)
            ui.finish(
                recorder._status(
                    episode, recorder.elapsed_s, ds.episode_time_s, recorder.rows, "recorded"
                )
            )
            # Like lerobot, the reset comes before the save so ← during the reset
            # still re-records the episode just taken.
            last = recorded + 1 >= ds.num_episodes
            if not events.stop.is_set() and (not last or events.rerecord.is_set()):
                events.exit_early.clear()
                ui.message(f"reset the scene ({ds.reset_time_s:g} s; → skips)")
                recorder.run_phase(episode, ds.reset_time_s, recording=False)
                recorder.drain(recording=False)
        except KeyboardInterrupt:
            _end_quietly(session)
            recorder.drain(recording=True)
            rows = recorder.rows
            if rows > 0 and not events.rerecord.is_set():
                summary = writer.save_episode(metadata=_episode_metadata(session))
                result.episodes_saved += 1
                result.summaries.append(summary)
                ui.message(f"interrupted: kept episode {summary.episode_index} ({rows} rows)")
            else:
                writer.discard_episode()
                ui.message("interrupted: the episode in progress was discarded")
            events.stop.set()
            return
        if events.rerecord.is_set():
            writer.discard_episode()
            ui.message(f"re-recording episode {episode}")
            log.info("episode %d discarded for re-recording", episode)
            continue
        if recorder.rows == 0:
            writer.discard_episode()
            ui.message(f"episode {episode} had no rows; not saved")
            continue
        summary = writer.save_episode(metadata={"openk_loop": tele})
        result.episodes_saved += 1
        result.summaries.append(summary)
        recorded += 1
        repeats = sum(getattr(summary, "repeated_frames", {}).values())
        log.info(
            "episode %d saved as %d: %d rows, %d repeated camera frames, save wait %.3f s",
            episode,
            summary.episode_index,
            summary.length,
            repeats,
            summary.wait_s,
        )
        ui.message(
            f"saved episode {summary.episode_index} ({summary.length} rows, "
            f"{repeats} repeated camera frames)"
        )
    if events.stop.is_set():
        ui.message("stopped (Esc); finished episodes are kept")


def _episode_metadata(session: Session) -> dict[str, Any]:
    with contextlib.suppress(Exception):
        return {"openk_loop": dict(session.telemetry())}
    return {}


def _end_quietly(session: Session) -> None:
    with contextlib.suppress(Exception):
        session.end_episode()


def _push(root: Path, repo_id: str, private: bool, tags: list[str] | None, ui: StatusLine) -> None:
    from openk.hub import push_dataset

    ui.message(f"pushing {root} to the Hub as {repo_id} ...")
    pushed = push_dataset(root, repo_id, private=private, tags=tags or ())
    ui.message(f"pushed: {getattr(pushed, 'repo_url', repo_id)}")


def _print_next_steps(root: Path, repo_id: str, ui: StatusLine) -> None:
    ui.message(
        'open it with lerobot: python -c "from lerobot.datasets.lerobot_dataset import '
        f"LeRobotDataset; ds = LeRobotDataset('{repo_id}', root='{root}'); print(ds)\""
    )
    ui.message(f"check it: openk verify {root}")


# --- the native session and cameras -----------------------------------------------------------


def _core() -> Any:
    import importlib

    try:
        return importlib.import_module("openk._core")
    except ImportError as err:
        raise OpenKError(
            f"the native module openk._core is missing ({err}); install openk with "
            "scripts/bootstrap.sh (or pip install .)"
        ) from None


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

    def __init__(self, core_session: Any) -> None:
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
            log.warning(
                "safety event: %s %s: %s",
                event.get("device"),
                event.get("motor"),
                event.get("reason"),
            )
        self._events_seen = len(events)

    def telemetry(self) -> Mapping[str, Any]:
        report = self.core.episode_telemetry() if self._episode_started else self.core.telemetry()
        return _normalise_telemetry(dict(report))

    def send_action(self, values: Sequence[float]) -> None:
        self.core.send_action(list(values))

    def close(self) -> None:
        self.core.stop()


def _normalise_telemetry(tele: dict[str, Any]) -> dict[str, Any]:
    """Bus errors arrive per motor; the status line wants a total."""
    errors = tele.get("bus_errors", 0)
    if isinstance(errors, Mapping):
        tele["bus_errors_by_motor"] = dict(errors)
        tele["bus_errors"] = sum(int(v) for v in errors.values())
    if "lateness_p99_ns" not in tele and "lateness_p99_us" in tele:
        tele["lateness_p99_ns"] = float(tele["lateness_p99_us"]) * 1000
    return tele


def _device_dict(dev: DeviceConfig, direction_map: Mapping[str, float] | None) -> dict[str, Any]:
    out = dev.to_core()
    if direction_map:
        out["direction_map"] = dict(direction_map)
    return out


def _start_native(
    robot: DeviceConfig,
    teleop: DeviceConfig | None,
    *,
    direction_map: Mapping[str, float] | None,
    fps: float,
    control_hz: float | None,
    realtime: str,
) -> NativeSession:
    core = _core()
    kwargs: dict[str, Any] = {"record_fps": float(fps), "realtime": realtime}
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


def _maybe_calibrate(dev: DeviceConfig | None, role: str, always: bool, ui: StatusLine) -> None:
    """`--always_calibrate=true` runs the calibration dialog on connect, as the reference does
    (simulated devices are calibrated by construction, so they skip it)."""
    if not always or dev is None or is_sim_port(dev.port):
        return
    run_calibration(dev, role, scripted=False, ui=ui)


def _log_calibration(dev: DeviceConfig | None, role: str) -> None:
    """Say in the log which calibration file a device runs with (the native side is silent)."""
    if dev is None:
        return
    path = Path(_core().calibration_path(dev.to_core(), role))
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


def connect_session(cfg: RecordConfig | TeleoperateConfig | ReplayConfig) -> Session:
    """Connect robot (+ teleop) through `openk._core` and start the loop."""
    if isinstance(cfg, RecordConfig):
        fps: float = cfg.dataset.fps
        teleop: DeviceConfig | None = cfg.teleop
        direction_map = cfg.direction_map
    elif isinstance(cfg, TeleoperateConfig):
        fps, teleop, direction_map = cfg.fps, cfg.teleop, cfg.direction_map
    else:
        fps, teleop, direction_map = float(cfg.dataset.fps or 30), None, None
    ui = StatusLine()
    _maybe_calibrate(cfg.robot, "robot", cfg.always_calibrate, ui)
    _maybe_calibrate(teleop, "teleop", cfg.always_calibrate, ui)
    _log_calibration(cfg.robot, "robot")
    _log_calibration(teleop, "teleop")
    return _start_native(
        cfg.robot,
        teleop,
        direction_map=direction_map,
        fps=fps,
        control_hz=cfg.control_hz,
        realtime=cfg.realtime,
    )


def connect_replay_session(cfg: ReplayConfig) -> ReplaySession:
    session = connect_session(cfg)
    assert isinstance(session, NativeSession)
    return session


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


# --- teleoperate / replay / calibrate ---------------------------------------------------------


def teleoperate(
    cfg: TeleoperateConfig,
    *,
    debug: bool = False,
    session_factory: SessionFactory | None = None,
    ui: StatusLine | None = None,
    events: Events | None = None,
) -> None:
    ui = ui or StatusLine()
    events = events or Events()
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    log.info("openk teleoperate config: %s", to_dict(cfg))
    check_ports(cfg.robot, "robot")
    check_ports(cfg.teleop, "teleop")
    session = (session_factory or connect_session)(cfg)
    keys = KeyReader(events.on_key)
    try:
        if keys.start():
            ui.message("teleoperating: Esc or Ctrl-C stops")
        start = time.monotonic()
        limit = cfg.teleop_time_s
        last = 0.0
        latest: Any = None
        last_line = ""
        if cfg.display_cli:
            # Rows are only produced inside an episode; they are shown, never stored.
            session.start_episode()
        with _sigterm_as_interrupt():
            while not events.stop.is_set():
                elapsed = time.monotonic() - start
                if limit is not None and elapsed >= limit:
                    break
                batch = session.read_batch(BATCH_WAIT_S)
                if batch is not None and batch.num_rows:
                    latest = batch
                if time.monotonic() - last >= STATUS_PERIOD_S:
                    last = time.monotonic()
                    tele = session.telemetry()
                    line = (
                        f"teleop {elapsed:6.1f}s | {float(tele.get('achieved_hz', 0)):6.1f} Hz, "
                        f"late p99 {float(tele.get('lateness_p99_ns', 0)) / 1e6:.2f} ms | "
                        f"bus errors {int(tele.get('bus_errors', 0))}"
                    )
                    if latest is not None:
                        line += " | " + _action_text(latest)
                    ui.update(line)
                    last_line = line
        if cfg.display_cli:
            _end_quietly(session)
        if last_line:
            ui.finish(last_line)
    except KeyboardInterrupt:
        ui.message("stopped (Ctrl-C)")
    finally:
        keys.stop()
        session.close()
    ui.message("teleoperation ended")


def _action_text(batch: Any) -> str:
    """`shoulder_pan.pos=12.3 ...` of the newest row (the reference's display_cli)."""
    idx = batch.schema.get_field_index("action")
    if idx < 0:
        return ""
    values = batch.column(idx)[batch.num_rows - 1].as_py() or []
    names = _names(batch.schema.field(idx)) or [str(i) for i in range(len(values))]
    return " ".join(f"{n}={v:.1f}" for n, v in zip(names, values, strict=False))


class ReplaySession(Protocol):
    """A connected follower that takes one action vector at a time."""

    @property
    def action_names(self) -> list[str]: ...

    def send_action(self, values: Sequence[float]) -> None: ...

    def close(self) -> None: ...


def episode_actions(root: Path, episode: int) -> tuple[list[str], list[list[float]], int]:
    """(action names, actions in frame order, dataset fps) of one recorded episode."""
    from openk.dataset.reader import DatasetReader

    if not (root / "meta" / "info.json").is_file():
        raise DatasetError(f"no dataset at {root} (meta/info.json missing); check --dataset.root")
    reader = DatasetReader(root)
    total = reader.total_episodes
    if not 0 <= episode < total:
        raise DatasetError(
            f"--dataset.episode={episode} does not exist; {root} has episodes 0..{total - 1}"
        )
    actions = reader.actions(episode, fmt="numpy")
    return reader.joint_names("action"), [list(map(float, row)) for row in actions], reader.fps


@dataclass
class ReplayResult:
    sent: int
    total: int
    # Rows the loop recorded while replaying (follower state and the action in force), when
    # the session can record; used to report how well the follower tracked.
    rows: Any = None
    tracking_error: float | None = None
    tracking_lag_rows: int = 0


def tracking_error(rows: Any, max_lag: int = 15) -> tuple[float, int] | None:
    """Mean |follower position - commanded action| over joints and rows, at the lag (in rows)
    that fits best — the follower trails its goal by a few ticks."""
    import json

    import numpy as np

    if rows is None or rows.num_rows < 2:
        return None
    state_field = rows.schema.field("observation.state")
    action_field = rows.schema.field("action")
    state_names = json.loads((state_field.metadata or {}).get(b"names", b"[]"))
    action_names = json.loads((action_field.metadata or {}).get(b"names", b"[]"))
    try:
        idx = [state_names.index(name) for name in action_names]
    except ValueError:
        return None
    state = np.asarray(rows.column("observation.state").to_pylist(), dtype=float)[:, idx]
    action = np.asarray(rows.column("action").to_pylist(), dtype=float)
    best: tuple[float, int] | None = None
    for lag in range(min(max_lag, len(action) - 1) + 1):
        err = float(np.mean(np.abs(state[lag:] - action[: len(action) - lag])))
        if best is None or err < best[0]:
            best = (err, lag)
    return best


def replay(
    cfg: ReplayConfig,
    *,
    debug: bool = False,
    session_factory: Callable[[ReplayConfig], ReplaySession] | None = None,
    ui: StatusLine | None = None,
    events: Events | None = None,
) -> ReplayResult:
    """Send an episode's recorded actions to the follower at the dataset's fps."""
    import pyarrow as pa

    ui = ui or StatusLine()
    events = events or Events()
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    log.info("openk replay config: %s", to_dict(cfg))
    ds = cfg.dataset
    assert ds.repo_id is not None and ds.episode is not None
    root = dataset_root(ds.repo_id, ds.root)
    names, actions, fps = episode_actions(root, ds.episode)
    fps = ds.fps or fps
    check_ports(cfg.robot, "robot")
    if cfg.dataset.fps is None:
        cfg.dataset.fps = fps  # the loop records its check rows at the dataset's rate
    session = (session_factory or connect_replay_session)(cfg)
    if names and list(session.action_names) != names:
        session.close()
        raise DatasetError(
            f"episode {ds.episode} of {root} has actions {names}, but {cfg.robot.type} takes "
            f"{list(session.action_names)}; replay it on the robot type that recorded it"
        )
    records = callable(getattr(session, "read_batch", None))
    tables: list[Any] = []
    keys = KeyReader(events.on_key)
    result = ReplayResult(sent=0, total=len(actions))
    try:
        keys.start()
        ui.message(f"replaying episode {ds.episode} ({len(actions)} actions at {fps} fps)")
        if records:
            session.start_episode()  # type: ignore[attr-defined]
        period_ns = round(1e9 / fps)
        start = time.monotonic_ns()
        with _sigterm_as_interrupt():
            for i, action in enumerate(actions):
                if events.stop.is_set():
                    break
                # Absolute deadlines: a late frame does not delay the ones after it.
                delay = start + i * period_ns - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
                session.send_action(action)
                result.sent += 1
                if records:
                    batch = session.read_batch(0.0)  # type: ignore[attr-defined]
                    if batch is not None:
                        tables.append(batch)
                if i % max(1, fps // 4) == 0:
                    ui.update(f"replay {i + 1}/{len(actions)}")
        if records:
            session.end_episode()  # type: ignore[attr-defined]
            while (batch := session.read_batch(0.0)) is not None:  # type: ignore[attr-defined]
                tables.append(batch)
    except KeyboardInterrupt:
        ui.message("stopped (Ctrl-C)")
    finally:
        keys.stop()
        session.close()
    ui.finish(f"replayed {result.sent}/{len(actions)} actions of episode {ds.episode}")
    if tables:
        result.rows = pa.concat_tables([pa.table(t) for t in tables])
        fit = tracking_error(result.rows)
        if fit is not None:
            result.tracking_error, result.tracking_lag_rows = fit
            ui.message(
                f"follower tracking: mean |position - action| {fit[0]:.3f} "
                f"(normalised units) at a lag of {fit[1]} rows"
            )
    return result


# A joint counts as swept once it moved this far. Encoders flicker by a step or two on an arm
# nobody touches, which the native check (max > min) would take for a range.
MIN_SWEEP_DEG = 10.0
STS_STEPS_PER_TURN = 4096


def _min_sweep(radians: bool) -> float:
    turn = 2 * math.pi if radians else STS_STEPS_PER_TURN
    return turn * MIN_SWEEP_DEG / 360.0


def radian_joints(type_name: str, role: str) -> set[str]:
    """Joints whose raw positions are radians (DAMIAO; they have a velocity feature); the
    others (STS) read steps."""
    names = _core().device_features(type_name, role)["observation.state"]["names"]
    return {n.removesuffix(".vel") for n in names if n.endswith(".vel")}


def unswept_joints(rows: Sequence[tuple[str, float, float, float]], radians: set[str]) -> list[str]:
    """The joints of `Calibrator.sample()` rows (joint, min, position, max) that moved less than
    MIN_SWEEP_DEG."""
    return [name for name, lo, _pos, hi in rows if hi - lo < _min_sweep(name in radians)]


def _cell(value: float, digits: int) -> str:
    text = f"{value:>10.{digits}f}"
    # A joint resting at zero reads -0.000 half of the time; show it unsigned.
    return text.replace("-", " ") if float(text) == 0 else text


def range_table(rows: Sequence[tuple[str, float, float, float]], radians: set[str]) -> list[str]:
    """The live table of the sweep: one line per joint, raw units, whether it moved enough."""
    lines = [f"{'joint':<16}{'min':>10}{'position':>10}{'max':>10}  unit  swept"]
    short = set(unswept_joints(rows, radians))
    for name, lo, pos, hi in rows:
        digits, unit = (3, "rad") if name in radians else (0, "step")
        cells = "".join(_cell(v, digits) for v in (lo, pos, hi))
        state = "move it" if name in short else "ok"
        lines.append(f"{name:<16}{cells}  {unit:<4}  {state}")
    return lines


def _read_line(fd: int) -> bool:
    """Consume one line from `fd`, byte by byte so nothing is buffered past it (select() must
    see what is left); False at the end of input."""
    while True:
        byte = os.read(fd, 1)
        if not byte:
            return False
        if byte == b"\n":
            return True


def _wait_enter_or(stop_after_s: float | None, on_tick: Callable[[], None], fd: int) -> bool:
    """Call `on_tick` until Enter is pressed on `fd` (True) or, for scripted runs, until
    `stop_after_s` passed; False then, and at the end of input."""
    import select

    start = time.monotonic()
    while True:
        on_tick()
        if stop_after_s is not None:
            if time.monotonic() - start >= stop_after_s:
                return False
            time.sleep(0.05)
            continue
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            return _read_line(fd)


def run_calibration(
    dev: DeviceConfig,
    role: str,
    *,
    scripted: bool,
    ui: StatusLine,
    sweep_s: float = 3.0,
    stdin_fd: int = 0,
) -> str:
    """The reference's calibration dialog: middle pose → homing, sweep → ranges, save.

    `scripted` takes no input (the simulator's hand moves the joints) and sweeps `sweep_s`.
    Enter with a joint that has not moved far enough saves nothing and keeps sampling.
    """
    core = _core()
    who = f"{role} {dev.type} (id {dev.id})"
    radians = radian_joints(str(dev.type), role)
    calibrator = core.Calibrator(dev.to_core(), role)
    table = LiveBlock(ui.stream, tty=ui.tty)
    try:
        ui.message(f"calibrating {who} on {dev.port}")
        if not scripted:
            ui.message("Move every joint to the middle of its range, then press Enter.")
            if not _read_line(stdin_fd):
                raise CalibrationError(
                    f"{who}: the input ended before Enter was pressed at the middle pose; "
                    "run openk calibrate in a terminal (or with --scripted=true on a sim port)"
                )
        # A simulator forgets a DAMIAO zero when this process ends: zeroing it would make the
        # next command see a re-zeroed motor and refuse the file. Real motors keep it.
        calibrator.set_homing(zero_damiao=not is_sim_port(dev.port))
        ui.message(
            "Move every joint through its whole range; press Enter when every row says ok."
            if not scripted
            else f"sampling ranges for {sweep_s:g} s"
        )

        rows: list[tuple[str, float, float, float]] = []
        misses = 0

        def show() -> None:
            nonlocal misses, rows
            try:
                rows = calibrator.sample()
            except BusTimeoutError:
                # One late answer does not spoil a sweep; a motor that stays silent does.
                misses += 1
                if misses >= 5:
                    raise
                return
            misses = 0
            table.update(range_table(rows, radians))

        while True:
            pressed = _wait_enter_or(sweep_s if scripted else None, show, stdin_fd)
            # The terminal echoed Enter under the table: draw the next one below it.
            table.detach()
            short = unswept_joints(rows, radians)
            if not short:
                break
            names = ", ".join(short)
            if not pressed:
                table.close()
                when = (
                    f"while it samples ({sweep_s:g} s; on sim ports the simulator moves a "
                    "leader's joints only)"
                    if scripted
                    else "before pressing Enter"
                )
                raise CalibrationError(
                    f"{who}: {names} did not move {MIN_SWEEP_DEG:g}° or more; nothing was "
                    "saved. Run openk calibrate again and sweep every joint through its whole "
                    f"range {when}"
                )
            ui.message(
                f"Not saved: {names} did not move {MIN_SWEEP_DEG:g}° or more. Sweep "
                f"{'it' if len(short) == 1 else 'them'} through the whole range, then press "
                "Enter again (Ctrl-C quits without saving)."
            )
        table.close()
        log.info("%s: ranges %s", who, {name: (lo, hi) for name, lo, _pos, hi in rows})
        path = calibrator.save()
        ui.finish(f"calibration saved to {path}")
        return str(path)
    except KeyboardInterrupt:
        ui.finish(f"calibration of {who} not saved (interrupted)")
        raise
    finally:
        calibrator.close()


def calibrate(cfg: CalibrateConfig, *, debug: bool = False, ui: StatusLine | None = None) -> str:
    ui = ui or StatusLine()
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    log.info("openk calibrate config: %s", to_dict(cfg))
    check_ports(cfg.robot, "robot")
    check_ports(cfg.teleop, "teleop")
    dev, role = (cfg.robot, "robot") if cfg.robot is not None else (cfg.teleop, "teleop")
    assert dev is not None
    return run_calibration(dev, role, scripted=cfg.scripted, ui=ui)


__all__: Sequence[str] = (
    "Camera",
    "Events",
    "RecordResult",
    "Session",
    "calibrate",
    "check_ports",
    "record",
    "replay",
    "resolve_root",
    "teleoperate",
)
