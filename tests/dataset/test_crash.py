"""Crash safety: SIGKILL mid-episode, interrupted commits, discard leaving no trace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ds_synth import (
    check_lerobot_result,
    features,
    frame_numbers,
    record_episode,
    run_python,
)

from openk.dataset import DatasetWriter, open_dataset, pending_journal, recover, verify
from openk.errors import DatasetError

from ..helpers import tear_last_media_box

HERE = Path(__file__).resolve().parent
FPS = 30
CAMS = {"front": (48, 64)}


def _kill_mid_episode(root: Path, saved: int, rows_before_kill: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent / "python")}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "crash_writer.py"), str(root), str(saved)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    sent = 0
    for line in proc.stdout:
        if line.startswith("ROWS "):
            sent = int(line.split()[1])
            if sent >= rows_before_kill:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert sent >= rows_before_kill, proc.stderr.read() if proc.stderr else ""
    return sent


@pytest.mark.oracle
def test_sigkill_mid_episode_keeps_earlier_episodes_and_recovers_the_journal(
    tmp_path: Path, lerobot_load
) -> None:
    root = tmp_path / "ds"
    sent = _kill_mid_episode(root, saved=2, rows_before_kill=75)

    # lerobot still loads every earlier episode, untouched
    check_lerobot_result(lerobot_load(root, backends=("pyav",)), [20, 20], ["pick", "pick"], CAMS)
    report = verify(root)
    assert not report.ok and "unsaved episode" in str(report)

    pending = pending_journal(root)
    assert len(pending) == 1 and pending[0].task == "interrupted task"
    with pytest.raises(DatasetError, match="unsaved episode"):
        DatasetWriter.resume("openk/test", root=root)

    recovered = recover("openk/test", root, keep=True)
    assert len(recovered) == 1 and recovered[0].episode_index == 2
    length = recovered[0].length
    assert sent - FPS <= length <= sent  # at most ~1 s lost
    assert verify(root).ok, str(verify(root))
    reader = open_dataset(root)
    assert frame_numbers(reader.camera_frames(2, "front")) == list(range(length))
    assert reader.states(2)[:, 0].tolist() == list(range(length))
    check_lerobot_result(
        lerobot_load(root), [20, 20, length], ["pick", "pick", "interrupted task"], CAMS
    )


def test_journal_can_be_discarded_by_choice(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _kill_mid_episode(root, saved=1, rows_before_kill=20)
    assert recover("openk/test", root, keep=False) == []
    assert pending_journal(root) == []
    assert verify(root).ok, str(verify(root))
    assert open_dataset(root).total_episodes == 1


def test_discarded_episode_leaves_no_trace(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with DatasetWriter.create("openk/test", FPS, features(CAMS), root=root, single_task="t") as w:
        record_episode(w, 12, FPS, CAMS)
        w.save_episode(wait=True)
        files_before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        record_episode(w, 15, FPS, CAMS)
        w.discard_episode()
        record_episode(w, 10, FPS, CAMS)
        w.discard_episode()
    files_after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert files_after == files_before
    assert pending_journal(root) == []


def test_commit_interrupted_between_renames_is_finished_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openk.dataset.journal as journal

    root = tmp_path / "ds"
    writer = DatasetWriter.create("openk/test", FPS, features(CAMS), root=root, single_task="t")
    record_episode(writer, 12, FPS, CAMS)
    writer.save_episode(wait=True)
    real_replace = os.replace
    calls = {"n": 0}

    def crash_after_two(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(5, "simulated power cut")
        real_replace(src, dst)

    monkeypatch.setattr(journal.os, "replace", crash_after_two)
    record_episode(writer, 14, FPS, CAMS)
    with pytest.raises(DatasetError, match="simulated power cut"):
        writer.save_episode(wait=True)
    monkeypatch.setattr(journal.os, "replace", real_replace)
    assert (root / ".openk" / "commit.json").exists()
    assert not verify(root).ok

    # the redo log completes the episode on the next open
    DatasetWriter.resume("openk/test", root=root).close()
    assert verify(root).ok, str(verify(root))
    reader = open_dataset(root)
    assert [e["length"] for e in reader.list_episodes()] == [12, 14]
    assert frame_numbers(reader.camera_frames(1, "front")) == list(range(14))


def test_saved_episodes_are_committed_even_without_close(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from ds_synth import features, record_episode\n"
        "from openk.dataset import DatasetWriter\n"
        "cams = {'front': (48, 64)}\n"
        f"w = DatasetWriter.create('o/t', 30, features(cams), root={str(root)!r},\n"
        "                          single_task='t')\n"
        "for _ in range(3):\n"
        "    record_episode(w, 30, 30, cams)\n"
        "    w.save_episode()\n"
        "# the program ends without close()\n"
    )
    run_python("-c", script)
    assert verify(root).ok, str(verify(root))
    assert open_dataset(root).total_episodes == 3


@pytest.mark.oracle
def test_torn_journal_video_keeps_exactly_the_announced_frames(
    tmp_path: Path, lerobot_load
) -> None:
    root = tmp_path / "ds"
    _kill_mid_episode(root, saved=2, rows_before_kill=40)
    (entry,) = pending_journal(root)
    (video,) = entry.path.glob("*.mp4")
    tear_last_media_box(video)
    (entry,) = pending_journal(root)
    assert 0 < entry.length < entry.rows, entry.describe()
    assert f"{entry.length} of its {entry.rows} rows" in entry.describe()

    recovered = recover("openk/test", root, keep=True)
    assert [s.length for s in recovered] == [entry.length]
    assert verify(root).ok, str(verify(root))
    reader = open_dataset(root)
    assert frame_numbers(reader.camera_frames(2, "front")) == list(range(entry.length))
    check_lerobot_result(
        lerobot_load(root), [20, 20, entry.length], ["pick", "pick", "interrupted task"], CAMS
    )


def test_missing_journal_video_is_announced_and_dropped(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _kill_mid_episode(root, saved=1, rows_before_kill=20)
    (entry,) = pending_journal(root)
    for video in entry.path.glob("*.mp4"):
        video.unlink()
    (entry,) = pending_journal(root)
    assert entry.length == 0 and entry.rows >= 20
    assert "nothing can be kept" in entry.describe()
    assert recover("openk/test", root, keep=True) == []
    assert pending_journal(root) == []
    assert verify(root).ok, str(verify(root))
    assert [e["length"] for e in open_dataset(root).list_episodes()] == [20]


@pytest.mark.parametrize("vcodec", ["h264", "libsvtav1"])
def test_count_packets_counts_only_whole_frames_of_a_cut_file(tmp_path: Path, vcodec: str) -> None:
    import av
    import numpy as np

    from openk.dataset.video import CameraEncoder, VideoConfig, count_packets

    enc = CameraEncoder(tmp_path / "v.mp4", 64, 48, FPS, VideoConfig(vcodec=vcodec))
    rng = np.random.default_rng(0)
    for _ in range(24):
        enc.put(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    assert enc.finish().frames == 24
    data = (tmp_path / "v.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    seen = set()
    for size in [*range(0, len(data), max(1, len(data) // 150)), len(data)]:
        cut.write_bytes(data[:size])
        n = count_packets(cut)
        seen.add(n)
        decoded = 0
        if n:
            with av.open(str(cut)) as src:
                stream = src.streams.video[0]
                packets = []
                for p in src.demux(stream):
                    if p.size and p.pts is not None:
                        packets.append(p)
                    if len(packets) == n:
                        break
                for packet in [*packets, None]:
                    decoded += len(stream.decode(packet))
        assert decoded == n, f"cut at {size} of {len(data)} bytes: {n} counted, {decoded} decode"
    assert max(seen) == 24 and len(seen) > 5
