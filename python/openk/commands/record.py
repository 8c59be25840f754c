"""`openk record`: teleoperated episodes into a LeRobot v3.0 dataset.

The Rust session runs the hard-timed loop and hands over Arrow batches; this module only moves
them (and camera frames) into the dataset writer, decides when episodes start and end (time,
→ / ← / Esc, Ctrl-C), shows the status line and logs. Nothing here is on the control path.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from openk.config import RecordConfig, dataset_root, to_dict
from openk.dataset import meta
from openk.errors import ConfigError, DatasetError, OpenKError
from openk.log import setup_logging
from openk.session import (
    BATCH_WAIT_S,
    STATUS_PERIOD_S,
    Camera,
    CameraFactory,
    Display,
    Events,
    Session,
    SessionFactory,
    check_ports,
    connect_session,
    end_quietly,
    loop_metadata,
    make_camera,
    quietly,
    shielded,
    sigterm_as_interrupt,
    teardown,
)
from openk.terminal import EpisodeStatus, KeyReader, StatusLine

log = logging.getLogger(__name__)


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
        self.display = Display(cfg.display_data, "openk_record", ui)
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
            control_hz=tele.achieved_hz,
            lateness_p99_ns=tele.lateness_p99_ns,
            rows=rows,
            camera_repeats=repeats,
            encoder_backlog=backlog,
            bus_errors=tele.bus_errors_total,
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
            batch = self._take_batch(BATCH_WAIT_S, recording)
            if batch is not None and batch.num_rows:
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
        while self._take_batch(0.0, recording) is not None:
            pass

    def _take_batch(self, timeout_s: float, recording: bool) -> Any:
        """Reads one batch and, when recording, hands it to the writer and counts it: one
        step that Ctrl-C never cuts in half (rows read are always written and counted, so an
        interrupted episode keeps every row the writer has)."""
        with shielded():
            batch = self.session.read_batch(timeout_s)
            if recording and batch is not None and batch.num_rows:
                self.writer.add_rows(batch)
                self.rows += batch.num_rows
        return batch


def _dataset_features(cfg: RecordConfig, schema: Any) -> dict[str, Any]:
    from openk.dataset.features import features_from_arrow_schema

    cams = {name: (cam.height, cam.width) for name, cam in cfg.robot.cameras.items()}
    # A policy with a leader (rollout's dagger): rows say whether the leader drove them.
    extra = ("capture_time_ns", "intervention") if "intervention" in schema.names else None
    return features_from_arrow_schema(
        schema,
        cameras=cams,
        use_videos=cfg.dataset.video,
        rename_map=cfg.dataset.rename_map,
        **({"extra_columns": extra} if extra else {}),
    )


def _journal_choice(root: Path, ui: StatusLine) -> tuple[Literal["recover", "discard"], list[Any]]:
    """An episode an interrupted recording left behind is offered back: asked on a terminal,
    kept otherwise (keeping loses nothing; `openk recover --discard` can drop it later).
    Returns the choice and the entries as announced (the writer keeps exactly those)."""
    import sys

    from openk.dataset import pending_journal

    pending = pending_journal(root)
    # what each entry keeps is decided once (JournalEpisode.length) and said before it is done
    for entry in pending:
        if entry.length == 0:
            ui.message(f"dropping the interrupted episode: {entry.describe()}")
    kept = [p for p in pending if p.length > 0]
    if not kept:
        return "recover", pending
    described = "; ".join(p.describe() for p in kept)
    if sys.stdin.isatty():
        ui.message(f"{root} holds an episode from an interrupted recording: {described}")
        answer = input("Keep it as an episode? [Y/n] ").strip().lower()
        if answer in ("n", "no"):
            ui.message("dropping the interrupted episode")
            return "discard", pending
    ui.message(f"keeping the interrupted episode: {described}")
    return "recover", pending


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
        choice, announced = _journal_choice(root, ui or StatusLine())
        return DatasetWriter.resume(
            ds.repo_id,
            journal=choice,
            announced=announced,
            root=root,
            fps=ds.fps,
            robot_type=robot_type,
            features=features,
            use_videos=ds.video,
            rename_map=ds.rename_map,
            single_task=ds.single_task,
        )
    if meta.info_path(root).exists():
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
    from openk.dataset.layout import lock_dataset

    # one writer per dataset: another recording, edit or recovery of it is refused meanwhile
    with lock_dataset(root):
        from openk.dataset.edit import finish_interrupted_edit

        did = finish_interrupted_edit(root)  # an edit or split a crash interrupted, finished first
        if did:
            ui.message(did)
        if cfg.resume and not meta.info_path(root).exists():
            raise DatasetError(
                f"--resume=true but there is no dataset at {root}; check --dataset.root/"
                "--dataset.repo_id, or drop --resume to create it"
            )

        policy_setup: Any = None
        if cfg.policy is not None and session_factory is None:
            # Checked against the robot and loaded before anything is connected.
            from openk.policy.run import policy_factories

            policy_setup, session_factory, camera_factory = policy_factories(
                cfg, ui, camera_factory
            )
        session_factory = session_factory or connect_session
        camera_factory = camera_factory or make_camera
        session = session_factory(cfg)
        bind_events = getattr(session, "bind_events", None)
        if callable(bind_events):  # a policy session ends the episode on a policy failure
            bind_events(events)
        cameras: dict[str, Camera] = {}
        writer: Any = None
        stopped_by: OpenKError | None = None
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
            with sigterm_as_interrupt():
                try:
                    _episodes(cfg, recorder, writer, session, ui, events, result)
                except OpenKError as err:  # a device or camera lost mid-recording, a full disk...
                    stopped_by = err
        finally:
            # Every step runs, a Ctrl-C in one included: the arm returns home, the writer closes.
            teardown(
                keys.stop,
                *(quietly(cam.stop) for cam in cameras.values()),
                quietly(session.close),
                None if writer is None else lambda: _close_writer(writer, result),
            )
        if policy_setup is not None:
            from openk.policy.run import stats_line

            log.info("policy: %s", policy_setup.stats())
            ui.message(stats_line(policy_setup.stats()))
        log.info(
            "saved %d episodes; dataset now has %d", result.episodes_saved, result.total_episodes
        )
        ui.message(
            f"dataset: {root.resolve()} ({result.total_episodes} episodes, "
            f"{result.episodes_saved} new)"
        )
        if stopped_by is not None:
            raise _kept_note(stopped_by, root, result) from stopped_by
        failure = getattr(session, "policy_error", None)
        if failure is not None:
            raise type(failure)(f"{failure}; the episodes recorded so far are kept in {root}")
        if ds.push_to_hub and result.episodes_saved > 0:
            _push(root, ds.repo_id, ds.private, ds.tags, ui)
            result.pushed = True
        _print_next_steps(root.resolve(), ds.repo_id, ui)
        return result


def _close_writer(writer: Any, result: RecordResult) -> None:
    """Closes the writer (a Ctrl-C meanwhile closes it again: what it holds is kept)."""
    try:
        writer.close()
    except KeyboardInterrupt:
        writer.close()
    result.total_episodes = writer.total_episodes


def _kept_note(err: OpenKError, root: Path, result: RecordResult) -> OpenKError:
    """The error that stopped the recording, saying what became of the data."""
    from openk.dataset import pending_journal

    note = (
        f"{err}; the {result.total_episodes} finished episode(s) are kept in {root}"
        if result.total_episodes
        else f"{err}; no episode was finished"
    )
    if pending_journal(root):
        note += (
            "; the episode in progress is set aside: `openk record ... --resume=true` or "
            f"`openk recover {root}` offers it back"
        )
    try:
        return type(err)(note)
    except TypeError:  # an error type that takes other arguments
        return OpenKError(note)


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
            writer.next_episode_index,
        )
        recorder.rows = 0
        try:
            recorder.run_phase(episode, ds.episode_time_s, recording=True)
            session.end_episode()
            recorder.drain(recording=True)
            tele = loop_metadata(session)
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
            end_quietly(session)
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
        return {"openk_loop": loop_metadata(session)}
    return {}


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
