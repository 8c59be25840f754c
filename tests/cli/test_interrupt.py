"""Ctrl-C (SIGINT) and `kill` (SIGTERM) during `openk record` keep every finished episode and
the rows of the one in progress; the dataset stays valid."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from openk.dataset import open_dataset, pending_journal
from openk.dataset.writer import WRITER_CRASH_POINTS

from ..helpers import tear_last_media_box, wait_until
from .conftest import REPO_ROOT, _env
from .scripted_record import FIRST_EPISODE_ROWS

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_signal_mid_episode_keeps_finished_episodes(tmp_path: Path, sig: signal.Signals) -> None:
    proc = recording_episode_2(tmp_path, capture=True)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "interrupted: kept episode 1" in out
    meta = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert meta["total_episodes"] == 2
    _check_verify(tmp_path / "ds")


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env(env),
        cwd=cwd,
        timeout=300,
        check=False,
    )


def _openk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "openk.cli", *args], cwd)


def _check_verify(root: Path) -> None:
    verified = _openk("verify", str(root), cwd=root.parent)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def recording_episode_2(tmp_path: Path, *, capture: bool) -> subprocess.Popen[str]:
    """The scripted `openk record` into tmp_path/ds, returned once its episode 2 has rows in
    the writer. Episode 1 ends after 15 rows; episode 2 would last two minutes, so it surely
    still records when the test acts, however slow the machine. `capture`: its stdout and
    stderr are pipes (read them with `communicate`), else discarded."""
    log = tmp_path / "rec.log"
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen(
        _scripted(tmp_path, "--dataset.num_episodes=5", "--dataset.episode_time_s=120"),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        text=True,
        env=_env({FIRST_EPISODE_ROWS: "15"}),
        cwd=tmp_path,
    )
    try:
        wait_until(
            lambda: log.exists() and log.read_text().count("started (dataset episode") >= 2,
            "episode 2 started",
            details=lambda: log.read_text() if log.exists() else "(no log)",
        )
        wait_until(lambda: newest_episode_rows(tmp_path / "ds"), "episode 2 has rows in the writer")
        # Episode 1 is committed in the background while episode 2 records; on a loaded
        # machine that takes a while. The tests act on a recording whose episode 1 is in.
        wait_until(lambda: committed_episodes(tmp_path / "ds") == 1, "episode 1 is committed")
    except BaseException:
        proc.kill()
        proc.wait(timeout=60)
        raise
    return proc


def committed_episodes(root: Path) -> int:
    """Episodes the dataset's metadata counts (0 before the first commit)."""
    info = root / "meta" / "info.json"
    return int(json.loads(info.read_text())["total_episodes"]) if info.exists() else 0


def newest_episode_rows(root: Path) -> int:
    """Rows the writer holds for the episode it started last (the newest journal entry)."""
    journal = pending_journal(root)
    return journal[-1].rows if journal else 0


def _scripted(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(HERE / "scripted_record.py"),
        f"--config_path={REPO_ROOT / 'config' / 'record_sim.yaml'}",
        f"--dataset.root={tmp_path / 'ds'}",
        "--dataset.episode_time_s=1.5",
        "--dataset.reset_time_s=0.2",
        "--robot.cameras={front: {type: synthetic, width: 160, height: 120}}",
        "--vcodec=h264",
        f"--log_file={tmp_path / 'rec.log'}",
        *extra,
    ]


# What a recovery announces must be exactly what it keeps. The journal's camera video of an
# episode cut by SIGKILL can be missing (killed before the encoder wrote a frame), torn in its
# last fragment, or whole; the rows journal usually runs ahead of it.
_KEEPING = re.compile(r"keeping the interrupted episode: (.*)")
_KEPT = re.compile(r"task '[^']*', (\d+) (?:frames|of its \d+ rows)")


def _journal_video(root: Path) -> Path:
    (entry,) = pending_journal(root)  # waits until no encoder process writes the file any more
    (video,) = entry.path.glob("*.mp4")
    return video


def _resume_and_check(tmp_path: Path, kept_before: int) -> subprocess.CompletedProcess[str]:
    resumed = _run(_scripted(tmp_path, "--dataset.num_episodes=1", "--resume=true"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    root = tmp_path / "ds"
    lengths = [e["length"] for e in open_dataset(root).list_episodes()]
    keeping = _KEEPING.search(resumed.stdout)
    announced = [int(n) for n in _KEPT.findall(keeping.group(1))] if keeping else []
    # exactly the announced episodes, with the announced lengths, between the earlier ones
    # and the new one
    assert len(lengths) == kept_before + len(announced) + 1, (lengths, resumed.stdout)
    assert lengths[kept_before:-1] == announced, (lengths, resumed.stdout)
    if not announced:
        assert "dropping the interrupted episode" in resumed.stdout, resumed.stdout
    assert pending_journal(root) == []
    _check_verify(root)
    return resumed


@pytest.mark.parametrize("video", ["missing", "torn", "as-left"])
def test_kill_9_resume_keeps_what_it_announces(tmp_path: Path, video: str) -> None:
    proc = recording_episode_2(tmp_path, capture=False)
    root = tmp_path / "ds"
    try:
        wait_until(
            lambda: any(ep.saved is None and ep.length > 10 for ep in pending_journal(root)),
            "the journal holds rows and camera frames of episode 2",
        )
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert committed_episodes(root) == 1
    before = open_dataset(root).list_episodes()
    video_file = _journal_video(root)
    if video == "missing":  # killed before the encoder wrote its first fragment
        video_file.unlink()
    elif video == "torn":
        tear_last_media_box(video_file)
    resumed = _resume_and_check(tmp_path, kept_before=1)
    if video == "missing":
        assert "nothing can be kept" in resumed.stdout, resumed.stdout
        assert "keeping" not in resumed.stdout, resumed.stdout
    # the finished episode is untouched
    assert open_dataset(root).list_episodes()[0] == before[0]


@pytest.mark.parametrize("point", WRITER_CRASH_POINTS)
def test_kill_9_during_commit_keeps_what_it_announces(tmp_path: Path, point: str) -> None:
    # Episode 1 ends after 15 rows; its commit kills the process at `point`.
    proc = _run(
        _scripted(tmp_path, "--dataset.num_episodes=2"),
        tmp_path,
        {FIRST_EPISODE_ROWS: "15", "OPENK_WRITER_CRASH_AT": point},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    root = tmp_path / "ds"
    committed = point == "logged"  # past the redo log: the resume finishes the commit
    _resume_and_check(tmp_path, kept_before=1 if committed else 0)
    lengths = [e["length"] for e in open_dataset(root).list_episodes()]
    if committed:
        assert lengths[0] == 15, lengths


def test_port_lost_mid_episode_says_so_and_keeps_finished_episodes(tmp_path: Path) -> None:
    # The real native session on the simulated arm; the follower's port disappears (the sim
    # pty closes) once episode 2 has 20 rows.
    root = tmp_path / "ds"
    proc = _run(
        [
            sys.executable,
            str(HERE / "unplug_record.py"),
            f"--config_path={REPO_ROOT / 'config' / 'record_sim.yaml'}",
            f"--dataset.root={root}",
            "--dataset.num_episodes=3",
            "--dataset.episode_time_s=2",
            "--dataset.reset_time_s=0.2",
            "--robot.cameras={front: {type: synthetic, width: 160, height: 120}}",
            "--vcodec=h264",
            f"--robot.calibration_dir={tmp_path / 'calibration'}",
            f"--teleop.calibration_dir={tmp_path / 'calibration'}",
            f"--log_file={tmp_path / 'rec.log'}",
        ],
        tmp_path,
        {"OPENK_TEST_UNPLUG_AFTER_ROWS": "20"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("openk: error:")]
    assert "disconnected" in error and "/dev/pts/" in error, proc.stderr
    assert f"the 1 finished episode(s) are kept in {root}" in error, error
    assert f"`openk recover {root}` offers it back" in error, error
    assert "Traceback" not in proc.stderr
    assert next(e["length"] for e in open_dataset(root).list_episodes()) > 0
    assert committed_episodes(root) == 1

    # the episode set aside comes back with exactly the rows announced
    recovered = _openk("recover", str(root), cwd=tmp_path)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    keeping = _KEEPING.search(recovered.stdout)
    assert keeping is not None, recovered.stdout
    lengths = [e["length"] for e in open_dataset(root).list_episodes()]
    assert lengths[1:] == [int(n) for n in _KEPT.findall(keeping.group(1))], recovered.stdout
    assert lengths[1] >= 20, lengths  # closing the writer gave every row its camera frame
    _check_verify(root)
