"""Reading one episode's actions: openk's torch-free reader vs lerobot's hf_dataset.filter.

Builds a dataset of EPISODES x FRAMES rows (no cameras) with openk's writer, then times
`open_dataset(root).actions(0)` here and, in the lerobot 0.6.1 oracle venv,
`LeRobotDataset(repo, root=root).hf_dataset.filter(lambda x: x["episode_index"] == 0)`.

    .venv/bin/python benches/bench_reader_episode.py [--episodes 50 --frames 900]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

LEROBOT_SNIPPET = r"""
import json, sys, time
t = time.perf_counter()
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset("bench/reader", root=sys.argv[1])
construct = time.perf_counter() - t
times = []
uncached = []
for _ in range(3):
    t = time.perf_counter()
    ep = ds.hf_dataset.filter(lambda x: x["episode_index"] == 0)
    times.append(time.perf_counter() - t)
    # datasets caches a filter's result on disk; this measures the filtering itself
    t = time.perf_counter()
    ep = ds.hf_dataset.filter(lambda x: x["episode_index"] == 0, load_from_cache_file=False)
    uncached.append(time.perf_counter() - t)
t = time.perf_counter()
actions = ep["action"]
to_rows = time.perf_counter() - t
print(json.dumps({"construct_s": construct, "filter_s": times, "uncached_s": uncached,
                  "rows": len(actions), "column_s": to_rows}))
"""


def build(root: Path, episodes: int, frames: int) -> None:
    import pyarrow as pa

    from openk.dataset import DatasetWriter

    features = {
        "observation.state": {"dtype": "float32", "shape": [12], "names": None},
        "action": {"dtype": "float32", "shape": [7], "names": [f"j{i}.pos" for i in range(7)]},
    }
    with DatasetWriter.create("bench/reader", 30, features, root=root, single_task="t") as w:
        rng = np.random.default_rng(0)
        for _ in range(episodes):
            w.start_episode()
            w.add_rows(
                pa.table(
                    {
                        "observation.state": pa.FixedSizeListArray.from_arrays(
                            pa.array(rng.random(frames * 12, dtype=np.float32)), 12
                        ),
                        "action": pa.FixedSizeListArray.from_arrays(
                            pa.array(rng.random(frames * 7, dtype=np.float32)), 7
                        ),
                    }
                )
            )
            w.save_episode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--frames", type=int, default=900)
    args = parser.parse_args()
    from openk.dataset import open_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        build(root, args.episodes, args.frames)
        ours, reused = [], []
        reader = open_dataset(root)
        for _ in range(20):
            t = time.perf_counter()
            actions = open_dataset(root).actions(0)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            reader.actions(0)
            reused.append(time.perf_counter() - t)
        assert actions.shape == (args.frames, 7)
        oracle = os.environ.get("OPENK_ORACLE_PYTHON") or str(
            Path.home() / ".cache/openk/oracle/lerobot-0.6.1-py312/bin/python"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["HF_HUB_OFFLINE"] = "1"
        env["HF_DATASETS_CACHE"] = str(Path(tmp) / "hf-cache")
        proc = subprocess.run(
            [oracle, "-c", LEROBOT_SNIPPET, str(root)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        peer = json.loads(proc.stdout.strip().splitlines()[-1])
    ours_med = statistics.median(ours)
    reused_med = statistics.median(reused)
    first_filter = peer["filter_s"][0]
    best_filter = min(peer["filter_s"])
    uncached = statistics.median(peer["uncached_s"])
    rows = [
        ("openk open_dataset(root).actions(0), median of 20", ours_med),
        ("openk reader.actions(0) on an open reader, median of 20", reused_med),
        ("lerobot LeRobotDataset(...) construction (not in ratios)", peer["construct_s"]),
        ("lerobot hf_dataset.filter(...), first call", first_filter),
        ("lerobot hf_dataset.filter(..., load_from_cache_file=False), median", uncached),
        ("lerobot hf_dataset.filter(...), best of 3 (cached result)", best_filter),
    ]
    print(f"dataset: {args.episodes} episodes x {args.frames} rows; read episode 0's actions")
    print(f"{'reader':68} {'seconds':>9}")
    for label, value in rows:
        print(f"{label:68} {value:9.4f}")
    print(
        f"openk (fresh open) vs filter: first call {first_filter / ours_med:.0f}x, "
        f"uncached {uncached / ours_med:.0f}x, cached {best_filter / ours_med:.0f}x"
    )
    print(
        json.dumps(
            {
                "bench": "reader_episode",
                "episodes": args.episodes,
                "frames": args.frames,
                "openk_s": ours_med,
                "openk_open_reader_s": reused_med,
                "lerobot_filter_first_s": first_filter,
                "lerobot_filter_uncached_s": uncached,
                "lerobot_filter_cached_s": best_filter,
                "lerobot_construct_s": peer["construct_s"],
                "speedup_first": first_filter / ours_med,
                "speedup_uncached": uncached / ours_med,
                "speedup_cached": best_filter / ours_med,
            }
        )
    )


if __name__ == "__main__":
    main()
