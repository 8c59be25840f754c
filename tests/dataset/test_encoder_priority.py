"""Video encoding never outranks the control loop.

SVT-AV1 starts its worker threads SCHED_FIFO 99 when it may (as root, or with an rtprio limit),
which froze the simulated motor buses for 10+ ms at a time during recordings. The encoders put
such threads back to normal scheduling.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from openk.dataset.encoder_process import EncoderWorker
from openk.dataset.video import VideoConfig
from openk.errors import DatasetError

REALTIME = {os.SCHED_FIFO, os.SCHED_RR}


def realtime_threads(pid: int) -> list[int]:
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if os.sched_getscheduler(int(tid)) in REALTIME:
                found.append(int(tid))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    return found


def test_encoder_process_threads_run_below_realtime(tmp_path: Path) -> None:
    worker = EncoderWorker("front", 320, 240, 30, VideoConfig())  # libsvtav1, lerobot's default
    try:
        session = worker.begin(tmp_path / "episode.mp4")
        frame = np.zeros((240, 320, 3), np.uint8)
        for i in range(40):
            frame[:] = i
            session.put(frame)
        while worker.queued:  # every frame reached the encoder; its threads are up
            os.sched_yield()
        pid = worker._proc.pid
        assert len(os.listdir(f"/proc/{pid}/task")) > 3, "the encoder started no worker threads"
        assert realtime_threads(pid) == []
        assert session.finish().frames == 40
    finally:
        worker.close()


def test_an_encoder_process_reports_when_it_has_started(tmp_path: Path) -> None:
    # Episodes start after this (DatasetWriter.start_episode waits for it), so the start-up of
    # the encoder processes never competes with an episode's capture threads.
    worker = EncoderWorker("front", 64, 48, 30, VideoConfig(vcodec="h264"))
    try:
        worker.wait_ready(60)
    finally:
        worker.close()


def test_an_encoder_process_that_cannot_start_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    worker = EncoderWorker("front", 64, 48, 30, VideoConfig(vcodec="h264"))
    try:
        with pytest.raises(DatasetError, match="encoder process for front failed"):
            worker.wait_ready(60)
    finally:
        worker.close()
