"""lerobot's own commands drive openk arms through the `lerobot_robot_openk` plugin (simulated
ports, lerobot 0.6.1 in the oracle venv)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from openk.devices import find, load_core

from .lerobot_run import REPO_ROOT, RunLerobot, lerobot_env, summary

ROBOT = "openk-1-alpha_follower2"
LEADER = "openk-1-sts_leader"
# Short ramps and no realtime scheduling: the tests share a loaded machine.
ROBOT_FLAGS = [
    f"--robot.type={ROBOT}",
    "--robot.port=sim",
    "--robot.sts_port=sim",
    "--robot.realtime=off",
    "--robot.start_ramp_time_s=0.3",
    "--robot.end_home_ramp_time_s=0.3",
    "--robot.end_home_settle_s=0",
]
TELEOP_FLAGS = [f"--teleop.type={LEADER}", "--teleop.port=sim"]
CAMERA = "--robot.cameras={front: {type: openk_synthetic, width: 64, height: 48, fps: 30}}"
# The simulated leader sweeps its joints by tens of degrees; a follower that tracks it ends
# within a few degrees of the leader's last goal (about one row period of motion behind).
MOVED_DEG = 10.0
TRACK_DEG = 8.0


def test_lerobot_teleoperate_drives_the_follower_after_the_leader(
    run_lerobot: RunLerobot,
) -> None:
    proc = run_lerobot("teleoperate", *ROBOT_FLAGS, *TELEOP_FLAGS, "--fps=30", "--teleop_time_s=3")
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = summary(proc.stdout + proc.stderr)
    goals = report["goal_range"]
    assert isinstance(goals, dict)
    spans = {name: hi - lo for name, (lo, hi) in goals.items()}
    assert max(spans.values()) > MOVED_DEG, spans
    last_state, last_goal = report["last_state"], report["last_goal"]
    assert isinstance(last_state, dict) and isinstance(last_goal, dict)
    # The state is read after the last goal was sent: the follower is where the leader was
    # a moment ago (the leader keeps moving, the goal is reached one row period later).
    errors = {n: abs(last_state[n] - last_goal[n]) for n in last_goal}
    assert max(errors.values()) < TRACK_DEG, (errors, last_state, last_goal)
    assert report["achieved_hz"] and float(report["achieved_hz"]) > 0


@pytest.mark.parametrize("channels", [None, ["pos", "vel"]], ids=["all_channels", "pos_vel"])
def test_lerobot_record_then_replay_with_openk_devices(
    run_lerobot: RunLerobot, tmp_path: Path, oracle_python: str, channels: list[str] | None
) -> None:
    root = tmp_path / "ds"
    selected = [] if channels is None else [f"--robot.state_channels=[{','.join(channels)}]"]
    rec = run_lerobot(
        "record",
        *ROBOT_FLAGS,
        *selected,
        CAMERA,
        *TELEOP_FLAGS,
        "--dataset.repo_id=tester/plugin_rec",
        f"--dataset.root={root}",
        "--dataset.single_task=follow the leader",
        "--dataset.num_episodes=2",
        "--dataset.episode_time_s=2",
        "--dataset.reset_time_s=0",
        "--dataset.fps=30",
        "--dataset.push_to_hub=false",
        "--dataset.rgb_encoder.vcodec=h264",
    )
    assert rec.returncode == 0, rec.stderr[-4000:]
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 2
    # The schema `openk record` writes: the core's feature names (of the state channels
    # chosen), the camera's frames.
    device = find(ROBOT, "robot")
    assert device is not None
    features = info["features"]
    state = load_core().device_features(ROBOT, state_channels=channels)["observation.state"]
    assert features["observation.state"]["names"] == state["names"]
    assert len(state["names"]) == (17 if channels is None else 12)
    if channels is None:
        assert state["names"] == list(device.observation_names)
    assert features["action"]["names"] == list(device.action_names)
    assert features["observation.images.front"]["shape"] == [48, 64, 3]

    env = lerobot_env(tmp_path, [REPO_ROOT / "python"])
    verify = subprocess.run(
        [oracle_python, "-m", "openk.cli", "verify", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    load = subprocess.run(
        [
            oracle_python,
            "-c",
            "import sys; from lerobot.datasets.lerobot_dataset import LeRobotDataset; "
            "ds = LeRobotDataset('tester/plugin_rec', root=sys.argv[1]); "
            "item = ds[len(ds) - 1]; print(len(ds), ds.num_episodes, "
            "tuple(item['observation.images.front'].shape))",
            str(root),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert load.returncode == 0, load.stderr[-4000:]
    frames, episodes, shape = load.stdout.strip().splitlines()[-1].split(" ", 2)
    assert int(frames) == info["total_frames"] and int(episodes) == 2
    assert shape == "(3, 48, 64)"

    replay = run_lerobot(
        "replay",
        *ROBOT_FLAGS,
        "--dataset.repo_id=tester/plugin_rec",
        f"--dataset.root={root}",
        "--dataset.episode=0",
    )
    assert replay.returncode == 0, replay.stderr[-4000:]
    report = summary(replay.stdout + replay.stderr)
    goals = report["goal_range"]
    assert isinstance(goals, dict)
    assert max(hi - lo for lo, hi in goals.values()) > MOVED_DEG, goals


def test_lerobot_calibrate_on_sim_writes_the_file_openk_reads(
    run_lerobot: RunLerobot, tmp_path: Path
) -> None:
    calib = tmp_path / "calib"
    leader = run_lerobot(
        "calibrate",
        *TELEOP_FLAGS,
        "--teleop.id=leader",
        f"--teleop.calibration_dir={calib}",
    )
    assert leader.returncode == 0, leader.stderr[-4000:]
    path = calib / "leader.json"
    assert path.is_file(), leader.stderr[-4000:]
    # openk reads it (a file that does not fit the arm is refused when the leader opens).
    from openk.devices import load_core

    reader = load_core().LeaderReader(
        {"type": LEADER, "port": "sim", "id": "leader", "calibration_dir": str(calib)}
    )
    try:
        assert len(reader.read()) == len(reader.names)
    finally:
        reader.close()
    robot = run_lerobot("calibrate", *ROBOT_FLAGS[:3])
    assert robot.returncode == 0, robot.stderr[-4000:]


def test_without_the_plugin_lerobot_does_not_know_the_type(run_lerobot: RunLerobot) -> None:
    proc = run_lerobot("calibrate", *TELEOP_FLAGS, plugin=False)
    assert proc.returncode != 0
    assert LEADER in proc.stderr and "invalid choice" in proc.stderr.lower(), proc.stderr[-3000:]


def test_a_bad_option_names_what_to_fix(run_lerobot: RunLerobot) -> None:
    proc = run_lerobot("calibrate", f"--robot.type={ROBOT}", "--robot.port=sim")
    assert proc.returncode != 0
    assert "--robot.sts_port is required" in proc.stderr, proc.stderr[-3000:]
    proc = run_lerobot("calibrate", *ROBOT_FLAGS[:3], "--robot.control_type=TORQUE")
    assert proc.returncode != 0
    assert "--robot.control_type='TORQUE' is not one of MIT, POS_VEL" in proc.stderr
    proc = run_lerobot("calibrate", *ROBOT_FLAGS[:3], "--robot.state_channels=[pos,torque]")
    assert proc.returncode != 0
    assert (
        '--robot.state_channels: robot openk-1-alpha_follower2 has no state channel "torque"; '
        "allowed: pos, vel, tor" in proc.stderr
    ), proc.stderr[-3000:]
