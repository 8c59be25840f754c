"""The orchestrator's episode decisions (→ / ← / Esc / Ctrl-C) with a scripted session."""

from __future__ import annotations

import io
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

import openk.commands.record as rec
from openk.config import RecordConfig, parse_config
from openk.errors import ConfigError, DatasetError, PortError
from openk.session import Events
from openk.terminal import Key, StatusLine

from .fakes import RecordingWriter, ScriptedSession


def _cfg(tmp_path: Path, *extra: str) -> RecordConfig:
    return parse_config(
        RecordConfig,
        [
            "--robot.type=openk-1-alpha_follower",
            "--robot.port=sim",
            "--teleop.type=openk-1-sts_leader",
            "--teleop.port=sim",
            "--dataset.repo_id=me/ds",
            "--dataset.single_task=t",
            f"--dataset.root={tmp_path / 'ds'}",
            "--dataset.push_to_hub=false",
            "--dataset.episode_time_s=3600",  # episodes end by key, never by the clock
            "--dataset.reset_time_s=0",
            f"--log_file={tmp_path / 'rec.log'}",
            *extra,
        ],
    )


def _run(
    tmp_path: Path,
    keys: dict[tuple[int, int], Any],
    *extra: str,
    writer: RecordingWriter | None = None,
    session_type: type[ScriptedSession] = ScriptedSession,
) -> tuple[rec.RecordResult, ScriptedSession, RecordingWriter, str]:
    cfg = _cfg(tmp_path, *extra)
    events = Events()
    session = session_type(on_key=events.on_key, keys=keys)
    writer = writer or RecordingWriter()
    out = io.StringIO()

    def open_writer(*args: Any) -> RecordingWriter:
        return writer

    original = rec._open_writer
    rec._open_writer = open_writer  # type: ignore[assignment]
    try:
        result = rec.record(
            cfg,
            session_factory=lambda c: session,
            ui=StatusLine(out, tty=False, plain_interval_s=0),
            events=events,
        )
    finally:
        rec._open_writer = original  # type: ignore[assignment]
    return result, session, writer, out.getvalue()


def test_right_arrow_ends_each_episode_and_all_are_saved(tmp_path: Path) -> None:
    keys: dict[tuple[int, int], Any] = {(1, 9): Key.RIGHT, (2, 6): Key.RIGHT}
    result, session, writer, out = _run(tmp_path, keys, "--dataset.num_episodes=2")
    assert result.episodes_saved == 2
    assert [len(ep) for ep in writer.saved] == [9, 6]
    assert writer.saved[0][:3] == [0.0, 1.0, 2.0]  # rows in order, none lost
    assert session.closed and writer.closed
    assert "saved episode 0" in out and "saved episode 1" in out
    assert "open it with lerobot" in out


def test_left_arrow_discards_and_rerecords(tmp_path: Path) -> None:
    keys: dict[tuple[int, int], Any] = {
        (1, 6): Key.LEFT,  # first take thrown away
        (2, 9): Key.RIGHT,
    }
    result, _, writer, out = _run(tmp_path, keys, "--dataset.num_episodes=1")
    assert writer.discarded == 1
    assert [len(ep) for ep in writer.saved] == [9]
    assert result.episodes_saved == 1
    assert "re-recording episode 1" in out


def test_esc_stops_and_keeps_the_episode_just_recorded(tmp_path: Path) -> None:
    keys: dict[tuple[int, int], Any] = {(1, 6): Key.RIGHT, (2, 3): Key.ESC}
    result, session, writer, out = _run(tmp_path, keys, "--dataset.num_episodes=5")
    assert [len(ep) for ep in writer.saved] == [6, 3]
    assert result.episodes_saved == 2
    assert session.episode == 2
    assert "stopped (Esc)" in out


def test_ctrl_c_mid_episode_keeps_finished_and_partial_rows(tmp_path: Path) -> None:
    keys: dict[tuple[int, int], Any] = {(1, 6): Key.RIGHT, (2, 12): KeyboardInterrupt}
    result, session, writer, out = _run(tmp_path, keys, "--dataset.num_episodes=5")
    assert [len(ep) for ep in writer.saved] == [6, 12]
    assert result.episodes_saved == 2 and session.closed and writer.closed
    assert "interrupted: kept episode 1" in out


class _SignalWhileWriting(RecordingWriter):
    """A writer that gets Ctrl-C / `kill` while it takes the first rows of episode 2 (on a busy
    machine the first write of an episode is slow, so that is where a signal often lands)."""

    sig = signal.SIGINT

    def add_rows(self, batch: Any) -> None:
        super().add_rows(batch)
        if self.total_episodes == 1 and len(self.current or []) == batch.num_rows:
            signal.raise_signal(self.sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_a_signal_while_the_writer_takes_rows_keeps_them(
    tmp_path: Path, sig: signal.Signals
) -> None:
    writer = _SignalWhileWriting()
    writer.sig = sig
    result, _, writer, out = _run(
        tmp_path, {(1, 6): Key.RIGHT}, "--dataset.num_episodes=5", writer=writer
    )
    # The rows the writer took are counted and kept, not discarded as an empty episode.
    assert [len(ep) for ep in writer.saved] == [6, 3]
    assert result.episodes_saved == 2 and writer.discarded == 0
    assert "interrupted: kept episode 1 (3 rows)" in out


class _CtrlCAsRowsArrive(ScriptedSession):
    """Ctrl-C comes just as the second batch of episode 2 is read."""

    def read_batch(self, timeout_s: float) -> Any:
        batch = super().read_batch(timeout_s)
        if batch is not None and self.episode == 2 and self.rows_in_episode == 6:
            signal.raise_signal(signal.SIGINT)
        return batch


def test_ctrl_c_as_rows_arrive_loses_none_of_them(tmp_path: Path) -> None:
    result, _, writer, out = _run(
        tmp_path,
        {(1, 6): Key.RIGHT},
        "--dataset.num_episodes=5",
        session_type=_CtrlCAsRowsArrive,
    )
    assert [ep[:6] for ep in writer.saved] == [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]] * 2
    assert result.episodes_saved == 2
    assert "interrupted: kept episode 1 (6 rows)" in out


def test_status_lines_show_the_loop_figures(tmp_path: Path) -> None:
    keys: dict[tuple[int, int], Any] = {(1, 30): Key.RIGHT}
    _, _, _, out = _run(tmp_path, keys, "--dataset.num_episodes=1")
    status = [line for line in out.splitlines() if line.startswith("recording episode 1/1")]
    assert status, out
    assert "500.0 Hz" in status[-1] and "late p99 0.02 ms" in status[-1]


def test_resume_without_a_dataset_says_so(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "--resume=true")
    with pytest.raises(DatasetError, match="no dataset at"):
        rec.record(cfg, session_factory=lambda c: ScriptedSession())


def test_now_in_root_makes_a_fresh_folder_and_refuses_resume() -> None:
    root = rec.resolve_root(Path("out/ds_{now}"), False, 0.0)
    assert root is not None and "{now}" not in str(root) and str(root).startswith("out/ds_")
    with pytest.raises(ConfigError, match="resume"):
        rec.resolve_root(Path("out/ds_{now}"), True, 0.0)


def test_display_data_without_rerun_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rerun", None)  # as if rerun-sdk were not installed
    keys: dict[tuple[int, int], Any] = {(1, 3): Key.RIGHT}
    result, _, _, out = _run(tmp_path, keys, "--dataset.num_episodes=1", "--display_data=true")
    assert result.episodes_saved == 1
    assert "needs rerun-sdk (pip install 'openk[rerun]')" in out


def test_a_camera_that_cannot_start_leaves_no_dataset_behind(tmp_path: Path) -> None:
    """Re-running the command after fixing the camera must not meet a half-made dataset."""

    class Unplugged:
        def start(self, on_frame: Any) -> None:
            raise PortError("camera 'front': cannot open '/dev/video99'")

        def stop(self) -> None:
            pass

    cfg = _cfg(
        tmp_path,
        "--robot.cameras={front: {type: opencv, index_or_path: /dev/video99}}",
        "--dataset.num_episodes=1",
    )
    with pytest.raises(PortError, match="video99"):
        rec.record(
            cfg,
            session_factory=lambda c: ScriptedSession(),
            camera_factory=lambda name, cam: Unplugged(),
            ui=StatusLine(io.StringIO(), tty=False),
        )
    assert not (tmp_path / "ds").exists()


def test_teleoperate_display_data_streams_rows_to_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--display_data=true` acts in teleoperate too: state and action scalars reach rerun."""
    import types

    from openk.commands.teleoperate import teleoperate
    from openk.config import TeleoperateConfig

    logged: list[str] = []
    fake = types.ModuleType("rerun")
    fake.init = lambda *a, **k: None  # type: ignore[attr-defined]
    fake.Scalars = lambda value: value  # type: ignore[attr-defined]
    fake.log = lambda path, value: logged.append(path)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rerun", fake)
    cfg = parse_config(
        TeleoperateConfig,
        [
            "--robot.type=one-motor-test_follower",
            "--robot.port=sim",
            "--teleop.type=one-motor-test_leader",
            "--teleop.port=sim",
            "--display_data=true",
            "--teleop_time_s=0.5",
            f"--log_file={tmp_path / 'teleop.log'}",
        ],
    )
    session = ScriptedSession()
    teleoperate(cfg, session_factory=lambda c: session, ui=StatusLine(io.StringIO(), tty=False))
    assert "observation.state/shoulder_pan.pos" in logged
    assert "action/grip.pos" in logged


def test_teleoperate_says_the_dataset_section_is_not_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record YAML's `dataset:` section is allowed in teleoperate, never silently: a warning
    on stderr says teleoperate does not use it."""
    from openk.commands.teleoperate import teleoperate
    from openk.config import TeleoperateConfig

    config = Path(__file__).resolve().parents[2] / "config" / "record_example_sim.yaml"
    cfg = parse_config(
        TeleoperateConfig,
        [f"--config_path={config}", "--teleop_time_s=0.2", f"--log_file={tmp_path / 't.log'}"],
    )
    teleoperate(
        cfg, session_factory=lambda c: ScriptedSession(), ui=StatusLine(io.StringIO(), tty=False)
    )
    assert "`dataset` section is not used by openk teleoperate" in capsys.readouterr().err
    # Without a dataset section, no such warning.
    cfg.dataset = None
    teleoperate(
        cfg, session_factory=lambda c: ScriptedSession(), ui=StatusLine(io.StringIO(), tty=False)
    )
    assert "dataset" not in capsys.readouterr().err
