"""Memory over many episodes: resident memory of the recording process (and its encoder
children) after each episode, to show it stays flat.

Records EPISODES episodes of SECONDS each with two cameras, feeding frames as fast as the
encoders keep up (the feed waits while more than one second of frames is queued), and saves
each episode without waiting for its commit, like a recording session.

    .venv/bin/python benches/bench_dataset_memory.py [--episodes 40 --seconds 5]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from openk.cameras import synthetic_frame
from openk.dataset import DatasetWriter, VideoConfig

FPS = 30


def rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--vcodec", default="h264")
    args = parser.parse_args()
    cams = ("front", "wrist")
    feats = {
        "observation.state": {"dtype": "float32", "shape": [12], "names": None},
        "action": {"dtype": "float32", "shape": [7], "names": None},
        "capture_time_ns": {"dtype": "int64", "shape": [1], "names": None},
    }
    for cam in cams:
        feats[f"observation.images.{cam}"] = {
            "dtype": "video",
            "shape": [args.height, args.width, 3],
            "names": ["height", "width", "channels"],
        }
    frames = [synthetic_frame(k, args.height, args.width) for k in range(64)]
    n = int(args.seconds * FPS)
    period = 1_000_000_000 // FPS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = DatasetWriter.create(
            "bench/memory",
            FPS,
            feats,
            root=Path(tmp) / "ds",
            single_task="t",
            video=VideoConfig(vcodec=args.vcodec),
        )
        t = time.monotonic_ns()
        for episode in range(args.episodes):
            writer.start_episode()
            for k in range(n):
                while max(writer.camera_backlog().values(), default=0) > FPS:
                    time.sleep(0.005)
                t += period
                for cam in cams:
                    writer.add_camera_frame(cam, frames[k % 64], t - period // 3)
                writer.add_rows(
                    pa.record_batch(
                        {
                            "capture_time_ns": pa.array([t], pa.int64()),
                            "observation.state": pa.FixedSizeListArray.from_arrays(
                                pa.array(np.full(12, k, np.float32)), 12
                            ),
                            "action": pa.FixedSizeListArray.from_arrays(
                                pa.array(np.full(7, k, np.float32)), 7
                            ),
                        }
                    )
                )
            writer.save_episode()
            children = sum(rss_mb(w._proc.pid) for w in writer._workers.values())
            rows.append({"episode": episode, "rss_mb": rss_mb(), "encoders_rss_mb": children})
        writer.close()
    print(f"{args.episodes} episodes x {args.seconds:.0f} s, 2 cameras {args.width}x{args.height}")
    print(f"{'episode':>7} {'recorder RSS MB':>16} {'encoders RSS MB':>16}")
    for r in [*rows[:: max(1, len(rows) // 10)], rows[-1]]:
        print(f"{r['episode']:7d} {r['rss_mb']:16.1f} {r['encoders_rss_mb']:16.1f}")
    first = rows[min(2, len(rows) - 1)]
    growth = rows[-1]["rss_mb"] - first["rss_mb"]
    print(
        f"recorder growth from episode {first['episode']} to {rows[-1]['episode']}: "
        f"{growth:+.1f} MB"
    )
    print(json.dumps({"bench": "dataset_memory", "rows": rows, "growth_mb": growth}))


if __name__ == "__main__":
    main()
