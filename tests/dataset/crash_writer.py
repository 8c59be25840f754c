"""A recording process for the crash tests: saves episodes, then records one in real time
and prints how many rows it has handed over, until it is killed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ds_synth as synth
from ds_synth import features, make_batch, record_episode

from openk.cameras import synthetic_frame
from openk.dataset import DatasetWriter

FPS = 30
CAMS = {"front": (48, 64)}


def main() -> None:
    root, saved = Path(sys.argv[1]), int(sys.argv[2])
    writer = DatasetWriter.create("openk/test", FPS, features(CAMS), root=root, single_task="pick")
    for _ in range(saved):
        record_episode(writer, 20, FPS, CAMS)
        writer.save_episode(wait=True)
    writer.start_episode("interrupted task")
    period = 1_000_000_000 // FPS
    t0 = max(time.monotonic_ns(), synth._clock["next"])  # after the synthetic episodes' stamps
    row = 0
    while True:  # real time: one row and one frame per period, until SIGKILL
        due = t0 + row * period
        time.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
        writer.add_camera_frame("front", synthetic_frame(row, 48, 64), due - period // 3)
        writer.add_rows(make_batch(row, 1, t0, FPS))
        row += 1
        print(f"ROWS {row}", flush=True)


if __name__ == "__main__":
    main()
