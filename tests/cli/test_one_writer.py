"""One writer per dataset: while `openk record` writes a dataset, a second `openk record`
(new or --resume), an edit and a recovery of it are refused naming the recording's pid (so is
`openk view`: the episode being recorded is not an interrupted one), `openk verify` says a
recording is in progress instead of reporting it broken, and the first recording finishes
intact."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from .conftest import REPO_ROOT, one_line_error
from .test_interrupt import _check_verify, _openk, newest_episode_rows, recording_episode_2


def test_second_writer_is_refused_while_recording(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    first = recording_episode_2(tmp_path, capture=True)
    try:
        record = [
            "record",
            f"--config_path={REPO_ROOT / 'config' / 'record_sim.yaml'}",
            f"--dataset.root={root}",
            "--robot.cameras={front: {type: synthetic, width: 160, height: 120}}",
            "--dataset.num_episodes=1",
        ]
        attempts = {
            "record --resume": _openk(*record, "--resume=true", cwd=tmp_path),
            "record": _openk(*record, cwd=tmp_path),
            "edit": _openk("edit", "delete", str(root), "--episodes", "0", cwd=tmp_path),
            "recover": _openk("recover", str(root), cwd=tmp_path),
            # readers of the whole dataset say why, instead of "an interrupted recording"
            "edit --output": _openk(
                "edit", "delete", str(root), "--episodes", "0", "--output", "out", cwd=tmp_path
            ),
            "view": _openk("view", str(root), "--no-browser", "--port", "0", cwd=tmp_path),
        }
        for what, proc in attempts.items():
            error = one_line_error(proc)
            assert f"is being written by process {first.pid} (" in error, (what, error)
            assert "wait for it to finish or stop it" in error, (what, error)
        verified = _openk("verify", str(root), cwd=tmp_path)
        said = verified.stdout + verified.stderr
        assert verified.returncode != 0, said
        assert f"process {first.pid}" in said and "in progress" in said, said
        assert "problem:" not in said, said  # the running episode's journal is no damage
        assert newest_episode_rows(root) > 0  # the episode in progress is still there
    except BaseException:
        first.kill()
        raise
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "interrupted: kept episode 1" in out
    assert json.loads((root / "meta" / "info.json").read_text())["total_episodes"] == 2
    _check_verify(root)
    assert not (tmp_path / ".ds.openk-lock").exists()  # released at the end
    # and the next writer may go
    edited = _openk("edit", "retask", str(root), "--episodes", "0", "--task", "wave", cwd=tmp_path)
    assert edited.returncode == 0, edited.stdout + edited.stderr


def test_writer_killed_with_sigkill_blocks_nobody(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    first = recording_episode_2(tmp_path, capture=False)
    first.kill()
    first.wait(timeout=60)
    lock = tmp_path / ".ds.openk-lock"
    assert lock.read_text().startswith(f"{first.pid}\n")  # left behind by the killed process
    recovered = _openk("recover", str(root), cwd=tmp_path)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "recovered" in recovered.stdout or "dropping" in recovered.stdout, recovered.stdout
    assert not lock.exists()
    _check_verify(root)
