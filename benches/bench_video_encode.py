"""Encode real-time factor of openk's streaming camera encoder (PyAV) at 640x480, 30 fps.

Encodes FRAMES camera-like frames as fast as they are accepted, with one camera and with two
cameras at once, for libsvtav1 (lerobot's default settings) and h264. RTF = fps achieved / 30.

    .venv/bin/python benches/bench_video_encode.py [--frames 300]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dataset_episode_wait import HEIGHT, POOL, WIDTH, frame_pool
from openk.dataset.encoder_process import EncoderWorker
from openk.dataset.video import CameraEncoder, VideoConfig


def encode(cameras: int, frames: int, vcodec: str, tmp: Path, isolate: bool) -> float:
    """Seconds to encode `frames` per camera; encoder process start-up is not counted."""
    pools = [frame_pool(i) for i in range(cameras)]
    config = VideoConfig(vcodec=vcodec)
    workers = [EncoderWorker(f"cam{i}", WIDTH, HEIGHT, 30, config) for i in range(cameras)]
    try:
        if isolate:
            warm = [w.begin(tmp / f"warm-{i}.mp4") for i, w in enumerate(workers)]
            for session in warm:  # wait until every child is up and its codec works
                session.put(pools[0][0])
                session.finish()
        start = time.perf_counter()
        encoders: list[Any] = [
            w.begin(tmp / f"{vcodec}-{cameras}-{i}.mp4")
            if isolate
            else CameraEncoder(tmp / f"t-{vcodec}-{cameras}-{i}.mp4", WIDTH, HEIGHT, 30, config)
            for i, w in enumerate(workers)
        ]
        for k in range(frames):
            for i, enc in enumerate(encoders):
                enc.put(pools[i][k % POOL])
        for enc in encoders:
            assert enc.finish().frames == frames
        return time.perf_counter() - start
    finally:
        for w in workers:
            w.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for vcodec in ("libsvtav1", "h264"):
            for cameras in (1, 2):
                for isolate in (True, False):
                    seconds = encode(cameras, args.frames, vcodec, Path(tmp), isolate)
                    fps = args.frames / seconds  # per camera
                    rows.append(
                        {
                            "vcodec": vcodec,
                            "encoder": "process" if isolate else "thread",
                            "cameras": cameras,
                            "seconds": seconds,
                            "fps_per_camera": fps,
                            "rtf": fps / 30,
                        }
                    )
    print(f"{args.frames} frames {WIDTH}x{HEIGHT} per camera; RTF = per-camera fps / 30")
    print(f"{'codec':10} {'encoder':8} {'cameras':>7} {'seconds':>8} {'fps/camera':>10} {'RTF':>6}")
    for r in rows:
        print(
            f"{r['vcodec']:10} {r['encoder']:8} {r['cameras']:7d} {r['seconds']:8.2f} "
            f"{r['fps_per_camera']:10.1f} {r['rtf']:6.2f}"
        )
    print(json.dumps({"bench": "video_encode", "frames": args.frames, "results": rows}))


if __name__ == "__main__":
    main()
