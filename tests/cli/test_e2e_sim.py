"""The OpenK dataset guide's commands as a user runs them, on simulated arms (ptys, real wire
timing): record, resume, a refused resume, replay, verify, and lerobot 0.6.1 loading the
result; plus teleoperate."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .conftest import REPO_ROOT, FakeHub, RunOpenk, Tmux, hub_env, one_line_error
from .test_tmux_keys import drive_record

REPO = "tester/openk_e2e"
CAMERAS = (
    "--robot.cameras={front: {type: synthetic, width: 160, height: 120},"
    " wrist: {type: synthetic, width: 160, height: 120}}"
)


def sim_options(tmp_path: Path) -> list[str]:
    calib = tmp_path / "calibration"
    return [
        CAMERAS,
        f"--robot.calibration_dir={calib}",
        f"--teleop.calibration_dir={calib}",
        f"--dataset.root={tmp_path / 'ds'}",
        "--dataset.episode_time_s=3",
        "--dataset.reset_time_s=1",
        "--dataset.push_to_hub=false",
        "--vcodec=h264",
        "--realtime=off",
    ]


def info(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())


def test_guide_commands_on_simulated_arms(
    run_openk: RunOpenk, tmp_path: Path, run_oracle: Callable[..., Any], hub: FakeHub
) -> None:
    # 1. Record two episodes (the guide's first command, ports set to sim).
    first = run_openk(
        "record",
        "--robot.type=openk-1-alpha_follower",
        "--robot.port=sim",
        "--robot.id=follower",
        "--teleop.type=openk_leader",
        "--teleop.port=sim",
        "--teleop.id=leader",
        f"--dataset.repo_id={REPO}",
        "--dataset.num_episodes=2",
        "--dataset.single_task=Describe task",
        "--log_file=logs/openk_record.log",
        *sim_options(tmp_path),
    )
    assert first.returncode == 0, first.stderr + first.stdout
    assert f"dataset: {tmp_path / 'ds'} (2 episodes, 2 new)" in first.stdout
    assert "LeRobotDataset('tester/openk_e2e'" in first.stdout
    assert (tmp_path / "logs" / "openk_record.log").is_file()
    assert info(tmp_path)["total_episodes"] == 2
    # Each episode keeps the loop telemetry of its own span (not the run's running total).
    extras = (tmp_path / "ds" / "meta" / "openk" / "episodes.jsonl").read_text().splitlines()
    for extra in map(json.loads, extras):
        loop = extra["metadata"]["openk_loop"]
        # The loop's own clock over the episode, not its tick count: a loaded machine skips
        # ticks (counted as overruns) but the episode still spans the rows' time.
        loop_s, rows_s = loop["duration_ns"] / 1e9, extra["length"] / 30
        assert abs(loop_s - rows_s) < 0.5, (extra["episode_index"], loop_s, rows_s)
        assert loop["ticks"] <= loop["target_hz"] * (loop_s + 0.5), loop
        assert len(loop["bus_round"]) == 3, loop["bus_round"]  # leader, DAMIAO, STS
        assert all(isinstance(r["p99_ns"], int) for r in loop["bus_round"].values())

    # 2. Resume with the guide's second command: two more episodes.
    second = run_openk(
        "record",
        f"--config_path={REPO_ROOT / 'config' / 'record_example_sim.yaml'}",
        f"--dataset.repo_id={REPO}",
        "--resume=true",
        "--dataset.num_episodes=2",
        *sim_options(tmp_path),
    )
    assert second.returncode == 0, second.stderr + second.stdout
    meta = info(tmp_path)
    assert meta["total_episodes"] == 4
    assert meta["robot_type"] == "openk-1-alpha_follower"
    frames = meta["total_frames"]
    from openk.dataset.reader import DatasetReader

    lengths = [ep["length"] for ep in DatasetReader(tmp_path / "ds").list_episodes()]
    assert len(lengths) == 4 and min(lengths) > 0 and sum(lengths) == frames, lengths

    # 3. Resume at another fps is refused in one line, and nothing is lost.
    refused = run_openk(
        "record",
        f"--config_path={REPO_ROOT / 'config' / 'record_example_sim.yaml'}",
        f"--dataset.repo_id={REPO}",
        "--resume=true",
        "--dataset.fps=15",
        *sim_options(tmp_path),
    )
    assert "fps" in one_line_error(refused)
    assert info(tmp_path)["total_frames"] == frames

    # 4. Replay episode 0: the simulated follower follows the recorded actions.
    replayed = run_openk(
        "replay",
        "--robot.type=openk-1-alpha_follower",
        "--robot.port=sim",
        f"--robot.calibration_dir={tmp_path / 'calibration'}",
        f"--dataset.repo_id={REPO}",
        f"--dataset.root={tmp_path / 'ds'}",
        "--dataset.episode=0",
        "--realtime=off",
    )
    assert replayed.returncode == 0, replayed.stderr + replayed.stdout
    match = re.search(r"follower tracking: mean \|position - action\| ([0-9.]+)", replayed.stdout)
    assert match, replayed.stdout

    actions = np.asarray(DatasetReader(tmp_path / "ds").actions(0, fmt="numpy"), dtype=float)
    spreads = actions.max(axis=0) - actions.min(axis=0)
    # The simulated hand moved the leader's joints (a DAMIAO leader has no grip/wrist_flex).
    assert int(np.sum(spreads > 0.5)) >= 5, spreads
    # Standing still would be off by about a quarter of the range; the follower is much closer.
    # (The mean is over all 7 joints, the two still ones included.)
    assert float(match.group(1)) < 0.1 * float(np.max(spreads)), (match.group(1), spreads)

    # 5. verify finds nothing wrong.
    verified = run_openk("verify", str(tmp_path / "ds"))
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # 6. lerobot 0.6.1 loads it and reads every frame's index.
    loaded = run_oracle(
        "import json\n"
        "from lerobot.datasets.lerobot_dataset import LeRobotDataset\n"
        f"ds = LeRobotDataset({REPO!r}, root={str(tmp_path / 'ds')!r}, video_backend='pyav')\n"
        "item = ds[len(ds) - 1]\n"
        "print(json.dumps({'len': len(ds), 'episodes': ds.num_episodes,"
        " 'task': item['task'], 'keys': sorted(ds.meta.camera_keys)}))\n"
    )
    assert loaded == {
        "len": frames,
        "episodes": 4,
        "task": "Describe your task",
        "keys": ["observation.images.front", "observation.images.wrist"],
    }

    # 7. Push it later (the guide's tip) to the test Hub; lerobot loads it by repo id alone.
    env = hub_env(hub, tmp_path)
    pushed = run_openk("push", str(tmp_path / "ds"), f"--repo-id={REPO}", env=env)
    assert pushed.returncode == 0, pushed.stderr
    by_id = run_oracle(
        "import json\n"
        "from lerobot.datasets.lerobot_dataset import LeRobotDataset\n"
        f"ds = LeRobotDataset({REPO!r})\n"
        "print(json.dumps({'len': len(ds), 'episodes': ds.num_episodes}))\n",
        **{**env, "HF_LEROBOT_HOME": str(tmp_path / "lerobot_home")},
    )
    assert by_id == {"len": frames, "episodes": 4}


def test_teleoperate_on_simulated_arms(run_openk: RunOpenk, tmp_path: Path) -> None:
    proc = run_openk(
        "teleoperate",
        f"--config_path={REPO_ROOT / 'config' / 'teleop_example_sim.yaml'}",
        "--teleop_time_s=2",
        "--display_cli=true",
        f"--robot.calibration_dir={tmp_path / 'calibration'}",
        f"--teleop.calibration_dir={tmp_path / 'calibration'}",
        "--realtime=off",
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "teleoperation ended" in proc.stdout
    assert re.search(r"[0-9.]+ Hz", proc.stdout)
    # display_cli shows the leader's action as the follower receives it.
    assert re.search(r"shoulder_pan\.pos=-?[0-9.]+", proc.stdout), proc.stdout


def test_keys_in_a_real_terminal_on_simulated_arms(tmux: Tmux, tmp_path: Path) -> None:
    meta = drive_record(
        tmux,
        tmp_path,
        [
            sys.executable,
            "-m",
            "openk.cli",
            "record",
            f"--config_path={REPO_ROOT / 'config' / 'record_sim.yaml'}",
            f"--dataset.root={tmp_path / 'ds'}",
            "--dataset.num_episodes=5",
            "--dataset.episode_time_s=60",
            "--dataset.reset_time_s=0.5",
            f"--robot.calibration_dir={tmp_path / 'calibration'}",
            f"--teleop.calibration_dir={tmp_path / 'calibration'}",
            CAMERAS,
            "--vcodec=h264",
            "--realtime=off",
        ],
    )
    # → saved episode 0, ← dropped the first take of episode 2, → saved its retake,
    # Esc stopped during episode 3 and kept it.
    assert meta["total_episodes"] == 3
    assert meta["robot_type"] == "openk-1-alpha_follower"


def test_scripted_calibration_on_a_simulated_leader(run_openk: RunOpenk, tmp_path: Path) -> None:
    calib = tmp_path / "calibration"
    proc = run_openk(
        "calibrate",
        "--teleop.type=one-motor-test_leader",
        "--teleop.port=sim",
        "--teleop.id=bringup",
        f"--teleop.calibration_dir={calib}",
        "--scripted=true",
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    saved = calib / "bringup.json"
    assert f"calibration saved to {saved}" in proc.stdout
    entry = json.loads(saved.read_text())["motor1"]
    assert entry["range_min"] < entry["range_max"]


def test_calibrating_a_device_that_did_not_move_says_what_to_do(
    run_openk: RunOpenk, tmp_path: Path
) -> None:
    # Nobody moves the simulated follower's joints, as if the user skipped the sweep.
    line = one_line_error(
        run_openk(
            "calibrate",
            "--robot.type=one-motor-test_follower",
            "--robot.port=sim",
            f"--robot.calibration_dir={tmp_path / 'calibration'}",
            "--scripted=true",
        )
    )
    assert "did not move" in line and "sweep" in line
