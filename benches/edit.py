"""Dataset edits: `openk edit` vs lerobot 0.6.1's `lerobot-edit-dataset`, on the same data.

Two jobs: delete 5 of 50 episodes (2 cameras), and merge 5 datasets. Both tools run as their
command line (a fresh process each, as a user runs them) and write a new dataset. For each:
wall time, frames re-encoded (output video packets found nowhere among the source's packets),
and whether the kept frames decode bit-identical to the source's.

    .venv/bin/python benches/edit.py [--episodes 50 --frames 30]

Needs the oracle venv (OPENK_ORACLE_PYTHON, else scripts/oracle-venv.sh). Prints a table and
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests" / "dataset"))

CAMS = {"front": (96, 128), "wrist": (96, 128)}
FPS = 30


def oracle_python() -> str:
    path = os.environ.get("OPENK_ORACLE_PYTHON")
    if path:
        return path
    out = subprocess.run(
        [str(REPO / "scripts" / "oracle-venv.sh")], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def record(root: Path, episodes: int, frames: int) -> None:
    from ds_synth import features, record_episode

    from openk.dataset import DatasetWriter, VideoConfig

    writer = DatasetWriter.create(
        "bench/edit",
        FPS,
        features(CAMS),
        root=root,
        robot_type="openk-1-alpha_follower",
        video=VideoConfig(isolate=False),
    )
    with writer:
        for e in range(episodes):
            record_episode(writer, frames, FPS, CAMS, task=f"task {e % 3}", first_number=e)
            writer.save_episode()


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return elapsed


def oracle_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def all_packets(root: Path) -> set[bytes]:
    from openk.dataset.remux import _read_packets

    out: set[bytes] = set()
    for path in sorted((root / "videos").rglob("*.mp4")):
        pkts, _ = _read_packets(path, FPS)
        out.update(bytes(p.packet) for p in pkts)
    return out


def reencoded_frames(result: Path, sources: list[Path]) -> int:
    from openk.dataset.remux import _read_packets

    known: set[bytes] = set()
    for s in sources:
        known |= all_packets(s)
    n = 0
    for path in sorted((result / "videos").rglob("*.mp4")):
        pkts, _ = _read_packets(path, FPS)
        n += sum(1 for p in pkts if bytes(p.packet) not in known)
    return n


def identical_fraction(result: Path, pairs: list[tuple[Path, int]]) -> tuple[int, int]:
    """(frames bit-identical, frames compared): result episode i vs pairs[i] (source, ep)."""
    from openk.dataset.reader import open_dataset

    out = open_dataset(result)
    same = total = 0
    readers: dict[Path, object] = {}
    for i, (src, ep) in enumerate(pairs):
        reader = readers.setdefault(src, open_dataset(src))
        for key in out.camera_keys():
            a = out.camera_frames(i, key)
            b = reader.camera_frames(ep, key)  # type: ignore[attr-defined]
            total += len(b)
            if a.shape == b.shape:
                same += int(sum(np.array_equal(x, y) for x, y in zip(a, b, strict=True)))
    return same, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--merge-datasets", type=int, default=5)
    args = parser.parse_args()
    oracle = oracle_python()
    lerobot_edit = str(Path(oracle).parent / "lerobot-edit-dataset")
    openk_cli = [sys.executable, "-m", "openk.cli"]
    openk_env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="openk-bench-edit-") as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "src"
        t = time.perf_counter()
        record(src, args.episodes, args.frames)
        print(
            f"recorded {args.episodes} x {args.frames} frames, 2 cameras in "
            f"{time.perf_counter() - t:.1f} s"
        )
        gone = list(range(0, args.episodes, args.episodes // 5))[:5]
        kept = [e for e in range(args.episodes) if e not in gone]

        # ---- delete
        out_o, out_l = tmp / "del_openk", tmp / "del_lerobot"
        wall_o = timed(
            [
                *openk_cli,
                "edit",
                "delete",
                str(src),
                "--episodes",
                ",".join(map(str, gone)),
                "--output",
                str(out_o),
            ],
            openk_env,
        )
        wall_l = timed(
            [
                lerobot_edit,
                "--repo_id",
                "bench/edit",
                "--root",
                str(src),
                "--new_repo_id",
                "bench/edit_del",
                "--new_root",
                str(out_l),
                "--operation.type",
                "delete_episodes",
                "--operation.episode_indices",
                json.dumps(gone),
            ],
            oracle_env(),
        )
        for name, out, wall in (("openk", out_o, wall_o), ("lerobot", out_l, wall_l)):
            same, total = identical_fraction(out, [(src, e) for e in kept])
            results[f"delete/{name}"] = {
                "wall_s": round(wall, 2),
                "reencoded_frames": reencoded_frames(out, [src]),
                "identical_frames": same,
                "compared_frames": total,
            }

        # ---- merge
        per = max(args.episodes // args.merge_datasets, 1)
        # the parts: copies of the first `per` episodes, written by openk (cheap to make)
        first = tmp / "first"
        timed(
            [
                *openk_cli,
                "edit",
                "delete",
                str(src),
                "--episodes",
                f"{per}-{args.episodes - 1}",
                "--output",
                str(first),
            ],
            openk_env,
        )
        parts = [tmp / f"part{i}" for i in range(args.merge_datasets)]
        for part in parts:
            shutil.copytree(first, part)
        out_o, out_l = tmp / "merge_openk", tmp / "merge_lerobot"
        wall_o = timed(
            [*openk_cli, "edit", "merge", *map(str, parts), "--output", str(out_o)], openk_env
        )
        wall_l = timed(
            [
                lerobot_edit,
                "--new_repo_id",
                "bench/edit_merged",
                "--new_root",
                str(out_l),
                "--operation.type",
                "merge",
                "--operation.repo_ids",
                json.dumps([f"bench/part{i}" for i in range(len(parts))]),
                "--operation.roots",
                json.dumps([str(p) for p in parts]),
            ],
            oracle_env(),
        )
        pairs = [(first, e) for _ in parts for e in range(per)]
        for name, out, wall in (("openk", out_o, wall_o), ("lerobot", out_l, wall_l)):
            same, total = identical_fraction(out, pairs)
            results[f"merge/{name}"] = {
                "wall_s": round(wall, 2),
                "reencoded_frames": reencoded_frames(out, [first]),
                "identical_frames": same,
                "compared_frames": total,
            }
    print(f"{'job':<16}{'wall s':>8}{'re-encoded':>12}{'bit-identical kept frames':>28}")
    for job, r in results.items():
        print(
            f"{job:<16}{r['wall_s']:>8}{r['reencoded_frames']:>12}"
            f"{r['identical_frames']:>16} / {r['compared_frames']}"
        )
    print(json.dumps({"episodes": args.episodes, "frames": args.frames, **results}))


if __name__ == "__main__":
    main()
