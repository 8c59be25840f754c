"""The whole recording path on the simulated arm: loop timing while two cameras are encoded.

Runs `openk record` (the README's demo config: sim STS leader -> sim follower, two synthetic
640x480 @ 30 fps cameras) at `--hz` with `--vcodec`, then reads back what the dataset stored
per episode: the loop telemetry of that episode (achieved rate, overruns, lateness, each bus's
round time) and the rows that had to reuse a camera frame. This is the project's budget
"real-time encoding of 2 x 640x480 @ 30 fps on 2 cores without loop overruns", measured end to
end.
Prints one JSON document.

    .venv/bin/python benches/record_sim.py --hz 500 --seconds 30 --vcodec libsvtav1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hz", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="per episode")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--vcodec", default="libsvtav1")
    parser.add_argument("--realtime", default="auto")
    parser.add_argument("--robot", default="openk-1-alpha_follower")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        command = [
            str(Path(sys.executable).parent / "openk"),
            "record",
            f"--config_path={ROOT / 'config' / 'record_sim.yaml'}",
            f"--robot.type={args.robot}",
            f"--robot.calibration_dir={tmp}/calibration",
            f"--teleop.calibration_dir={tmp}/calibration",
            f"--dataset.root={root}",
            f"--dataset.num_episodes={args.episodes}",
            f"--dataset.episode_time_s={args.seconds}",
            "--dataset.reset_time_s=1",
            f"--control_hz={args.hz}",
            f"--vcodec={args.vcodec}",
            f"--realtime={args.realtime}",
            f"--log_file={tmp}/record.log",
        ]
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            return done.returncode
        extras = (root / "meta" / "openk" / "episodes.jsonl").read_text().splitlines()
        episodes = []
        for extra in map(json.loads, extras):
            loop = extra["metadata"]["openk_loop"]
            episodes.append(
                {
                    "rows": extra["length"],
                    "repeated_camera_frames": extra["repeated_frames"],
                    "realtime": loop["realtime"],
                    "achieved_hz": round(loop["achieved_hz"], 1),
                    "ticks": loop["ticks"],
                    "overruns": loop["overruns"],
                    "lateness_p99_ns": loop["lateness_p99_ns"],
                    "lateness_max_ns": loop["lateness_max_ns"],
                    "bus_round_p99_ns": {
                        part.split(" bus on ")[0]: r["p99_ns"]
                        for part, r in loop["bus_round"].items()
                    },
                    "bus_errors": loop["bus_errors"],
                }
            )
    result = {
        "hz": args.hz,
        "vcodec": args.vcodec,
        "robot": args.robot,
        "seconds_per_episode": args.seconds,
        "wall_s": round(time.monotonic() - started, 1),
        "episodes": episodes,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
