"""LeRobot v3.0 datasets: a crash-safe streaming writer, a torch-free reader, and `verify`.

Recording (the recorder calls these; cameras and rows may come from different threads)::

    from openk.cameras import CaptureThread, OpenCVCamera
    from openk.dataset import DatasetWriter, VideoConfig, features_from_arrow_schema

    features = features_from_arrow_schema(batch.schema, cameras={"front": (480, 640)})
    writer = DatasetWriter.create("alice/pick", 30, features, robot_type=cfg.robot.type,
                                  single_task="pick the cube", video=VideoConfig())
    capture = CaptureThread(OpenCVCamera("front", 0), writer.add_camera_frame).start()
    writer.start_episode()
    writer.add_rows(batch)                  # pyarrow batches from the loop, any number
    summary = writer.save_episode({"loop": telemetry})   # returns at once; commit runs behind
    writer.close()

Resuming: `DatasetWriter.resume(repo_id, root=..., fps=30, robot_type=..., features=...)`;
an interrupted recording is offered back by `pending_journal(root)` and settled by
`recover(repo_id, root, keep=True/False)` (or `resume(..., journal="recover"|"discard")`).
Reading: `open_dataset(root_or_repo_id).actions(0, "arrow")`; checking: `print(verify(root))`.
"""

from __future__ import annotations

from pathlib import Path

from openk.dataset.features import (
    DEFAULT_FEATURES,
    camera_feature,
    features_from_arrow_schema,
    vector_feature,
)
from openk.dataset.journal import JournalEpisode, list_journal
from openk.dataset.layout import default_root, lerobot_home
from openk.dataset.reader import DatasetReader, open_dataset
from openk.dataset.verify import VerifyReport, verify
from openk.dataset.video import VideoConfig
from openk.dataset.writer import DatasetWriter, EpisodeSummary
from openk.repo_id import validate_repo_id


def pending_journal(root: str | Path) -> list[JournalEpisode]:
    """Episodes an interrupted recording left at `root` (empty list if none)."""
    return list_journal(Path(root))


def recover(
    repo_id: str,
    root: str | Path | None = None,
    *,
    keep: bool = True,
    announced: list[JournalEpisode] | None = None,
) -> list[EpisodeSummary]:
    """Save (`keep=True`) or delete the episodes an interrupted recording left in the journal.

    Returns the summaries of the episodes saved (empty when discarding or nothing was left).
    `announced`: the `pending_journal` entries shown to the user, kept exactly as described.
    """
    root_path = Path(root) if root is not None else default_root(repo_id)
    writer = DatasetWriter.resume(
        repo_id, root=root_path, journal="recover" if keep else "discard", announced=announced
    )
    writer.close()
    return list(writer.recovered)


__all__ = [
    "DEFAULT_FEATURES",
    "DatasetReader",
    "DatasetWriter",
    "EpisodeSummary",
    "JournalEpisode",
    "VerifyReport",
    "VideoConfig",
    "camera_feature",
    "default_root",
    "features_from_arrow_schema",
    "lerobot_home",
    "open_dataset",
    "pending_journal",
    "recover",
    "validate_repo_id",
    "vector_feature",
    "verify",
]
