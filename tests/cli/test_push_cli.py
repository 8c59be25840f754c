"""`openk push` and `openk record --dataset.push_to_hub=true` against the loopback fake Hub."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import openk.commands.record as rec
from openk.config import RecordConfig, parse_config
from openk.session import Events
from openk.terminal import Key, StatusLine

from .conftest import REPO_ROOT, WRITE_TOKEN, FakeHub, _env, hub_env, one_line_error
from .fakes import ScriptedSession

REPO = "tester/openk_cli_push"


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openk.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def recorded_dataset(tmp_path: Path) -> Path:
    cfg = parse_config(
        RecordConfig,
        [
            "--robot.type=openk-1-alpha_follower",
            "--robot.port=sim",
            "--teleop.type=openk-1-sts_leader",
            "--teleop.port=sim",
            f"--dataset.repo_id={REPO}",
            "--dataset.single_task=pick",
            f"--dataset.root={tmp_path / 'ds'}",
            "--dataset.push_to_hub=false",
            "--dataset.episode_time_s=60",
            f"--log_file={tmp_path / 'rec.log'}",
        ],
    )
    events = Events()
    keys: dict[tuple[int, int], Any] = {(1, 9): Key.RIGHT, (2, 6): Key.RIGHT}
    rec.record(
        cfg,
        session_factory=lambda c: ScriptedSession(on_key=events.on_key, keys=keys),
        ui=StatusLine(io.StringIO()),
        events=events,
    )
    return tmp_path / "ds"


def test_openk_push_uploads_with_the_v3_tag(hub: FakeHub, tmp_path: Path) -> None:
    root = recorded_dataset(tmp_path)
    proc = run(hub_env(hub, tmp_path), tmp_path, "push", str(root), f"--repo-id={REPO}")
    assert proc.returncode == 0, proc.stderr
    assert "pushed" in proc.stdout
    repo = hub.repo(REPO)
    assert "v3.0" in repo.tags
    assert WRITE_TOKEN not in proc.stdout + proc.stderr


def test_push_without_a_token_keeps_the_dataset_and_prints_the_retry(
    hub: FakeHub, tmp_path: Path
) -> None:
    root = recorded_dataset(tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    proc = run(hub_env(hub, tmp_path, token=None), tmp_path, "push", str(root), f"--repo-id={REPO}")
    line = one_line_error(proc)
    assert f"openk push {root} --repo-id {REPO}" in line
    after = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert before == after


def test_push_of_a_folder_needs_a_repo_id(tmp_path: Path) -> None:
    root = recorded_dataset(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "openk.cli", "push", str(root)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        check=False,
    )
    assert "add --repo-id=" in one_line_error(proc)


def test_record_pushes_at_the_end_when_asked(hub: FakeHub, tmp_path: Path) -> None:
    recorded = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parent / "scripted_record.py"),
            f"--config_path={REPO_ROOT / 'config' / 'record_sim.yaml'}",
            f"--dataset.repo_id={REPO}",
            f"--dataset.root={tmp_path / 'ds'}",
            "--dataset.num_episodes=1",
            "--dataset.episode_time_s=1",
            "--dataset.push_to_hub=true",
            "--dataset.private=true",
            "--dataset.tags=[openk, sim]",
            "--robot.cameras={}",
            f"--log_file={tmp_path / 'rec.log'}",
        ],
        capture_output=True,
        text=True,
        env=hub_env(hub, tmp_path),
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert recorded.returncode == 0, recorded.stderr + recorded.stdout
    assert "pushing" in recorded.stdout and "pushed:" in recorded.stdout
    repo = hub.repo(REPO)
    assert "v3.0" in repo.tags
    assert repo.private is True
    assert WRITE_TOKEN not in recorded.stdout + recorded.stderr
    assert WRITE_TOKEN not in (tmp_path / "rec.log").read_text()
