"""Camera/row matching (never drop, repeat and count), statistics, and the camera helpers."""

from __future__ import annotations

import itertools
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ds_synth import features, frame_numbers, make_batch, record_episode

from openk.cameras import (
    CaptureThread,
    OpenCVCamera,
    SyntheticCamera,
    read_synthetic_number,
    synthetic_frame,
)
from openk.dataset import DatasetWriter, open_dataset, verify
from openk.errors import ConfigError

from ..helpers import wait_until

FPS = 30
CAMS = {"front": (48, 64)}
DATA = Path(__file__).resolve().parent.parent / "data" / "dataset"
PERIOD = 1_000_000_000 // FPS


def test_each_row_gets_the_latest_frame_at_or_before_it_and_repeats_are_counted(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ds"
    t0 = time.monotonic_ns() + 10**10  # stamps in the future: no lag-based matching
    with DatasetWriter.create("o/t", FPS, features(CAMS), root=root, single_task="t") as w:
        w.start_episode()
        # frames for rows 0..29 except 10-14 (camera stalled) and two frames for row 20
        for k in range(30):
            if 10 <= k < 15:
                continue
            w.add_camera_frame("front", synthetic_frame(k, 48, 64), t0 + k * PERIOD - 1000)
            if k == 20:
                w.add_camera_frame("front", synthetic_frame(99, 48, 64), t0 + k * PERIOD - 500)
        w.add_rows(make_batch(0, 30, t0, FPS))
        # The live count (the status line's) reaches the final one while still recording.
        wait_until(
            lambda: w.camera_repeats() == {"observation.images.front": 5},
            "the live count reached 5 repeats",
            details=lambda: str(w.camera_repeats()),
        )
        summary = w.save_episode(wait=True)
        assert w.camera_repeats() == {}  # no episode in progress
    assert summary.repeated_frames == {"observation.images.front": 5}
    got = frame_numbers(open_dataset(root).camera_frames(0, "front"))
    want = [k if not 10 <= k < 15 else 9 for k in range(30)]
    want[20] = 99  # the newest frame at or before the row wins
    assert got == want
    assert len(got) == 30  # exactly one video frame per row
    extras = (root / "meta/openk/episodes.jsonl").read_text().splitlines()
    extra = json.loads(extras[0])
    assert extra["repeated_frames"] == {"observation.images.front": 5}
    # 26 frames over rows 0..29 minus the stall: the measured camera rate is below 30 fps
    camera = extra["cameras"]["observation.images.front"]
    assert camera["frames_received"] == 26 and camera["measured_fps"] < FPS


def test_frames_arriving_after_their_rows_are_still_matched(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    t0 = time.monotonic_ns() + 10**10  # stamps in the future: no lag-based matching
    with DatasetWriter.create("o/t", FPS, features(CAMS), root=root, single_task="t") as w:
        w.start_episode()
        w.add_rows(make_batch(0, 20, t0, FPS))  # rows first (camera thread is late)
        for k in range(21):
            w.add_camera_frame("front", synthetic_frame(k, 48, 64), t0 + k * PERIOD - 1000)
        summary = w.save_episode(wait=True)
    assert summary.repeated_frames["observation.images.front"] == 0
    assert frame_numbers(open_dataset(root).camera_frames(0, "front")) == list(range(20))


@pytest.mark.parametrize("phase_ms", [0.5, 1.7, 3.0, 4.9, 20.0])
def test_rows_on_a_tick_grid_get_every_frame_of_a_camera_at_the_dataset_rate(
    tmp_path: Path, phase_ms: float
) -> None:
    # A 200 Hz loop takes the rows of a 30 fps dataset on its 5 ms ticks (30 or 35 ms apart);
    # the camera's frames come every 33.3 ms, `phase_ms` after the rows' slots on the dataset
    # clock. Whatever the phase, each row gets the next frame: no repeat, no skip.
    root = tmp_path / "ds"
    t0 = time.monotonic_ns() + 10**10  # stamps in the future: no lag-based matching
    tick = 5_000_000
    slots = [t0 + round(k * 1e9 / FPS) for k in range(60)]
    rows = [t0 + -(-(s - t0) // tick) * tick for s in slots]  # the first tick at/after a slot
    assert {b - a for a, b in itertools.pairwise(rows)} == {30_000_000, 35_000_000}
    batch = make_batch(0, 60, t0, FPS)
    batch = pa.RecordBatch.from_arrays(
        [pa.array(rows, pa.int64()), *batch.columns[1:]], schema=batch.schema
    )
    with DatasetWriter.create("o/t", FPS, features(CAMS), root=root, single_task="t") as w:
        w.start_episode()
        for k in range(-1, 61):
            stamp = t0 + round(k * 1e9 / FPS) + int(phase_ms * 1e6) - PERIOD
            w.add_camera_frame("front", synthetic_frame(k + 1, 48, 64), stamp)
        w.add_rows(batch)
        summary = w.save_episode(wait=True)
    assert summary.repeated_frames == {"observation.images.front": 0}
    numbers = frame_numbers(open_dataset(root).camera_frames(0, "front"))
    assert numbers == list(range(numbers[0], numbers[0] + 60))


def test_rows_a_late_tick_emits_together_still_get_the_frames_of_their_time(
    tmp_path: Path,
) -> None:
    # The loop stalled for ~130 ms: rows 20-23 were emitted by one late tick, with one capture
    # time. The camera did not stall: each of those rows gets the frame of its own slot, in
    # order, and no frame repeats (the repeated state is the loop's, counted by the loop).
    root = tmp_path / "ds"
    t0 = time.monotonic_ns() + 10**10
    slots = [t0 + round(k * 1e9 / FPS) for k in range(40)]
    rows = [s + 2_000_000 for s in slots]
    rows[20:24] = [slots[23] + 30_000_000] * 4
    batch = make_batch(0, 40, t0, FPS)
    batch = pa.RecordBatch.from_arrays(
        [pa.array(rows, pa.int64()), *batch.columns[1:]], schema=batch.schema
    )
    with DatasetWriter.create("o/t", FPS, features(CAMS), root=root, single_task="t") as w:
        w.start_episode()
        for k in range(41):
            w.add_camera_frame("front", synthetic_frame(k, 48, 64), slots[0] + k * PERIOD - 10**7)
        w.add_rows(batch)
        summary = w.save_episode(wait=True)
    assert summary.repeated_frames == {"observation.images.front": 0}
    assert frame_numbers(open_dataset(root).camera_frames(0, "front")) == list(range(40))


def test_synthetic_camera_stamps_frames_with_their_capture_instant() -> None:
    cam = SyntheticCamera("front", width=64, height=48, fps=FPS)
    cam.connect()
    first, t_first = cam.read()
    time.sleep(0.15)  # the capture thread was held up: the frames are late, not their stamps
    stamps = [t_first] + [cam.read()[1] for _ in range(9)]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [
        (k + 1) * 10**9 // FPS - k * 10**9 // FPS for k in range(9)
    ]
    assert read_synthetic_number(first) == 0
    cam.disconnect()


def test_saved_stats_match_the_data_and_lerobot_layout(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with DatasetWriter.create("o/t", FPS, features(CAMS), root=root, single_task="t") as w:
        for n in (30, 17, 25):
            record_episode(w, n, FPS, CAMS)
            w.save_episode()
    stats = json.loads((root / "meta/stats.json").read_text())
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    state = np.stack(data.column("observation.state").to_numpy(zero_copy_only=False))
    s = stats["observation.state"]
    assert np.allclose(s["mean"], state.mean(axis=0), atol=1e-5)
    assert np.allclose(s["std"], state.std(axis=0), atol=1e-5)
    assert np.allclose(s["min"], state.min(axis=0)) and np.allclose(s["max"], state.max(axis=0))
    assert s["count"] == [72]
    assert stats["index"]["max"] == [71.0]
    cam = np.asarray(stats["observation.images.front"]["mean"])
    assert cam.shape == (3, 1, 1) and cam.min() >= 0 and cam.max() <= 1
    assert stats["observation.images.front"]["count"] == [72]

    # the episodes parquet has lerobot's exact column names and types, in lerobot's order
    ref = pq.read_schema(DATA / "lerobot_reference/meta/episodes/chunk-000/file-000.parquet")
    ours = pq.read_schema(root / "meta/episodes/chunk-000/file-000.parquet")
    rename = {"cam_main": "front"}

    def normal(name: str) -> str:
        for a, b in rename.items():
            name = name.replace(a, b)
        return name

    ref_fields = [(normal(f.name), f.type) for f in ref if "capture_time_ns" not in f.name]
    our_fields = [(f.name, f.type) for f in ours if "capture_time_ns" not in f.name]
    assert our_fields == ref_fields
    # info.json keys in lerobot's order, tasks.parquet with the pandas index metadata
    ref_info = json.loads((DATA / "lerobot_reference/meta/info.json").read_text())
    info = json.loads((root / "meta/info.json").read_text())
    assert list(info) == list(ref_info)
    assert list(info["features"]["observation.images.front"]["info"]) == list(
        ref_info["features"]["observation.images.cam_main"]["info"]
    )
    tasks_meta = pq.read_schema(root / "meta/tasks.parquet").metadata
    assert json.loads(tasks_meta[b"pandas"])["index_columns"] == ["task"]
    hf = json.loads(
        pq.read_schema(root / "data/chunk-000/file-000.parquet").metadata[b"huggingface"]
    )
    assert hf["info"]["features"]["action"] == {
        "feature": {"dtype": "float32", "_type": "Value"},
        "length": 7,
        "_type": "List",
    }
    assert pq.ParquetFile(root / "data/chunk-000/file-000.parquet").num_row_groups == 3


def test_reader_reads_a_lerobot_written_dataset(tmp_path: Path) -> None:
    root = tmp_path / "ref"
    shutil.copytree(DATA / "lerobot_reference", root)
    reader = open_dataset(root)
    assert [e["length"] for e in reader.list_episodes()] == [60, 60]
    actions = reader.actions(1, "arrow")
    assert actions.column_names[0] == "shoulder_pan.pos" and actions.num_rows == 60
    assert reader.states(0).shape == (60, 14)
    assert reader.camera_frames(1, "cam_main").shape == (60, 48, 64, 3)
    assert reader.tasks == ["pick the red cube and place it in the bin"]
    assert verify(root).ok, str(verify(root))


def test_verify_names_what_is_wrong(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with DatasetWriter.create("o/t", FPS, features(CAMS), root=root, single_task="t") as w:
        for n in (12, 10):
            record_episode(w, n, FPS, CAMS)
            w.save_episode()
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["total_frames"] = 21
    info_path.write_text(json.dumps(info))
    (root / "data/chunk-000/file-000.parquet.openk-tmp").write_bytes(b"x")
    extra = root / "videos/observation.images.front/chunk-000/file-007.mp4"
    extra.write_bytes(b"")
    problems = "\n".join(verify(root).problems)
    assert "info.json says 21 frames but the data files hold 22 rows" in problems
    assert "leftover temp file" in problems
    assert "file-007.mp4 is not used by any episode" in problems


def test_synthetic_camera_and_capture_thread_feed_the_writer(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    cam = SyntheticCamera("front", width=64, height=48, fps=FPS)
    with DatasetWriter.create("o/t", FPS, features(CAMS), root=root, single_task="t") as w:
        with CaptureThread(cam, w.add_camera_frame) as capture:
            wait_until(lambda: capture.frames > 0, "the camera delivered a frame")
            w.start_episode()
            t0 = time.monotonic_ns()
            for k in range(15):
                time.sleep(max(0.0, (t0 + k * PERIOD - time.monotonic_ns()) / 1e9))
                w.add_rows(make_batch(0, 1, t0 + k * PERIOD, FPS))
            # A frame taken after the last row exists, so every row's frame is known.
            frames = capture.frames
            wait_until(lambda: capture.frames > frames, "the camera delivered a later frame")
            w.save_episode(wait=True)
        assert capture.error is None and capture.frames > 15
    numbers = frame_numbers(open_dataset(root).camera_frames(0, "front"))
    assert len(numbers) == 15
    assert numbers == sorted(numbers)  # time order kept, never a frame from the future


def test_synthetic_numbers_are_exact_on_raw_frames() -> None:
    for n in (0, 1, 255, 4097, 65535):
        assert read_synthetic_number(synthetic_frame(n, 480, 640)) == n


def test_opencv_camera_without_cv2_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_cv2(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    with pytest.raises(ConfigError, match=r"openk\[opencv\]"):
        OpenCVCamera("front", device=0).connect()


def test_features_from_the_loop_schema_carry_joint_names() -> None:
    from ds_synth import ACTION_NAMES, STATE_NAMES, batch_schema

    from openk.dataset import features_from_arrow_schema

    feats = features_from_arrow_schema(batch_schema(), cameras={"front": (480, 640)})
    assert feats["observation.state"] == {
        "dtype": "float32",
        "shape": [len(STATE_NAMES)],
        "names": STATE_NAMES,
    }
    assert feats["action"]["names"] == ACTION_NAMES
    assert feats["capture_time_ns"] == {"dtype": "int64", "shape": [1], "names": None}
    assert feats["observation.images.front"]["shape"] == [480, 640, 3]
    assert "loop_lateness_ns" not in feats  # undeclared telemetry stays out of the dataset


def test_open_dataset_by_repo_id_uses_the_local_lerobot_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "home"))
    with DatasetWriter.create("alice/cubes", FPS, features({}), single_task="t") as w:
        w.start_episode()
        w.add_rows(make_batch(0, 8, 0, FPS))
        w.save_episode()
    reader = open_dataset("alice/cubes")
    assert reader.root == tmp_path / "home" / "alice" / "cubes"
    assert reader.actions(0).shape == (8, 7)
    assert reader.list_episodes()[0]["duration_s"] == pytest.approx(8 / FPS)


def test_verify_catches_a_dropped_video_frame(tmp_path: Path) -> None:
    import av

    root = tmp_path / "ds"
    with DatasetWriter.create("o/t", FPS, features(CAMS), root=root, single_task="t") as w:
        record_episode(w, 20, FPS, CAMS)
        w.save_episode()
    video = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    damaged = tmp_path / "damaged.mp4"
    # what a dropping encoder queue produces: one frame missing, later frames shifted back
    with av.open(str(video)) as src, av.open(str(damaged), "w", format="mp4") as out:
        stream = src.streams.video[0]
        out_stream = out.add_stream_from_template(stream, opaque=True)
        kept = 0
        for i, packet in enumerate(src.demux(stream)):
            if not packet.size or i == 7:
                continue
            packet.stream = out_stream
            packet.pts = packet.dts = kept * packet.duration
            out.mux(packet)
            kept += 1
    damaged.replace(video)
    problems = "\n".join(verify(root).problems)
    assert "has 19 frames, episodes need 20" in problems


def test_frames_queue_up_instead_of_being_dropped_when_the_encoder_lags(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    cams = {"front": (240, 320)}
    with DatasetWriter.create("o/t", FPS, features(cams), root=root, single_task="t") as w:
        w.start_episode()
        t0 = time.monotonic_ns() + 10**10
        # 150 frames handed over at once: far faster than AV1 encodes them
        for k in range(150):
            w.add_camera_frame("front", synthetic_frame(k, 240, 320), t0 + k * PERIOD - 1000)
        w.add_rows(make_batch(0, 150, t0, FPS))
        assert max(w.camera_backlog().values()) > 0
        w.save_episode(wait=True)
    assert frame_numbers(open_dataset(root).camera_frames(0, "front")) == list(range(150))
    assert verify(root).ok


def test_open_dataset_downloads_a_hub_repo_it_does_not_have(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "empty-home"))
    calls = []

    def fake_snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append((repo_id, kwargs))
        target = tmp_path / "hub-cache" / repo_id
        shutil.copytree(DATA / "lerobot_reference", target)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    reader = open_dataset("someone/reference", revision="v3.0")
    assert calls and calls[0][0] == "someone/reference"
    assert calls[0][1]["repo_type"] == "dataset" and calls[0][1]["revision"] == "v3.0"
    assert reader.actions(0).shape == (60, 7)
