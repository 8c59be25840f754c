"""Bad input gets clear DatasetErrors and loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from ds_synth import ACTION_NAMES, features, make_batch, run_python

from openk.dataset import DatasetWriter, default_root, open_dataset, recover, verify
from openk.errors import DatasetError

HERE = Path(__file__).resolve().parent
FPS = 30
CAMS = {"front": (48, 64)}


@pytest.mark.parametrize("repo_id", ["../x", "/abs", "a/../b", "a/b/c", "", "a b", "owner/..", "."])
def test_bad_repo_ids_are_refused_before_any_path_is_built(
    repo_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    with pytest.raises(DatasetError, match="repo id"):
        DatasetWriter.create(repo_id, FPS, features(CAMS))
    with pytest.raises(DatasetError, match="repo id"):
        DatasetWriter.resume(repo_id)
    assert not home.exists()
    assert not (tmp_path / "x").exists()


def test_default_root_is_hf_lerobot_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "lr"))
    assert default_root("alice/pick") == tmp_path / "lr" / "alice" / "pick"
    monkeypatch.delenv("HF_LEROBOT_HOME")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert default_root("alice/pick") == tmp_path / "hf" / "lerobot" / "alice" / "pick"
    w = DatasetWriter.create("alice/pick", FPS, features(CAMS), single_task="t")
    w.close()
    assert (tmp_path / "hf/lerobot/alice/pick/meta/info.json").exists()


def test_unwritable_root_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(DatasetError, match="cannot create"):
        DatasetWriter.create("openk/test", FPS, features(CAMS), root=blocker / "ds")


def test_disk_full_keeps_saved_episodes_and_the_journal(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    proc = run_python(str(HERE / "disk_full_writer.py"), str(root))
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["type"] == "DatasetError", outcome
    assert "File too large" in outcome["error"] or "size limit" in outcome["error"], outcome
    # the saved episode is intact; only the unsaved one is reported
    report = verify(root)
    assert all("unsaved episode" in p for p in report.problems), str(report)
    assert open_dataset(root).total_episodes == 1
    recover("openk/test", root, keep=False)
    assert verify(root).ok, str(verify(root))


def test_rows_with_missing_or_renamed_columns_are_refused(tmp_path: Path) -> None:
    w = DatasetWriter.create("openk/test", FPS, features({}), root=tmp_path / "ds", single_task="t")
    w.start_episode()
    batch = make_batch(0, 3, 0, FPS)
    with pytest.raises(DatasetError, match="no column 'action'"):
        w.add_rows(batch.drop_columns(["action"]))
    wrong = batch.schema.set(
        2,
        pa.field(
            "action",
            batch.schema.field("action").type,
            metadata={"names": json.dumps(list(reversed(ACTION_NAMES)))},
        ),
    )
    with pytest.raises(DatasetError, match="joint names"):
        w.add_rows(pa.RecordBatch.from_arrays(batch.columns, schema=wrong))
    with pytest.raises(DatasetError, match="cannot be stored"):
        w.add_rows(batch.set_column(2, "action", pa.array(["x"] * 3)))
    w.discard_episode()
    w.close()


def test_rename_map_maps_loop_columns_to_dataset_keys(tmp_path: Path) -> None:
    feats = features({})
    feats["observation.joints"] = feats.pop("observation.state")
    root = tmp_path / "ds"
    with DatasetWriter.create(
        "openk/test",
        FPS,
        feats,
        root=root,
        single_task="t",
        rename_map={"observation.state": "observation.joints"},
    ) as w:
        w.start_episode()
        w.add_rows(make_batch(0, 5, 0, FPS))
        w.save_episode()
    reader = open_dataset(root)
    assert reader.feature(0, "observation.joints")[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_wrong_camera_frames_are_refused(tmp_path: Path) -> None:
    w = DatasetWriter.create(
        "openk/test", FPS, features(CAMS), root=tmp_path / "ds", single_task="t"
    )
    with pytest.raises(DatasetError, match="expected"):
        w.add_camera_frame("front", np.zeros((48, 64, 4), np.uint8), 0)
    with pytest.raises(DatasetError, match="not a declared feature"):
        w.add_camera_frame("side", np.zeros((48, 64, 3), np.uint8), 0)
    w.close()


def test_api_misuse_is_explained(tmp_path: Path) -> None:
    w = DatasetWriter.create("openk/test", FPS, features(CAMS), root=tmp_path / "ds")
    with pytest.raises(DatasetError, match="start_episode"):
        w.add_rows(make_batch(0, 2, 0, FPS))
    with pytest.raises(DatasetError, match="needs a task"):
        w.start_episode()
    w.start_episode("t")
    with pytest.raises(DatasetError, match="already in progress"):
        w.start_episode("t")
    with pytest.raises(DatasetError, match="no rows"):
        w.save_episode()
    w.add_rows(make_batch(0, 3, 10**9, FPS))
    with pytest.raises(DatasetError, match="delivered no frame"):
        w.save_episode()
    w.discard_episode()
    w.close()
    assert verify(tmp_path / "ds").ok


def test_bad_features_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="contains '/'"):
        DatasetWriter.create(
            "o/t", FPS, {"a/b": {"dtype": "float32", "shape": [1]}}, root=tmp_path / "a"
        )
    with pytest.raises(DatasetError, match="fps"):
        DatasetWriter.create("o/t", 0, features(CAMS), root=tmp_path / "b")
    with pytest.raises(DatasetError, match="shape"):
        DatasetWriter.create(
            "o/t",
            FPS,
            {"observation.images.x": {"dtype": "video", "shape": [4, 4]}},
            root=tmp_path / "c",
        )
