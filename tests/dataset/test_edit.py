"""`openk edit`: lossless, exact and crash-safe edits of openk's and lerobot's datasets."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ds_synth import features, record_episode

from openk.dataset import DatasetWriter, meta, verify
from openk.dataset import edit as ops
from openk.dataset.reader import DatasetReader, open_dataset
from openk.dataset.remux import _read_packets
from openk.dataset.stats import aggregate, from_jsonable, numeric_stats
from openk.errors import DatasetError

from ..helpers import wait_until

FPS = 30
CAMS = {"front": (48, 64), "wrist": (48, 64)}
LENGTHS = [12, 9, 10, 8]
TASKS = ["pick", "place", "pick", "place"]
REFERENCE = Path(__file__).resolve().parent.parent / "data" / "dataset" / "lerobot_reference"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synth_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edit") / "master"
    writer = DatasetWriter.create(
        "openk/test", FPS, features(CAMS), root=root, robot_type="openk-1-alpha_follower"
    )
    with writer:
        for i, (n, task) in enumerate(zip(LENGTHS, TASKS, strict=True)):
            record_episode(writer, n, FPS, CAMS, task=task)
            writer.save_episode({"openk_loop": {"episode_tag": i}})
    assert verify(root).ok
    return root


@pytest.fixture
def synth(synth_master: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(synth_master, root)
    return root


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    root = tmp_path / "ref"
    shutil.copytree(REFERENCE, root)
    return root


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def packets(root: Path, episode: int, key: str) -> list[bytes]:
    src = ops.Source(root)
    ep = src.episodes[episode]
    first = src.video_first_frame(key, ep)
    pkts, _ = _read_packets(src.video_path(key, ep), src.fps)
    return [bytes(p.packet) for p in pkts if first <= p.frame < first + int(ep["length"])]


def check_exact(root: Path) -> None:
    """verify passes; stats.json is the aggregate of the per-episode stats; per-episode
    numeric stats equal those computed from the rows; episodes' files are consistent."""
    report = verify(root)
    assert report.ok, str(report)
    src = ops.Source(root)
    total = from_jsonable(json.loads((root / meta.STATS_PATH).read_text()))
    for key, feat in src.features.items():
        if feat["dtype"] == "string":
            continue
        per = [{n: np.asarray(ep[f"stats/{key}/{n}"]) for n in total[key]} for ep in src.episodes]
        want = aggregate(per)
        for name in total[key]:
            np.testing.assert_allclose(total[key][name], want[name], rtol=1e-12, err_msg=key)
        if feat["dtype"] in ("video", "image"):
            continue
        for e in range(src.total_episodes):
            col = src.rows(e).column(key).combine_chunks()
            values = np.asarray(col.flatten() if hasattr(col, "flatten") else col)
            from_rows = numeric_stats(values.reshape(src.rows(e).num_rows, -1))
            for name, value in from_rows.items():
                np.testing.assert_allclose(per[e][name].reshape(value.shape), value, rtol=1e-12)


def state0(root: Path, episode: int) -> list[float]:
    return [float(x) for x in open_dataset(root).states(episode)[:, 0]]


def test_delete_in_place_copies_packets_and_renumbers(synth: Path, synth_master: Path) -> None:
    report = ops.apply_in_place(ops.plan_delete(ops.Source(synth), [1, 2]), synth)
    assert report.reencoded == 0
    check_exact(synth)
    reader = open_dataset(synth)
    assert [e["length"] for e in reader.list_episodes()] == [12, 8]
    assert [e["tasks"] for e in reader.list_episodes()] == [["pick"], ["place"]]
    assert reader.tasks == ["pick", "place"]
    for new, old in ((0, 0), (1, 3)):
        for key in ("observation.images.front", "observation.images.wrist"):
            assert packets(synth, new, key) == packets(synth_master, old, key)
            np.testing.assert_array_equal(
                reader.camera_frames(new, key), open_dataset(synth_master).camera_frames(old, key)
            )
    rows = reader.episode_table(1)
    assert rows.column("index").to_pylist() == list(range(12, 20))
    assert set(rows.column("episode_index").to_pylist()) == {1}
    # openk's telemetry followed its episode
    extras = [
        json.loads(line) for line in (synth / meta.EXTRAS_PATH).read_text().splitlines() if line
    ]
    assert [(x["episode_index"], x["metadata"]["openk_loop"]["episode_tag"]) for x in extras] == [
        (0, 0),
        (1, 3),
    ]
    assert not list(synth.parent.glob(".ds.openk-edit*"))


def test_trim_reencodes_only_the_cut_gop(synth: Path, synth_master: Path) -> None:
    plan = ops.plan_trim(ops.Source(synth), 0, 0.1, 0.3)  # frames 3..8: 3 is inside a GOP
    assert plan.video_work() == {"observation.images.front": 1, "observation.images.wrist": 1}
    report = ops.apply_in_place(plan, synth)
    assert report.reencoded == 2
    check_exact(synth)
    assert state0(synth, 0) == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert open_dataset(synth).episode_table(0).column("frame_index").to_pylist() == list(range(6))
    key = "observation.images.front"
    new = open_dataset(synth).camera_frames(0, key)
    old = open_dataset(synth_master).camera_frames(0, key)[3:9]
    # frames 4.. were copied: bit-identical; frame 3 was re-encoded: close
    np.testing.assert_array_equal(new[1:], old[1:])
    assert np.abs(new[0].astype(int) - old[0].astype(int)).mean() < 8
    assert packets(synth, 0, key)[1:] == packets(synth_master, 0, key)[4:9]
    for e in (1, 2, 3):
        assert packets(synth, e, key) == packets(synth_master, e, key)
    extras = (synth / meta.EXTRAS_PATH).read_text().splitlines()
    assert json.loads(extras[0])["trimmed"] == {"from_frame": 3, "to_frame": 9}


def test_trim_at_keyframe_copies_everything(synth: Path) -> None:
    report = ops.apply_in_place(ops.plan_trim(ops.Source(synth), 1, 2 / FPS, None), synth)
    assert report.reencoded == 0
    check_exact(synth)
    assert state0(synth, 1)[0] == 2.0


def test_trim_idle_drops_still_frames(synth_master: Path, tmp_path: Path) -> None:
    src = ops.Source(synth_master)
    start, stop = ops.idle_bounds(np.array([[0.0], [0.0], [0.0], [1.0], [2.0], [2.0], [2.0]]), 0.1)
    assert (start, stop) == (2, 5)
    plan = ops.plan_trim_idle(src, 0.5)
    assert "within 0.5" in plan.describe()


def test_retask_split_and_merge_back(synth: Path, synth_master: Path, tmp_path: Path) -> None:
    ops.apply_in_place(ops.plan_retask(ops.Source(synth), [0, 3], "stack"), synth)
    check_exact(synth)
    assert open_dataset(synth).tasks == ["stack", "place", "pick"]
    out = tmp_path / "moved"
    stay, moved = ops.plan_split(ops.Source(synth), [1, 3])
    ops.write_new(moved, out)
    ops.apply_in_place(stay, synth)
    check_exact(out)
    check_exact(synth)
    assert [e["length"] for e in open_dataset(out).list_episodes()] == [9, 8]
    assert [e["length"] for e in open_dataset(synth).list_episodes()] == [12, 10]
    merged = tmp_path / "merged"
    report = ops.write_new(ops.plan_merge([ops.Source(synth), ops.Source(out)]), merged)
    assert report.reencoded == 0
    check_exact(merged)
    reader = open_dataset(merged)
    assert [e["length"] for e in reader.list_episodes()] == [12, 10, 9, 8]
    assert [e["tasks"][0] for e in reader.list_episodes()] == ["stack", "pick", "place", "stack"]
    for new, old in ((0, 0), (1, 2), (2, 1), (3, 3)):
        assert packets(merged, new, "observation.images.wrist") == packets(
            synth_master, old, "observation.images.wrist"
        )
    # merged stats: lengths add up, means are the count-weighted means
    stats = json.loads((merged / meta.STATS_PATH).read_text())
    assert stats["action"]["count"] == [39]


def test_bad_requests_change_nothing(synth: Path, reference: Path) -> None:
    before = tree(synth)
    src = ops.Source(synth)
    with pytest.raises(DatasetError, match="episode\\(s\\) 7 do not exist"):
        ops.plan_delete(src, [1, 7])
    with pytest.raises(DatasetError, match="empty dataset"):
        ops.plan_delete(src, [0, 1, 2, 3])
    with pytest.raises(DatasetError, match="outside the episode"):
        ops.plan_trim(src, 0, 0.2, 5.0)
    with pytest.raises(DatasetError, match="robot_type is 'openk-1-alpha_follower'"):
        ops.plan_merge([src, ops.Source(reference)])
    info = json.loads((reference / meta.INFO_PATH).read_text())
    info["robot_type"] = "openk-1-alpha_follower"
    (reference / meta.INFO_PATH).write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="features differ"):
        ops.plan_merge([src, ops.Source(reference)])
    with pytest.raises(DatasetError, match="not empty"):
        ops.write_new(ops.plan_delete(src, [1]), synth)
    assert tree(synth) == before


def test_lerobot_reference_edits(reference: Path, tmp_path: Path) -> None:
    original = ops.Source(reference)
    merged = tmp_path / "merged"
    assert ops.write_new(ops.plan_merge([original, original]), merged).reencoded == 0
    check_exact(merged)
    key = "observation.images.cam_main"
    assert packets(merged, 3, key) == packets(reference, 1, key)
    report = ops.apply_in_place(ops.plan_trim(original, 1, 0.1, 1.5), reference)
    assert report.reencoded == 1
    check_exact(reference)
    assert open_dataset(reference).list_episodes()[1]["length"] == 42
    ops.apply_in_place(ops.plan_delete(ops.Source(reference), [0]), reference)
    check_exact(reference)
    assert open_dataset(reference).total_episodes == 1


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openk.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "python"), **env},
        timeout=300,
        check=False,
    )


def test_cli_dry_run_and_errors(synth: Path) -> None:
    before = tree(synth)
    proc = _cli("edit", "delete", str(synth), "--episodes", "1,2", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "delete episode(s) 1,2 (19 frames)" in proc.stdout
    assert "dry run: nothing was written" in proc.stdout
    proc = _cli("edit", "delete", str(synth), "--episodes", "9")
    assert proc.returncode == 1
    assert "episode(s) 9 do not exist" in proc.stderr
    assert tree(synth) == before
    proc = _cli("edit", "retask", str(synth), "--episodes", "0", "--task", "wave")
    assert proc.returncode == 0, proc.stderr
    assert open_dataset(synth).tasks[0] == "wave"


@pytest.mark.parametrize("point", ops.CRASH_POINTS)
def test_kill_during_in_place_edit_leaves_old_or_new(
    synth: Path, synth_master: Path, point: str
) -> None:
    before = tree(synth)
    proc = _cli("edit", "delete", str(synth), "--episodes", "1", OPENK_EDIT_CRASH_AT=point)
    assert proc.returncode == -9, proc.stderr
    # the next command finishes or undoes the half swap
    proc = _cli("verify", str(synth))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list(synth.parent.glob(".ds.openk-edit*"))
    if ops.CRASH_POINTS.index(point) < ops.CRASH_POINTS.index("marked"):
        assert tree(synth) == before
    else:
        check_exact(synth)
        assert [e["length"] for e in open_dataset(synth).list_episodes()] == [12, 10, 8]


@pytest.mark.parametrize("first", ["source", "output"])
@pytest.mark.parametrize("point", ops.SPLIT_CRASH_POINTS)
def test_kill_during_split_leaves_old_or_new_never_both(
    synth: Path, tmp_path: Path, point: str, first: str
) -> None:
    before = tree(synth)
    out = tmp_path / "moved"
    proc = _cli(
        "edit", "split", str(synth), "--episodes", "1,3", "--output", str(out),
        OPENK_EDIT_CRASH_AT=point,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stdout + proc.stderr
    committed = ops.SPLIT_CRASH_POINTS.index(point) >= ops.SPLIT_CRASH_POINTS.index("marked")
    if committed:
        # a reader is refused either dataset while their episodes may be in both
        for root in (synth, out):
            with pytest.raises(DatasetError, match=f"run `openk verify {root}`"):
                DatasetReader(root)
    # the next command, on the dataset or on the output, finishes or undoes the split
    proc = _cli("verify", str(synth if first == "source" else out))
    said = proc.stdout + proc.stderr
    if committed or first == "source":
        assert proc.returncode == 0, said
    if first == "output":
        verb = "finished an interrupted edit" if committed else "dropped an unfinished edit"
        assert f"{synth}: {verb}" in said
        if not committed:
            assert f"nothing was split off to {out}" in said
    assert not list(synth.parent.glob(".ds.openk-edit*"))
    assert not list(out.parent.glob(".moved.openk-edit*"))
    if not committed:
        # the old dataset, whole; no output (no episode is in two places)
        assert tree(synth) == before
        assert not out.exists()
    else:
        check_exact(synth)
        check_exact(out)
        assert [e["length"] for e in open_dataset(synth).list_episodes()] == [12, 10]
        assert [e["length"] for e in open_dataset(out).list_episodes()] == [9, 8]


def _stopped(pid: int) -> bool:
    """Whether process `pid` is stopped (SIGSTOP), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("point", ["built", "marked"])
def test_verify_leaves_a_running_split_alone(synth: Path, tmp_path: Path, point: str) -> None:
    # The split stops itself (SIGSTOP) with both datasets built (and, at "marked", committed):
    # alive, not crashed. `openk verify` on either dataset must neither drop nor finish it.
    out = tmp_path / "moved"
    proc = subprocess.Popen(
        [sys.executable, "-m", "openk.cli", "edit", "split", str(synth), "--episodes", "1,3",
         "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "python"), "OPENK_EDIT_PAUSE_AT": point},
    )  # fmt: skip
    try:
        wait_until(lambda: _stopped(proc.pid), f"the split paused at {point!r}")
        builds = sorted(tmp_path.glob(".*.openk-edit-*"))
        for target in (out, synth):
            verified = _cli("verify", str(target))
            said = verified.stdout + verified.stderr
            assert verified.returncode == 1, said
            assert f"is being written by process {proc.pid} (openk edit split" in said, said
            assert "finished" not in said and "dropped" not in said, said
        assert sorted(tmp_path.glob(".*.openk-edit-*")) == builds  # untouched
    finally:
        proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert not list(tmp_path.glob(".*.openk-*"))
    check_exact(synth)
    check_exact(out)
    assert [e["length"] for e in open_dataset(synth).list_episodes()] == [12, 10]
    assert [e["length"] for e in open_dataset(out).list_episodes()] == [9, 8]


_ORACLE_ITERATE = r"""
import json, os
from lerobot.datasets.lerobot_dataset import LeRobotDataset
out = {}
for root in json.loads(os.environ["ROOTS"]):
    ds = LeRobotDataset("openk/edited", root=root, video_backend="pyav")
    items = [ds[i] for i in range(len(ds))]
    out[root] = {
        "len": len(ds), "episodes": ds.meta.total_episodes,
        "state0": [float(x["observation.state"][0]) for x in items],
        "ep": [int(x["episode_index"]) for x in items],
        "tasks": sorted({x["task"] for x in items}),
    }
print(json.dumps(out))
"""


@pytest.mark.oracle
def test_lerobot_loads_edited_datasets(
    synth: Path, reference: Path, tmp_path: Path, run_oracle: Any
) -> None:
    ops.apply_in_place(ops.plan_trim(ops.Source(synth), 0, 0.1, None), synth)
    ops.apply_in_place(ops.plan_delete(ops.Source(synth), [2]), synth)
    merged = tmp_path / "merged"
    ops.write_new(ops.plan_merge([ops.Source(reference), ops.Source(reference)]), merged)
    expected = state0(reference, 0) + state0(reference, 1)[3:]
    ops.apply_in_place(ops.plan_trim(ops.Source(reference), 1, 0.1, None), reference)
    result = run_oracle(
        _ORACLE_ITERATE,
        ROOTS=json.dumps([str(synth), str(merged), str(reference)]),
        HF_HUB_OFFLINE="1",
    )
    got = result[str(synth)]
    assert got["len"] == 9 + 9 + 8 and got["episodes"] == 3
    assert got["state0"] == [float(x) for x in [*range(3, 12), *range(9), *range(8)]]
    assert result[str(merged)]["len"] == 240 and result[str(merged)]["episodes"] == 4
    assert result[str(reference)]["len"] == 117
    assert result[str(reference)]["state0"] == pytest.approx(expected, abs=1e-6)


def test_h264_and_png_datasets(tmp_path: Path) -> None:
    from openk.dataset import VideoConfig

    cams = {"front": (48, 64)}
    for name, kwargs in (
        ("h264", {"video": VideoConfig(vcodec="h264", isolate=False)}),
        ("png", {}),
    ):
        root = tmp_path / name
        writer = DatasetWriter.create(
            "openk/test", FPS, features(cams, video=name != "png"), root=root, **kwargs
        )
        with writer:
            for n in (10, 9):
                record_episode(writer, n, FPS, cams, task="pick")
                writer.save_episode()
        (root / "NOTES.txt").write_text("kept")
        before = open_dataset(root).camera_frames(0, "observation.images.front")
        report = ops.apply_in_place(ops.plan_trim(ops.Source(root), 0, 0.1, None), root)
        assert report.reencoded == (1 if name == "h264" else 0)
        check_exact(root)
        after = open_dataset(root).camera_frames(0, "observation.images.front")
        np.testing.assert_array_equal(after[1:], before[4:])
        assert state0(root, 0) == [float(x) for x in range(3, 10)]
        assert (root / "NOTES.txt").read_text() == "kept"


def test_interrupted_recording_must_be_recovered_first(synth: Path) -> None:
    (synth / ".openk").mkdir(exist_ok=True)
    (synth / ".openk" / "commit.json").write_text("{}")
    with pytest.raises(DatasetError, match="openk recover"):
        ops.Source(synth)


def test_cli_trim_idle_prints_its_threshold(synth: Path) -> None:
    proc = _cli("edit", "trim", str(synth), "--idle", "--idle-threshold", "0.25", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "trim idle frames: action within 0.25 of the first/last frame" in proc.stdout
    proc = _cli("edit", "trim", str(synth), "--idle-threshold", "0.25", "--episode", "0")
    assert proc.returncode == 1 and "only applies with --idle" in proc.stderr


def test_cli_accepts_repo_ids(synth: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "me").mkdir(parents=True)
    shutil.copytree(synth, home / "me" / "a")
    env = {"HF_LEROBOT_HOME": str(home)}
    proc = _cli("edit", "delete", "me/a", "--episodes", "0", **env)
    assert proc.returncode == 0, proc.stderr
    proc = _cli("edit", "merge", "me/a", str(synth), "--repo-id", "me/merged", **env)
    assert proc.returncode == 0, proc.stderr
    assert [e["length"] for e in open_dataset(home / "me" / "merged").list_episodes()] == [
        9,
        10,
        8,
        *LENGTHS,
    ]
    proc = _cli("edit", "merge", "me/a", "me/a", "--repo-id", "me/x", "--output", "y", **env)
    assert proc.returncode == 2 and "give --output DIR or --repo-id ID" in proc.stderr


def test_in_place_through_a_symlink_edits_the_target(synth: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(synth)
    ops.apply_in_place(ops.plan_delete(ops.Source(link), [0]), link)
    assert link.is_symlink()
    assert open_dataset(synth).total_episodes == 3
    check_exact(synth)


def test_rolled_files_and_chunks(tmp_path: Path) -> None:
    cams = {"front": (48, 64)}
    root = tmp_path / "rolled"
    writer = DatasetWriter.create(
        "openk/test",
        FPS,
        features(cams),
        root=root,
        data_files_size_in_mb=0.001,
        video_files_size_in_mb=0.001,
        chunks_size=2,
    )
    with writer:
        for n in (10, 9, 8, 7):
            record_episode(writer, n, FPS, cams, task="pick")
            writer.save_episode()
    master = tmp_path / "master"
    shutil.copytree(root, master)
    ops.apply_in_place(ops.plan_delete(ops.Source(root), [1]), root)
    check_exact(root)
    src = ops.Source(root)
    assert [(e["data/chunk_index"], e["data/file_index"]) for e in src.episodes] == [
        (0, 0),
        (0, 1),
        (1, 0),
    ]
    key = "observation.images.front"
    assert [
        (e[f"videos/{key}/chunk_index"], e[f"videos/{key}/file_index"]) for e in src.episodes
    ] == [
        (0, 0),
        (0, 1),
        (1, 0),
    ]
    for new, old in ((0, 0), (1, 2), (2, 3)):
        assert packets(root, new, key) == packets(master, old, key)
