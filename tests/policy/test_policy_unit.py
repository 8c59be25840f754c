"""The policy path without torch: the checkpoint/robot feature check, the config rules, and
the inference thread on a fake policy and a fake loop (NaN, crash, pause, lateness)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openk import _core
from openk.config import RecordConfig, RolloutConfig, parse_config
from openk.errors import ConfigError
from openk.policy import PolicyError, PolicyMismatchError
from openk.policy.features import (
    check_policy_fits,
    feature_differences,
    read_policy_spec,
    robot_spec,
)
from openk.policy.run import catalogue_names, check_policy

from ..helpers import wait_until

ROBOT = "openk-1-alpha_follower"
SIM = [f"--robot.type={ROBOT}", "--robot.port=sim"]


def write_checkpoint(
    folder: Path,
    *,
    state: int = 17,
    action: int = 7,
    cameras: dict[str, tuple[int, int]] | None = None,
    trained_on: Path | None = None,
) -> Path:
    """A checkpoint folder as lerobot-train writes it (only the files the check reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs: dict[str, Any] = {"observation.state": {"type": "STATE", "shape": [state]}}
    for key, (h, w) in (cameras if cameras is not None else {"front": (48, 64)}).items():
        inputs[f"observation.images.{key}"] = {"type": "VISUAL", "shape": [3, h, w]}
    config = {
        "type": "act",
        "device": "cpu",
        "input_features": inputs,
        "output_features": {"action": {"type": "ACTION", "shape": [action]}},
    }
    (folder / "config.json").write_text(json.dumps(config))
    if trained_on is not None:
        train = {"dataset": {"repo_id": "tester/trained", "root": str(trained_on)}}
        (folder / "train_config.json").write_text(json.dumps(train))
    return folder


def write_trained_dataset(root: Path, state: list[str], action: list[str]) -> Path:
    (root / "meta").mkdir(parents=True)
    info = {
        "fps": 30,
        "features": {
            "observation.state": {"dtype": "float32", "shape": [len(state)], "names": state},
            "action": {"dtype": "float32", "shape": [len(action)], "names": action},
        },
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return root


def robot(cameras: dict[str, tuple[int, int]], rename: dict[str, str] | None = None) -> Any:
    state, action = catalogue_names(ROBOT)
    return robot_spec(state, action, cameras, rename)


def test_a_fitting_policy_passes_and_reads_its_training_names(tmp_path: Path) -> None:
    state, action = catalogue_names(ROBOT)
    ds = write_trained_dataset(tmp_path / "ds", state, action)
    spec = read_policy_spec(str(write_checkpoint(tmp_path / "ckpt", trained_on=ds)))
    assert spec.trained_names == {"observation.state": state, "action": action}
    assert spec.trained_fps == 30
    check_policy_fits(spec, robot({"front": (48, 64)}), ROBOT)


@pytest.mark.parametrize(
    ("kwargs", "cameras", "expected"),
    [
        (
            {},
            {"wrist": (48, 64)},
            "the policy wants camera 'observation.images.front', the robot"
            " has observation.images.wrist; add that camera to --robot.cameras or map one onto it"
            " with --rename_map",
        ),
        ({}, {"front": (480, 640)}, "observation.images.front: the policy wants images of 64x48"),
        (
            {"state": 14},
            {"front": (48, 64)},
            "observation.state: the policy wants shape [14], the robot gives [17]",
        ),
        (
            {"action": 6},
            {"front": (48, 64)},
            "action: the policy outputs shape [6], the robot takes [7]",
        ),
    ],
)
def test_a_mismatch_names_what_differs(
    tmp_path: Path, kwargs: dict[str, Any], cameras: dict[str, tuple[int, int]], expected: str
) -> None:
    spec = read_policy_spec(str(write_checkpoint(tmp_path / "ckpt", **kwargs)))
    with pytest.raises(PolicyMismatchError) as err:
        check_policy_fits(spec, robot(cameras), ROBOT)
    assert expected in str(err.value)
    assert "nothing was moved" in str(err.value)


def test_a_policy_without_torque_needs_state_channels(tmp_path: Path) -> None:
    state, action = catalogue_names(ROBOT, ["pos", "vel"])
    assert len(state) == 12 and not any(n.endswith(".tor") for n in state)
    ds = write_trained_dataset(tmp_path / "ds", state, action)
    ckpt = write_checkpoint(tmp_path / "ckpt", state=12, trained_on=ds)
    cam = "--robot.cameras={front: {type: synthetic, width: 64, height: 48}}"
    args = [*SIM, cam, f"--policy.path={ckpt}", "--dataset.repo_id=me/eval_ds"]
    cfg = parse_config(RecordConfig, [*args, "--dataset.single_task=t"])
    with pytest.raises(PolicyMismatchError) as err:
        check_policy(cfg.policy, cfg.robot, cfg.dataset.rename_map)
    assert "the robot gives [17]" in str(err.value)
    assert "with --robot.state_channels='[pos,vel]'" in str(err.value)
    cfg = parse_config(
        RecordConfig, [*args, "--dataset.single_task=t", "--robot.state_channels=[pos,vel]"]
    )
    check_policy(cfg.policy, cfg.robot, cfg.dataset.rename_map)
    # The other way round: a policy trained on every channel, the robot told to drop torque.
    full = write_checkpoint(tmp_path / "full", state=17)
    cfg.policy.path = str(full)
    with pytest.raises(PolicyMismatchError, match=r"--robot.state_channels='\[pos,vel,tor\]'"):
        check_policy(cfg.policy, cfg.robot, cfg.dataset.rename_map)


def test_rename_map_maps_a_robot_camera_onto_the_policy_key(tmp_path: Path) -> None:
    spec = read_policy_spec(str(write_checkpoint(tmp_path / "ckpt", cameras={"top": (48, 64)})))
    assert feature_differences(spec, robot({"front": (48, 64)}))
    renamed = robot({"front": (48, 64)}, {"observation.images.front": "observation.images.top"})
    assert feature_differences(spec, renamed) == []


def test_joint_names_of_the_training_dataset_are_compared(tmp_path: Path) -> None:
    state, action = catalogue_names(ROBOT)
    other = [*action[:-1], "gripper.pos"]
    ds = write_trained_dataset(tmp_path / "ds", state, other)
    spec = read_policy_spec(str(write_checkpoint(tmp_path / "ckpt", trained_on=ds)))
    problems = feature_differences(spec, robot({"front": (48, 64)}))
    assert problems == [
        "action names differ: the robot lacks ['gripper.pos']; the policy was not trained on "
        "['wrist_flex.pos']"
    ]


def test_checkpoint_paths_are_explained(tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "run" / "pretrained_model")
    with pytest.raises(ConfigError, match=r"did you mean --policy.path=.*pretrained_model"):
        read_policy_spec(str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="neither a checkpoint folder nor a Hub repo id"):
        read_policy_spec(str(tmp_path / "missing" / "x"))


def test_check_policy_reads_the_robot_config(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "ckpt")
    cfg = parse_config(
        RecordConfig,
        [
            *SIM,
            f"--policy.path={ckpt}",
            "--dataset.repo_id=me/eval_x",
            "--dataset.single_task=t",
            "--robot.cameras={front: {type: synthetic, width: 64, height: 48}}",
        ],
    )
    assert cfg.teleop is None and cfg.policy is not None
    check_policy(cfg.policy, cfg.robot, cfg.dataset.rename_map)
    cfg.robot.cameras["front"].width = 32
    with pytest.raises(PolicyMismatchError, match="camera 'front' gives 32x48"):
        check_policy(cfg.policy, cfg.robot, cfg.dataset.rename_map)


# --- config rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--policy.path=ckpt", "--dataset.repo_id=me/ds"],
            "with --policy.path is an evaluation dataset and its name must start with 'eval_'; use "
            "--dataset.repo_id=<hf_user>/eval_ds",
        ),
        (
            ["--dataset.repo_id=me/eval_ds", "--teleop.type=openk_leader", "--teleop.port=sim"],
            "dataset names starting with 'eval_' are reserved for policy evaluation",
        ),
        (
            [
                "--policy.path=ckpt",
                "--dataset.repo_id=me/eval_ds",
                "--teleop.type=openk_leader",
                "--teleop.port=sim",
            ],
            "remove the --teleop.* options",
        ),
        (["--policy.device=cpu", "--dataset.repo_id=me/eval_ds"], "missing --policy.path"),
        (
            ["--policy.path=ckpt", "--policy.n_action_steps=5", "--dataset.repo_id=me/eval_ds"],
            "unknown flag --policy.n_action_steps",
        ),
    ],
)
def test_record_policy_rules(args: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(RecordConfig, [*SIM, "--dataset.single_task=t", *args])
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "missing --policy.path"),
        (["--policy.path=c", "--strategy.type=dagger"], "dagger hands the arm from the policy"),
        (["--policy.path=c", "--strategy.type=sentry"], "--strategy.type=sentry is not supported"),
        (
            ["--policy.path=c", "--teleop.type=openk-1-sts_leader", "--teleop.port=sim"],
            "--teleop.* in openk rollout is for --strategy.type=dagger",
        ),
        (
            ["--policy.path=c", "--strategy.type=episodic", "--dataset.repo_id=me/ds", "--task=t"],
            "dataset names for rollout must start with 'rollout_'. Use --dataset.repo_id=<user>/"
            "rollout_<name> for policy deployment datasets.",
        ),
        (["--policy.path=c", "--strategy.type=episodic"], "needs --dataset.repo_id"),
        (["--policy.path=c", "--dataset.repo_id=me/rollout_x"], "base does not record data"),
        (
            ["--policy.path=c", "--strategy.type=episodic", "--dataset.repo_id=me/rollout_x"],
            "missing --task",
        ),
        (["--policy.path=c", "--duration=-1"], "--duration is -1.0; it must be ≥ 0"),
        (["--policy.path=c", "--vcodec=h264"], "--vcodec is for recording"),
        (["--policy.path=c", "--resume=true"], "--resume is for recording"),
        (
            [
                "--policy.path=c",
                "--strategy.type=episodic",
                "--dataset.repo_id=me/rollout_x",
                "--duration=5",
            ],
            "--duration is for --strategy.type=base",
        ),
    ],
)
def test_rollout_rules(args: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(RolloutConfig, [*SIM, *args])
    assert expected in str(err.value)


def test_rollout_episodic_takes_the_task_and_fps() -> None:
    cfg = parse_config(
        RolloutConfig,
        [
            *SIM,
            "--policy.path=c",
            "--strategy.type=episodic",
            "--dataset.repo_id=me/rollout_x",
            "--task=pick",
            "--fps=15",
        ],
    )
    assert cfg.dataset is not None
    assert (cfg.dataset.single_task, cfg.dataset.fps, cfg.duration) == ("pick", 15, 0.0)


# --- the inference thread on fakes ------------------------------------------------------------


class FakeLoop:
    """Records what the runner sends."""

    def __init__(self) -> None:
        self.sent: list[list[float]] = []
        self.lock = threading.Lock()

    def send(self, values: Sequence[float]) -> None:
        with self.lock:
            self.sent.append(list(values))


def wait_for(predicate: Any) -> None:
    wait_until(predicate, "the runner got there")


class RowFeeder:
    """Rows reaching an `ObservationTap` at `fps`, as the recorder's pump hands them over."""

    def __init__(self, fps: float) -> None:
        import pyarrow as pa

        from openk.policy.runner import ObservationTap

        self.tap = ObservationTap([])
        self.stop = threading.Event()

        def feed() -> None:
            while not self.stop.wait(1.0 / fps):
                row = {"observation.state": [[0.0, 0.0]], "capture_time_ns": [time.monotonic_ns()]}
                self.tap.on_batch(pa.table(row))

        threading.Thread(target=feed, daemon=True).start()


def make_runner(
    predict: Any,
    loop: FakeLoop,
    fps: float = 50,
    tap: Any = None,
    names: Any = ("a", "b"),
) -> Any:
    """A runner fed by `tap`, or by rows of its own at `fps` (stopped on close)."""
    from openk.policy.runner import PolicyRunner

    resets: list[int] = []
    feeder = RowFeeder(fps) if tap is None else None
    source = feeder.tap if feeder is not None else tap
    runner = PolicyRunner(
        predict,
        lambda: resets.append(1),
        source.observe,
        loop.send,
        wait_row=source.wait_row,
        fps=fps,
        action_names=list(names),
    )
    runner.resets = resets  # type: ignore[attr-defined]
    if feeder is not None:
        close = runner.close

        def close_both() -> None:
            feeder.stop.set()
            close()

        runner.close = close_both  # type: ignore[method-assign]
    return runner


def test_runner_sends_between_start_and_pause_and_resets_each_episode() -> None:
    loop = FakeLoop()
    runner = make_runner(lambda obs: np.array([1.0, 2.0], dtype=np.float32), loop)
    try:
        time.sleep(0.1)
        assert loop.sent == []  # inactive until an episode starts
        runner.start_episode()
        wait_for(lambda: len(loop.sent) >= 5)
        runner.pause()
        count = len(loop.sent)
        time.sleep(0.1)
        assert len(loop.sent) == count  # nothing after pause() returned
        runner.start_episode()
        wait_for(lambda: len(loop.sent) >= count + 3)
        assert len(runner.resets) == 2
        stats = runner.stats(whole_run=True)
        assert stats["policy_actions"] == len(loop.sent) or stats["policy_actions"] >= count + 3
        assert loop.sent[0] == [1.0, 2.0]
    finally:
        runner.close()


def test_runner_infers_once_per_arriving_row_on_that_row() -> None:
    """Row arrival triggers inference (no clock of its own): one action per row, computed on
    that newest row, and none while no row comes."""
    import pyarrow as pa

    from openk.policy.runner import ObservationTap

    loop = FakeLoop()
    seen: list[float] = []

    def predict(obs: Any) -> np.ndarray:
        seen.append(float(obs["observation.state"][0]))
        return np.zeros(2, dtype=np.float32)

    tap = ObservationTap([])
    runner = make_runner(predict, loop, fps=30, tap=tap)
    try:
        runner.start_episode()
        for k in range(1, 6):
            tap.on_batch(pa.table({"observation.state": [[float(k), 0.0]]}))
            wait_for(lambda k=k: len(loop.sent) == k)  # type: ignore[misc]
        time.sleep(0.2)  # several periods at 30 fps without a row: nothing more is sent
        assert seen == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert runner.stats()["policy_late_actions"] == 0
    finally:
        runner.close()


def test_runner_stops_on_a_nan_action_and_names_the_joint() -> None:
    loop = FakeLoop()
    runner = make_runner(lambda obs: np.array([0.0, np.nan], dtype=np.float32), loop)
    try:
        runner.start_episode()
        wait_for(lambda: runner.error is not None)
        assert isinstance(runner.error, PolicyError)
        assert "non-finite action for b" in str(runner.error)
        assert loop.sent == []  # the loop keeps its last goal
    finally:
        runner.close()


def test_runner_counts_late_actions_without_piling_them_up() -> None:
    loop = FakeLoop()

    def slow(obs: Any) -> np.ndarray:
        time.sleep(0.05)  # > the 20 ms period
        return np.zeros(2, dtype=np.float32)

    runner = make_runner(slow, loop, fps=50)
    try:
        runner.start_episode()
        wait_for(lambda: len(loop.sent) >= 4)
        stats = runner.stats()
        assert stats["policy_late_actions"] >= 3
        assert stats["policy_inference_p50_ms"] >= 40
    finally:
        runner.close()


class FakeSession:
    def __init__(self) -> None:
        self.closed = False
        self.episodes = 0

    schema = None
    action_names = ("a", "b")

    def start_episode(self) -> None:
        self.episodes += 1

    def end_episode(self) -> None:
        pass

    def read_batch(self, timeout_s: float) -> Any:
        time.sleep(min(timeout_s, 0.01))
        return None

    def telemetry(self) -> Any:
        return _core.LoopTelemetry(achieved_hz=200.0)

    def send_action(self, values: Sequence[float]) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_a_crashing_policy_surfaces_as_a_policy_error_from_the_pump() -> None:
    from openk.policy.runner import ObservationTap, PolicySession

    def crash(obs: Any) -> np.ndarray:
        raise RuntimeError("CUDA out of memory")

    loop = FakeLoop()
    runner = make_runner(crash, loop)
    inner = FakeSession()
    session = PolicySession(inner, runner, ObservationTap([]))
    session.start_episode()
    deadline = time.monotonic() + 10
    with pytest.raises(PolicyError, match="the policy failed: RuntimeError: CUDA out of memory"):
        while time.monotonic() < deadline:
            session.read_batch(0.01)
    assert "policy_late_actions" in session.policy_stats()
    assert session.telemetry().achieved_hz == 200.0
    session.close()
    assert inner.closed


def test_a_nan_mid_episode_ends_it_like_esc_and_keeps_its_rows(tmp_path: Path) -> None:
    """record() with a policy session: the NaN stops the policy, the loop (fake) keeps going,
    the episode so far is saved, then the command fails naming the joint."""
    import io
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
    from fakes import RecordingWriter, ScriptedSession  # type: ignore[import-not-found]

    import openk.commands.record as rec
    from openk.policy.runner import ObservationTap, PolicySession
    from openk.terminal import StatusLine

    calls = []

    def predict(obs: Any) -> np.ndarray:
        calls.append(obs["observation.state"].copy())
        value = np.nan if len(calls) > 5 else 0.1 * len(calls)
        return np.array([0.0, value], dtype=np.float32)

    loop = FakeLoop()
    inner = ScriptedSession(rows_per_read=1, paced=True)
    tap = ObservationTap([])
    runner = make_runner(predict, loop, fps=30, tap=tap, names=("shoulder_pan.pos", "grip.pos"))
    session = PolicySession(inner, runner, tap)
    cfg = parse_config(
        RecordConfig,
        [
            *SIM,
            "--policy.path=ckpt",
            "--dataset.repo_id=me/eval_ds",
            "--dataset.single_task=t",
            f"--dataset.root={tmp_path / 'ds'}",
            "--dataset.push_to_hub=false",
            "--dataset.episode_time_s=3600",
            "--dataset.num_episodes=3",
            f"--log_file={tmp_path / 'rec.log'}",
        ],
    )
    writer = RecordingWriter()
    original = rec._open_writer
    rec._open_writer = lambda *a: writer  # type: ignore[assignment]
    out = io.StringIO()
    try:
        with pytest.raises(PolicyError) as err:
            rec.record(
                cfg,
                session_factory=lambda c: session,
                ui=StatusLine(out, tty=False, plain_interval_s=0),
            )
    finally:
        rec._open_writer = original  # type: ignore[assignment]
    assert "non-finite action for grip.pos" in str(err.value)
    assert "the episodes recorded so far are kept" in str(err.value)
    assert len(writer.saved) == 1 and len(writer.saved[0]) >= 5  # the partial episode
    assert inner.closed and writer.closed
    assert len(loop.sent) == 5  # nothing after the NaN
    # The policy saw the loop's newest state rows, in order.
    seen = [float(c[0]) for c in calls]
    assert seen == sorted(seen)


def test_without_lerobot_the_install_command_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import sys

    from openk.policy import require_lerobot

    monkeypatch.setattr(sys, "version_info", (3, 11, 7))
    with pytest.raises(ConfigError, match=r"needs Python ≥ 3\.12 .*pip install 'openk\[policy\]'"):
        require_lerobot()
    monkeypatch.setattr(sys, "version_info", (3, 12, 1))
    real_import = builtins.__import__

    def no_lerobot(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "lerobot":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lerobot)
    with pytest.raises(ConfigError, match=r"needs lerobot 0\.6\.1 with torch; pip install"):
        require_lerobot()
