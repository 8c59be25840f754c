"""Benchmark: openk.hub.push_dataset into the loopback fake Hub, hf_xet on vs off.

Each mode runs in a fresh process (huggingface_hub reads HF_HUB_DISABLE_XET at import).
Measures a first push of a dataset of --mb megabytes (random, incompressible payload split
over data and video files), a no-change re-push, and a re-push after one new episode file.
It also times a full pull. Prints one JSON document.

    .venv/bin/python benches/hub_push.py --mb 64
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "hub"))

from fakehub import WRITE_TOKEN, FakeHub  # noqa: E402

CHILD = """
import json, os, sys, time
from pathlib import Path
from openk.hub import pull_dataset, push_dataset
root, repo, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
timings = {}
def timed(name, action):
    start = time.perf_counter()
    action()
    timings[name] = time.perf_counter() - start
timed("first_push_s", lambda: push_dataset(root, repo))
timed("unchanged_push_s", lambda: push_dataset(root, repo))
(root / "data/chunk-000/file-001.parquet").write_bytes(os.urandom(int(sys.argv[4])))
timed("one_new_file_push_s", lambda: push_dataset(root, repo))
timed("pull_s", lambda: pull_dataset(repo, out))
print(json.dumps(timings))
"""


def make_dataset(root: Path, total_bytes: int) -> None:
    info = {"codebase_version": "v3.0", "fps": 30, "total_episodes": 10, "features": {}}
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    half = total_bytes // 2
    files = {
        "data/chunk-000/file-000.parquet": half,
        "videos/observation.images.front/chunk-000/file-000.mp4": half // 2,
        "videos/observation.images.wrist/chunk-000/file-000.mp4": half - half // 2,
    }
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def run_mode(mode: str, megabytes: int, work: Path) -> dict[str, float]:
    total = megabytes * 1024 * 1024
    with FakeHub(work / f"hub-{mode}") as hub:
        root = work / f"dataset-{mode}"
        make_dataset(root, total)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HF_")},
            "HF_ENDPOINT": hub.endpoint,
            "HF_TOKEN": WRITE_TOKEN,
            "HF_HOME": str(work / f"home-{mode}"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "PYTHONPATH": str(HERE.parent / "python"),
        }
        if mode == "lfs":
            env["HF_HUB_DISABLE_XET"] = "1"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(root),
                "tester/bench",
                str(work / f"pull-{mode}"),
                str(total // 10),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        timings = json.loads(proc.stdout.strip().splitlines()[-1])
        timings["first_push_MBps"] = megabytes / timings["first_push_s"]
        timings["requests"] = len(hub.request_log)
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="dataset size in MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {mode: run_mode(mode, args.mb, Path(tmp)) for mode in ("xet", "lfs")}
    results["xet_over_lfs_first_push_time"] = (
        results["xet"]["first_push_s"] / results["lfs"]["first_push_s"]
    )
    print(json.dumps({"dataset_mb": args.mb, "at": time.strftime("%H:%M:%S"), **results}, indent=2))


if __name__ == "__main__":
    main()
