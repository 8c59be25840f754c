"""The orchestrator with the real dataset writer and synthetic cameras (scripted loop rows),
then replay of a recorded episode into a follower that remembers what it was sent."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import openk.commands.record as rec
from openk.commands.replay import replay
from openk.config import RecordConfig, ReplayConfig, parse_config
from openk.errors import DatasetError
from openk.session import Events
from openk.terminal import Key, StatusLine

from .fakes import ACTION, ScriptedSession


def _record(tmp_path: Path, keys: dict[tuple[int, int], Any], *extra: str) -> rec.RecordResult:
    cfg = parse_config(
        RecordConfig,
        [
            "--robot.type=openk-1-alpha_follower",
            "--robot.port=sim",
            "--robot.cameras={front: {type: synthetic, width: 160, height: 120}}",
            "--teleop.type=openk-1-sts_leader",
            "--teleop.port=sim",
            "--dataset.repo_id=me/ds",
            "--dataset.single_task=pick",
            f"--dataset.root={tmp_path / 'ds'}",
            "--dataset.push_to_hub=false",
            "--dataset.episode_time_s=60",  # episodes end by key; this only bounds a bug
            "--dataset.reset_time_s=0",
            "--vcodec=h264",
            f"--log_file={tmp_path / 'rec.log'}",
            *extra,
        ],
    )
    events = Events()
    session = ScriptedSession(on_key=events.on_key, keys=dict(keys), paced=True)
    return rec.record(
        cfg,
        session_factory=lambda c: session,
        ui=StatusLine(io.StringIO(), tty=False),
        events=events,
    )


def test_two_episodes_then_resume_two_more(tmp_path: Path) -> None:
    keys: dict[tuple[int, int], Any] = {(1, 15): Key.RIGHT, (2, 9): Key.RIGHT}
    first = _record(tmp_path, keys, "--dataset.num_episodes=2")
    assert (first.episodes_saved, first.total_episodes) == (2, 2)
    second = _record(tmp_path, keys, "--dataset.num_episodes=2", "--resume=true")
    assert (second.episodes_saved, second.total_episodes) == (2, 4)
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 4
    assert info["total_frames"] == 15 + 9 + 15 + 9
    assert info["features"]["observation.images.front"]["dtype"] == "video"
    assert info["features"]["action"]["names"] == ACTION
    data = pq.read_table(tmp_path / "ds" / "data").to_pydict()
    assert sorted(set(data["episode_index"])) == [0, 1, 2, 3]


def test_resume_with_another_fps_is_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    _record(tmp_path, {(1, 6): Key.RIGHT}, "--dataset.num_episodes=1")
    try:
        _record(tmp_path, {}, "--resume=true", "--dataset.fps=15")
    except DatasetError as err:
        assert "fps" in str(err)
    else:
        raise AssertionError("resume with another fps must fail")
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 1 and info["total_frames"] == 6


class _Follower:
    action_names = ACTION

    def __init__(self) -> None:
        self.sent: list[list[float]] = []
        self.closed = False

    def send_actions(self, actions: Sequence[Sequence[float]], start_ns: int | None = None) -> None:
        self.sent.extend(list(map(float, a)) for a in actions)

    def wait_idle(self, timeout_s: float) -> bool:
        return True

    @property
    def pending_actions(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


def test_replay_sends_the_recorded_actions_in_order(tmp_path: Path) -> None:
    _record(tmp_path, {(1, 12): Key.RIGHT, (2, 9): Key.RIGHT}, "--dataset.num_episodes=2")
    follower = _Follower()
    cfg = parse_config(
        ReplayConfig,
        [
            "--robot.type=openk-1-alpha_follower",
            "--robot.port=sim",
            "--dataset.repo_id=me/ds",
            f"--dataset.root={tmp_path / 'ds'}",
            "--dataset.episode=1",
            f"--log_file={tmp_path / 'replay.log'}",
        ],
    )
    result = replay(cfg, session_factory=lambda c: follower, ui=StatusLine(io.StringIO()))
    assert (result.sent, result.total) == (9, 9) and follower.closed
    # ScriptedSession's action i of an episode is [i, 0.5].
    assert follower.sent == [[float(i), 0.5] for i in range(9)]


def test_replay_of_a_missing_episode_names_the_range(tmp_path: Path) -> None:
    _record(tmp_path, {(1, 6): Key.RIGHT}, "--dataset.num_episodes=1")
    cfg = parse_config(
        ReplayConfig,
        [
            "--robot.type=openk-1-alpha_follower",
            "--robot.port=sim",
            "--dataset.repo_id=me/ds",
            f"--dataset.root={tmp_path / 'ds'}",
            "--dataset.episode=3",
            f"--log_file={tmp_path / 'replay.log'}",
        ],
    )
    try:
        replay(cfg, session_factory=lambda c: _Follower())
    except DatasetError as err:
        assert "has episodes 0..0" in str(err)
    else:
        raise AssertionError("replaying a missing episode must fail")


def test_verify_command_on_a_recorded_dataset(tmp_path: Path, run_openk: Any) -> None:
    _record(tmp_path, {(1, 9): Key.RIGHT}, "--dataset.num_episodes=1")
    ok = run_openk("verify", str(tmp_path / "ds"))
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    # Break it: drop the episode's video; verify names the problem and fails.
    for mp4 in (tmp_path / "ds" / "videos").rglob("*.mp4"):
        mp4.unlink()
    bad = run_openk("verify", str(tmp_path / "ds"))
    assert bad.returncode != 0
    assert "problem:" in bad.stdout
    assert "problem(s) found" in bad.stderr.strip().splitlines()[-1]


def test_recover_command_when_nothing_was_interrupted(tmp_path: Path, run_openk: Any) -> None:
    _record(tmp_path, {(1, 6): Key.RIGHT}, "--dataset.num_episodes=1")
    proc = run_openk("recover", str(tmp_path / "ds"))
    assert proc.returncode == 0, proc.stderr
    assert "no interrupted episode" in proc.stdout


def test_resume_into_the_output_of_an_interrupted_split_finishes_it_first(
    tmp_path: Path, run_openk: Any
) -> None:
    keys: dict[tuple[int, int], Any] = {(1, 6): Key.RIGHT, (2, 6): Key.RIGHT}
    _record(tmp_path / "a", keys, "--dataset.num_episodes=2")
    source, output = tmp_path / "a" / "ds", tmp_path / "b" / "ds"
    output.parent.mkdir()
    proc = run_openk(
        "edit", "split", str(source), "--episodes", "1", "--output", str(output),
        env={"OPENK_EDIT_CRASH_AT": "marked"},
    )  # fmt: skip
    assert proc.returncode == -9, proc.stdout + proc.stderr
    assert not output.exists()  # committed, but the output was not moved in yet
    # recording into the output rolls the split forward first: episode 1 leaves the source
    result = _record(
        tmp_path / "b", {(1, 6): Key.RIGHT}, "--dataset.num_episodes=1", "--resume=true"
    )
    assert (result.episodes_saved, result.total_episodes) == (1, 2)
    infos = [json.loads((r / "meta" / "info.json").read_text()) for r in (source, output)]
    assert [i["total_episodes"] for i in infos] == [1, 2]
    assert not [p.name for p in (tmp_path / "a").iterdir() if "openk-edit" in p.name]
    assert not [p.name for p in (tmp_path / "b").iterdir() if "openk-edit" in p.name]
