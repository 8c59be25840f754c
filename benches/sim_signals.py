"""How real the recorded joint signals look: per-column statistics of a dataset folder.

For every DAMIAO joint of a recording (a column pair `<j>.pos` / `<j>.vel` in
`observation.state`, and `<j>.tor` when present) it prints, per episode and over all
episodes: the number of distinct `.vel` values, the share of rows where `.vel` did not change
from the previous row, the Pearson correlation of `.vel` with the central finite difference of
`.pos`, and the range of `.tor`. For the action (the leader's joints) it counts the rows where
every joint reads exactly 0 at once. With `--cameras` it also prints the camera frames each
episode had to repeat (from meta/openk/episodes.jsonl). Prints one JSON document.

    .venv/bin/python benches/sim_signals.py outputs/datasets/openk_sim_<time>
    .venv/bin/python benches/sim_signals.py --record /tmp/demo   # records the README demo first
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent


def _columns(info: dict[str, Any], key: str) -> list[str]:
    feature = info["features"].get(key)
    return list(feature["names"]) if feature else []


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or float(np.std(a)) == 0.0 or float(np.std(b)) == 0.0:
        return 0.0 if len(a) >= 3 else None
    return float(np.corrcoef(a, b)[0, 1])


def joint_stats(pos: np.ndarray, vel: np.ndarray, tor: np.ndarray | None) -> dict[str, Any]:
    """Statistics of one joint over one episode's rows (in time order)."""
    # Central difference: the slope around each row, aligned with that row's velocity.
    dpos = (pos[2:] - pos[:-2]) / 2.0
    out: dict[str, Any] = {
        "rows": len(vel),
        "vel_distinct": len(np.unique(vel)),
        "vel_static_share": round(float(np.mean(vel[1:] == vel[:-1])), 3) if len(vel) > 1 else None,
        "vel_corr_dpos": _round(_corr(vel[1:-1], dpos)),
    }
    if tor is not None:
        out["tor_distinct"] = len(np.unique(tor))
        out["tor_min"] = round(float(tor.min()), 3)
        out["tor_max"] = round(float(tor.max()), 3)
        out["tor_abs_p99"] = round(float(np.percentile(np.abs(tor), 99)), 3)
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def dataset_stats(root: Path, cameras: bool = True) -> dict[str, Any]:
    info = json.loads((root / "meta" / "info.json").read_text())
    state_names = _columns(info, "observation.state")
    action_names = _columns(info, "action")
    table = pq.read_table(sorted((root / "data").rglob("*.parquet")))
    episodes = np.asarray(table.column("episode_index").to_pylist())
    frames = np.asarray(table.column("frame_index").to_pylist())
    state = np.asarray(table.column("observation.state").to_pylist(), dtype=np.float64)
    action = (
        np.asarray(table.column("action").to_pylist(), dtype=np.float64) if action_names else None
    )
    joints = [n[: -len(".vel")] for n in state_names if n.endswith(".vel")]
    result: dict[str, Any] = {"dataset": str(root), "episodes": []}
    for ep in sorted(set(episodes.tolist())):
        rows = np.flatnonzero(episodes == ep)
        rows = rows[np.argsort(frames[rows])]
        per_joint = {}
        for j in joints:
            pos = state[rows, state_names.index(f"{j}.pos")]
            vel = state[rows, state_names.index(f"{j}.vel")]
            tor_name = f"{j}.tor"
            tor = state[rows, state_names.index(tor_name)] if tor_name in state_names else None
            per_joint[j] = joint_stats(pos, vel, tor)
        entry: dict[str, Any] = {"episode": ep, "rows": len(rows), "joints": per_joint}
        if action is not None:
            a = action[rows]
            entry["action_rows_all_zero"] = int(np.sum(np.all(a == 0.0, axis=1)))
            entry["action_rows_all_equal"] = int(np.sum(np.all(a == a[:, :1], axis=1)))
        result["episodes"].append(entry)
    per_joint_all = {}
    for j in joints:
        per_joint_all[j] = {
            "vel_distinct_min": min(e["joints"][j]["vel_distinct"] for e in result["episodes"]),
            "vel_corr_dpos_min": min(
                (e["joints"][j]["vel_corr_dpos"] or 0.0) for e in result["episodes"]
            ),
            **(
                {
                    "tor_abs_max": max(
                        max(abs(e["joints"][j]["tor_min"]), abs(e["joints"][j]["tor_max"]))
                        for e in result["episodes"]
                    )
                }
                if f"{j}.tor" in state_names
                else {}
            ),
        }
    result["summary"] = per_joint_all
    extras = root / "meta" / "openk" / "episodes.jsonl"
    if cameras and extras.exists():
        result["repeated_camera_frames"] = [
            json.loads(line).get("repeated_frames") for line in extras.read_text().splitlines()
        ]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="dataset folder (or where --record writes it)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="first record the README demo (config/record_sim.yaml) into ROOT",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per episode, with --record")
    parser.add_argument("--episodes", type=int, default=2, help="with --record")
    parser.add_argument("--control", default=None, help="POS_VEL or MIT, with --record")
    args = parser.parse_args()
    if args.record:
        if args.root.exists():
            parser.error(f"{args.root} exists; --record writes a new dataset")
        command = [
            str(Path(sys.executable).parent / "openk"),
            "record",
            f"--config_path={ROOT / 'config' / 'record_sim.yaml'}",
            f"--dataset.root={args.root}",
            f"--robot.calibration_dir={args.root}.calibration",
            f"--teleop.calibration_dir={args.root}.calibration",
            f"--dataset.num_episodes={args.episodes}",
            f"--dataset.episode_time_s={args.seconds}",
            "--dataset.reset_time_s=1",
            f"--log_file={args.root}.log",
        ]
        if args.control:
            command.append(f"--robot.control_type={args.control}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            return done.returncode
    elif not (args.root / "meta" / "info.json").exists():
        parser.error(f"{args.root} is not a dataset folder (no meta/info.json)")
    print(json.dumps(dataset_stats(args.root), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
