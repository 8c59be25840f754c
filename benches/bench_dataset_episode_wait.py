"""End-of-episode wait: openk's DatasetWriter vs lerobot 0.6.1's add_frame/save_episode.

One episode of SECONDS at 30 fps with two 640x480 cameras, fed in real time (one row and one
frame per camera every 1/30 s) with the same synthetic frames (moving gradient, blocks, noise).
Reported: the time save_episode() blocks, the time until the episode is durable on disk, the
per-frame call latency (p50/p99), frames late against the 30 fps schedule, and the number of
video frames written vs rows. lerobot runs in its own venv (the oracle) as a subprocess.

    .venv/bin/python benches/bench_dataset_episode_wait.py [--seconds 30]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FPS = 30
HEIGHT, WIDTH = 480, 640
CAMERAS = ("front", "wrist")
N_STATE, N_ACTION = 12, 7
POOL = 45  # distinct frames per camera, cycled (building 2 x 900 frames would dominate)


def frame_pool(seed: int) -> list[np.ndarray]:
    """Camera-like frames: a moving gradient, a moving block and sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = []
    for k in range(POOL):
        base = ((xx + 7 * k) % 256 * 0.6 + (yy * 0.3)).astype(np.float32)
        img = np.stack([base, np.roll(base, 40 * k, axis=1), 255 - base], axis=-1)
        y0, x0 = (20 + 9 * k) % (HEIGHT - 100), (30 + 13 * k) % (WIDTH - 100)
        img[y0 : y0 + 100, x0 : x0 + 100] = (230, 40, 40)
        img += rng.normal(0, 6, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def dataset_features() -> dict[str, Any]:
    """State, action and one video feature per camera: what both writers are asked to store."""
    features: dict[str, Any] = {
        "observation.state": {"dtype": "float32", "shape": [N_STATE], "names": None},
        "action": {"dtype": "float32", "shape": [N_ACTION], "names": None},
    }
    for cam in CAMERAS:
        features[f"observation.images.{cam}"] = {
            "dtype": "video",
            "shape": [HEIGHT, WIDTH, 3],
            "names": ["height", "width", "channels"],
        }
    return features


def percentiles(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples) * 1e3
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
    }


# ------------------------------------------------------------------------------ openk
def run_openk(seconds: float, root: Path, vcodec: str) -> dict[str, Any]:
    import pyarrow as pa

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    from openk.dataset import DatasetWriter, VideoConfig

    pools = [frame_pool(i) for i in range(len(CAMERAS))]
    features = dataset_features()
    features["capture_time_ns"] = {"dtype": "int64", "shape": [1], "names": None}
    writer = DatasetWriter.create(
        "bench/openk",
        FPS,
        features,
        root=root,
        single_task="bench",
        video=VideoConfig(vcodec=vcodec),
    )
    n = int(seconds * FPS)
    period = 1_000_000_000 // FPS
    call_s: list[float] = []
    late = 0
    writer.start_episode()
    t0 = time.monotonic_ns()
    for k in range(n):
        due = t0 + k * period
        delay = due - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        elif -delay > period:
            late += 1
        start = time.perf_counter()
        for i, cam in enumerate(CAMERAS):
            writer.add_camera_frame(cam, pools[i][k % POOL], due - period // 3)
        batch = pa.record_batch(
            {
                "capture_time_ns": pa.array([due], pa.int64()),
                "observation.state": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.full(N_STATE, k, np.float32)), N_STATE
                ),
                "action": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.full(N_ACTION, k, np.float32)), N_ACTION
                ),
            }
        )
        writer.add_rows(batch)
        call_s.append(time.perf_counter() - start)
    backlog = writer.camera_backlog()
    start = time.perf_counter()
    summary = writer.save_episode()
    wait = time.perf_counter() - start
    writer.flush()
    durable = time.perf_counter() - start
    writer.close()
    from openk.dataset import open_dataset
    from openk.dataset.video import count_packets

    reader = open_dataset(root)
    video_frames = {
        cam: count_packets(root / f"videos/observation.images.{cam}/chunk-000/file-000.mp4")
        for cam in CAMERAS
    }
    return {
        "peer": f"openk ({vcodec})",
        "rows": reader.total_frames,
        "video_frames": video_frames,
        "save_wait_s": wait,
        "durable_s": durable,
        "late_ticks": late,
        "backlog_at_end": backlog,
        "repeated": summary.repeated_frames,
        **percentiles(call_s),
    }


# ------------------------------------------------------------------------------ lerobot
def run_lerobot(seconds: float, root: Path, streaming: bool) -> dict[str, Any]:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    pools = [frame_pool(i) for i in range(len(CAMERAS))]
    features = dataset_features()
    # lerobot-record's defaults: 4 image-writer threads per camera (non-streaming mode)
    ds = LeRobotDataset.create(
        "bench/lerobot",
        FPS,
        features,
        root=root,
        use_videos=True,
        image_writer_threads=4 * len(CAMERAS),
        streaming_encoding=streaming,
    )
    n = int(seconds * FPS)
    period = 1_000_000_000 // FPS
    call_s: list[float] = []
    late = 0
    t0 = time.monotonic_ns()
    for k in range(n):
        due = t0 + k * period
        delay = due - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        elif -delay > period:
            late += 1
        frame: dict[str, Any] = {
            "observation.state": np.full(N_STATE, k, np.float32),
            "action": np.full(N_ACTION, k, np.float32),
            "task": "bench",
        }
        for i, cam in enumerate(CAMERAS):
            frame[f"observation.images.{cam}"] = pools[i][k % POOL]
        start = time.perf_counter()
        ds.add_frame(frame)
        call_s.append(time.perf_counter() - start)
    start = time.perf_counter()
    ds.save_episode()
    wait = time.perf_counter() - start
    ds.finalize()
    durable = time.perf_counter() - start
    import av

    video_frames = {}
    for cam in CAMERAS:
        path = root / f"videos/observation.images.{cam}/chunk-000/file-000.mp4"
        with av.open(str(path)) as c:
            video_frames[cam] = sum(1 for p in c.demux(video=0) if p.size)
    return {
        "peer": f"lerobot 0.6.1 ({'streaming' if streaming else 'default'})",
        "rows": n,
        "video_frames": video_frames,
        "save_wait_s": wait,
        "durable_s": durable,
        "late_ticks": late,
        **percentiles(call_s),
    }


def oracle_python() -> str:
    path = os.environ.get("OPENK_ORACLE_PYTHON")
    if path:
        return path
    default = Path.home() / ".cache/openk/oracle/lerobot-0.6.1-py312/bin/python"
    if default.exists():
        return str(default)
    raise SystemExit("lerobot oracle venv missing: run scripts/oracle-venv.sh")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--peer",
        choices=["openk", "openk-h264", "lerobot", "lerobot-streaming", "all"],
        default="all",
    )
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        peers = (
            ["openk", "openk-h264", "lerobot-streaming", "lerobot"]
            if args.peer == "all"
            else [args.peer]
        )
        for peer in peers:
            root = Path(tmp) / peer
            if peer.startswith("openk"):
                results.append(
                    run_openk(args.seconds, root, "h264" if peer.endswith("h264") else "libsvtav1")
                )
            elif args.peer != "all":
                results.append(run_lerobot(args.seconds, root, peer == "lerobot-streaming"))
            else:
                env = {
                    k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
                }
                proc = subprocess.run(
                    [
                        oracle_python(),
                        __file__,
                        "--peer",
                        peer,
                        "--seconds",
                        str(args.seconds),
                        "--json-only",
                    ],
                    capture_output=True,
                    text=True,
                    env={**env, "HF_HUB_OFFLINE": "1"},
                    check=False,
                )
                if proc.returncode != 0:
                    raise SystemExit(f"{peer} failed:\n{proc.stderr[-3000:]}")
                results.extend(json.loads(proc.stdout.strip().splitlines()[-1])["results"])
    if not args.json_only:
        print(
            f"episode {args.seconds:.0f} s, {len(CAMERAS)} cameras {WIDTH}x{HEIGHT} @ {FPS} fps, "
            "real-time feed"
        )
        print(
            f"{'writer':34} {'save() wait s':>13} {'durable s':>10} {'call p50 ms':>11} "
            f"{'call p99 ms':>11} {'late ticks':>10} {'rows':>5} {'video frames':>14}"
        )
        for r in results:
            vf = "/".join(str(v) for v in r["video_frames"].values())
            print(
                f"{r['peer']:34} {r['save_wait_s']:13.3f} {r['durable_s']:10.2f} "
                f"{r['p50_ms']:11.2f} {r['p99_ms']:11.2f} {r['late_ticks']:10d} "
                f"{r['rows']:5d} {vf:>14}"
            )
    print(
        json.dumps({"bench": "dataset_episode_wait", "seconds": args.seconds, "results": results})
    )


if __name__ == "__main__":
    main()
