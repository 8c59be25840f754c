"""A tiny ACT trained with lerobot-train on a simulated openk dataset (the `trained_policy`
fixture of tests/conftest.py), and the helpers that run openk and lerobot offline."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ROBOT = "openk-1-alpha_follower"
CAMERA = "--robot.cameras={front: {type: synthetic, width: 64, height: 48}}"
TRAIN_REPO = "tester/policy_train"
TASK = "follow the scripted leader"
# A tiny ACT: random-init ResNet18 (no weights downloaded), one small transformer layer each
# side, chunks of 10 so a 3 s episode crosses several chunk boundaries.
ACT_FLAGS = [
    "--policy.type=act",
    "--policy.pretrained_backbone_weights=null",
    "--policy.dim_model=64",
    "--policy.dim_feedforward=128",
    "--policy.n_heads=2",
    "--policy.n_encoder_layers=1",
    "--policy.n_decoder_layers=1",
    "--policy.latent_dim=8",
    "--policy.chunk_size=10",
    "--policy.n_action_steps=10",
    "--policy.device=cpu",
    "--policy.push_to_hub=false",
]
TRAIN_STEPS = 10

RunIn = Callable[..., subprocess.CompletedProcess[str]]


def offline_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT / "python"),
            "HF_HUB_OFFLINE": "1",
            "HF_LEROBOT_HOME": str(home / "lerobot_home"),
            "WANDB_MODE": "disabled",
            "NO_COLOR": "1",
        }
    )
    env.pop("OPENK_DEBUG", None)
    env.update(extra)
    return env


def sim_record_flags(root: Path, calib: Path) -> list[str]:
    return [
        f"--robot.type={ROBOT}",
        "--robot.port=sim",
        "--robot.id=follower",
        CAMERA,
        f"--robot.calibration_dir={calib}",
        f"--dataset.root={root}",
        f"--dataset.single_task={TASK}",
        "--dataset.push_to_hub=false",
        "--vcodec=h264",
        "--realtime=off",
    ]


def run_cmd(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def train_tiny_act(work: Path, oracle_python: str, robot_flags: Sequence[str] = ()) -> Path:
    """Record 2 × 3 s of teleop on the sim arm with openk (`robot_flags` added after the
    default robot's, e.g. another --robot.type or --robot.state_channels), train ACT on it for
    a few CPU steps with lerobot-train; the checkpoint's pretrained_model folder."""
    calib = work / "calibration"
    dataset = work / "train_ds"
    env = offline_env(work)
    rec = run_cmd(
        [
            sys.executable,
            "-m",
            "openk.cli",
            "record",
            *sim_record_flags(dataset, calib),
            *robot_flags,
            "--teleop.type=openk-1-sts_leader",
            "--teleop.port=sim",
            "--teleop.id=leader",
            f"--teleop.calibration_dir={calib}",
            f"--dataset.repo_id={TRAIN_REPO}",
            "--dataset.num_episodes=2",
            "--dataset.episode_time_s=3",
            "--dataset.reset_time_s=0",
        ],
        work,
        env,
    )
    assert rec.returncode == 0, rec.stdout + rec.stderr
    train_bin = Path(oracle_python).parent / "lerobot-train"
    out = work / "train"
    train = run_cmd(
        [
            str(train_bin),
            f"--dataset.repo_id={TRAIN_REPO}",
            f"--dataset.root={dataset}",
            *ACT_FLAGS,
            f"--steps={TRAIN_STEPS}",
            "--batch_size=4",
            "--num_workers=0",
            f"--save_freq={TRAIN_STEPS}",
            "--log_freq=5",
            "--wandb.enable=false",
            f"--output_dir={out}",
        ],
        work,
        # lerobot must not see openk's sources: it trains on the dataset alone.
        {k: v for k, v in env.items() if k != "PYTHONPATH"},
        timeout=900,
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-6000:]
    ckpt = out / "checkpoints" / "last" / "pretrained_model"
    assert (ckpt / "config.json").is_file(), list(out.rglob("*"))
    return ckpt
