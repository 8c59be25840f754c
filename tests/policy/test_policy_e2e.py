"""A real lerobot policy on the simulated arm: a tiny ACT trained by lerobot-train drives the
follower through `openk record --policy.path` and `openk rollout`; lerobot 0.6.1 loads the
evaluation dataset, and its own pipeline, run offline on the recorded observations, gives the
actions openk sent at every chunk boundary."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..tiny_act import ROBOT, TASK, RunIn, offline_env, run_cmd, sim_record_flags

EVAL_REPO = "tester/eval_policy"


def policy_stats(proc: subprocess.CompletedProcess[str]) -> tuple[int, float, float, int]:
    found = re.search(
        r"policy: (\d+) actions, inference p50 ([\d.]+) ms / p99 ([\d.]+) ms, late (\d+)",
        proc.stdout,
    )
    assert found, proc.stdout + proc.stderr
    return int(found[1]), float(found[2]), float(found[3]), int(found[4])


ORACLE = r"""
import json, os, sys
import numpy as np
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import get_policy_class, make_pre_post_processors

root, ckpt, trace_path = os.environ["DS"], os.environ["CKPT"], os.environ["TRACE"]
repo = os.environ["REPO"]
ds = LeRobotDataset(repo, root=root)
frames = [ds[i] for i in range(len(ds))]  # every row decodes, video included
hf = ds.hf_dataset.with_format(None)
t_ns = np.asarray(hf["capture_time_ns"], dtype=np.int64)
states = np.asarray(hf["observation.state"], dtype=np.float32)
row_of = {int(t): i for i, t in enumerate(t_ns)}

trace = np.load(trace_path)
cfg = PreTrainedConfig.from_pretrained(ckpt)
cfg.device = "cpu"
policy = get_policy_class(cfg.type).from_pretrained(ckpt, config=cfg)
policy.eval()
pre, post = make_pre_post_processors(cfg, pretrained_path=ckpt)
n = cfg.n_action_steps

checked, worst, unmatched = 0, 0.0, 0
episodes = trace["episode"]
for ep in np.unique(episodes):
    steps = np.flatnonzero(episodes == ep)
    for k in range(0, len(steps), n):
        first = steps[k]
        row = row_of.get(int(trace["capture_time_ns"][first]))
        if row is None:
            unmatched += 1
            continue
        # The state the policy saw is the recorded row's state.
        assert np.array_equal(states[row], trace["observation.state"][first]), row
        image = torch.from_numpy(trace["observation.images.front"][first])
        batch = {
            "observation.state": torch.from_numpy(states[row])[None],
            "observation.images.front": image.permute(2, 0, 1)[None].float() / 255,
            "task": [os.environ["TASK"]],
        }
        with torch.inference_mode():
            chunk = policy.predict_action_chunk(pre(batch))[:, :n]
            chunk = post(chunk)[0].numpy()
        sent = trace["action"][steps[k : k + n]]
        worst = max(worst, float(np.abs(chunk[: len(sent)] - sent).max()))
        checked += 1

print(json.dumps({
    "rows": len(frames),
    "episodes": ds.meta.total_episodes,
    "features": sorted(ds.meta.features),
    "checked": checked,
    "unmatched": unmatched,
    "worst": worst,
    "action_span": float(np.ptp(np.asarray(hf["action"], dtype=np.float32), axis=0).max()),
}))
"""


def test_record_with_a_trained_policy_gives_an_eval_dataset_lerobot_reproduces(
    trained_policy: Path,
    run_openk_oracle: RunIn,
    run_oracle: Callable[..., Any],
    tmp_path: Path,
) -> None:
    root = tmp_path / "eval_ds"
    trace = tmp_path / "trace.npz"
    proc = run_openk_oracle(
        "record",
        *sim_record_flags(root, tmp_path / "calibration"),
        f"--policy.path={trained_policy}",
        f"--dataset.repo_id={EVAL_REPO}",
        "--dataset.num_episodes=2",
        "--dataset.episode_time_s=3",
        "--dataset.reset_time_s=0.5",
        OPENK_POLICY_TRACE=str(trace),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"dataset: {root} (2 episodes, 2 new)" in proc.stdout
    actions, p50, p99, late = policy_stats(proc)
    # Up to 2 × 3 s × 30 fps; fewer on a loaded machine, where actions computed too late are
    # skipped (counted as late), never queued.
    assert actions >= 10, proc.stdout
    assert 0 < p50 <= p99
    assert late <= actions
    # Each episode's entry keeps the policy's figures beside the loop's.
    extras = (root / "meta" / "openk" / "episodes.jsonl").read_text().splitlines()
    for extra in map(json.loads, extras):
        loop = extra["metadata"]["openk_loop"]
        assert loop["policy_actions"] > 0, loop
        assert {"policy_inference_p50_ms", "policy_inference_p99_ms", "policy_late_actions"} <= set(
            loop
        )

    result = run_oracle(
        ORACLE, DS=str(root), CKPT=str(trained_policy), TRACE=str(trace), REPO=EVAL_REPO, TASK=TASK
    )
    assert result["episodes"] == 2
    assert result["rows"] >= 150, result
    assert "observation.images.front" in result["features"]
    assert result["action_span"] > 0.01, result  # the policy moved the arm
    # Chunks of 10 actions: every episode crosses at least one boundary, each one checked.
    assert result["checked"] >= 2 and result["unmatched"] == 0, result
    assert result["worst"] < 1e-3, result


def test_a_policy_that_does_not_fit_is_refused_before_the_arm_moves(
    trained_policy: Path, tmp_path: Path
) -> None:
    # The check needs no torch: the project's own Python (3.10+) refuses it already.
    root = tmp_path / "never"
    flags = sim_record_flags(root, tmp_path / "calibration")
    flags[flags.index(next(f for f in flags if f.startswith("--robot.cameras")))] = (
        "--robot.cameras={wrist: {type: synthetic, width: 64, height: 48}}"
    )
    proc = run_cmd(
        [
            sys.executable,
            "-m",
            "openk.cli",
            "record",
            *flags,
            f"--policy.path={trained_policy}",
            f"--dataset.repo_id={EVAL_REPO}",
        ],
        tmp_path,
        offline_env(tmp_path),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, proc.stderr
    assert f"does not fit {ROBOT} (nothing was moved)" in line
    assert "the policy wants camera 'observation.images.front'" in line
    assert "observation.images.wrist" in line and "--rename_map" in line
    assert not root.exists()
    log = (tmp_path / "logs" / "openk_record.log").read_text()
    assert "loop started" not in log


def test_rollout_base_runs_the_policy_for_its_duration_and_records_nothing(
    trained_policy: Path, run_openk_oracle: RunIn, tmp_path: Path
) -> None:
    proc = run_openk_oracle(
        "rollout",
        f"--robot.type={ROBOT}",
        "--robot.port=sim",
        "--robot.id=follower",
        "--robot.cameras={cam0: {type: synthetic, width: 64, height: 48}}",
        f"--robot.calibration_dir={tmp_path / 'calibration'}",
        # The robot's camera has another name than the one the policy was trained with.
        "--rename_map={observation.images.cam0: observation.images.front}",
        f"--policy.path={trained_policy}",
        f"--task={TASK}",
        "--duration=2",
        "--realtime=off",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    actions, _p50, _p99, _late = policy_stats(proc)
    assert actions >= 5, proc.stdout
    assert "for 2 s" in proc.stdout
    assert not (tmp_path / "lerobot_home").exists()


def test_rollout_of_a_policy_trained_without_torque_needs_the_same_state_channels(
    trained_policy_pos_vel: Path, run_openk_oracle: RunIn, tmp_path: Path
) -> None:
    flags = [
        "--robot.type=openk-1-alpha_follower2",
        "--robot.port=sim",
        "--robot.cameras={front: {type: synthetic, width: 64, height: 48}}",
        f"--robot.calibration_dir={tmp_path / 'calibration'}",
        f"--policy.path={trained_policy_pos_vel}",
        f"--task={TASK}",
        "--duration=2",
        "--realtime=off",
    ]
    refused = run_openk_oracle("rollout", *flags)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert "the policy wants shape [12], the robot gives [17]" in line, line
    assert "this robot's with --robot.state_channels='[pos,vel]'" in line, line
    proc = run_openk_oracle("rollout", *flags, "--robot.state_channels=[pos,vel]")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    actions, _p50, _p99, _late = policy_stats(proc)
    assert actions >= 5, proc.stdout


def test_rollout_episodic_records_a_rollout_dataset(
    trained_policy: Path, run_openk_oracle: RunIn, tmp_path: Path
) -> None:
    root = tmp_path / "rollout_ds"
    flags = [f for f in sim_record_flags(root, tmp_path / "calibration") if "single_task" not in f]
    proc = run_openk_oracle(
        "rollout",
        *flags,
        "--strategy.type=episodic",
        f"--policy.path={trained_policy}",
        "--dataset.repo_id=tester/rollout_policy",
        f"--task={TASK}",
        "--dataset.num_episodes=1",
        "--dataset.episode_time_s=2",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"dataset: {root} (1 episodes, 1 new)" in proc.stdout
    actions, _p50, _p99, _late = policy_stats(proc)
    assert actions >= 5, proc.stdout
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["total_frames"] >= 50 and "observation.images.front" in info["features"]


DAGGER_CHECK = r"""
import json, os
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

ds = LeRobotDataset(os.environ["REPO"], root=os.environ["DS"])
frames = [ds[i] for i in range(len(ds))]  # lerobot loads and iterates every row
hf = ds.hf_dataset.with_format(None)
print(json.dumps({
    "feature": ds.meta.features["intervention"],
    "intervention": [bool(np.asarray(v).reshape(-1)[0]) for v in hf["intervention"]],
    "action": np.asarray(hf["action"], dtype=np.float32).tolist(),
}))
"""


def test_rollout_dagger_tags_the_leaders_rows_as_interventions(
    trained_policy: Path, run_openk_oracle: RunIn, oracle_python: str, tmp_path: Path
) -> None:
    root = tmp_path / "rollout_dagger"
    calib = tmp_path / "calibration"
    flags = [f for f in sim_record_flags(root, calib) if "single_task" not in f]
    proc = run_openk_oracle(
        "rollout",
        *flags,
        "--strategy.type=dagger",
        "--teleop.type=openk-1-sts_leader",
        "--teleop.port=sim",
        "--teleop.id=leader",
        f"--teleop.calibration_dir={calib}",
        f"--policy.path={trained_policy}",
        "--dataset.repo_id=tester/rollout_dagger",
        f"--task={TASK}",
        "--dataset.num_episodes=1",
        "--dataset.episode_time_s=4",
        "--start_ramp_time_s=0.2",
        # The scripted intervention: the leader drives from 1.5 s to 3 s into the episode (rows
        # 45 to 90 at 30 fps), however long the cameras and the writer took to open before it.
        OPENK_TEST_HANDOVER_AT="1.5,3.0",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SPACE hands the arm" in proc.stdout
    check = run_cmd(
        [oracle_python, "-c", DAGGER_CHECK],
        tmp_path,
        offline_env(tmp_path, DS=str(root), REPO="tester/rollout_dagger"),
    )
    assert check.returncode == 0, check.stdout + check.stderr
    out = json.loads(check.stdout.strip().splitlines()[-1])
    assert out["feature"] == {"dtype": "bool", "shape": [1], "names": None}
    tagged = np.asarray(out["intervention"])
    span = np.flatnonzero(tagged)
    timeline = (tmp_path / "logs" / "openk_rollout.log").read_text()
    # One contiguous span of about 1.5 s (30 fps), starting about 1.5 s in, with policy rows on
    # both sides.
    assert 30 <= len(span) <= 60 and np.all(np.diff(span) == 1), (tagged, timeline)
    assert 30 <= span[0] <= 60 and span[-1] + 1 < len(tagged), (tagged, timeline)
    # No jump at the handovers: no row-to-row action step near the largest distance travelled.
    action = np.asarray(out["action"])
    steps = np.abs(np.diff(action, axis=0)).max()
    assert steps < 0.5 * np.ptp(action, axis=0).max() + 1e-3
