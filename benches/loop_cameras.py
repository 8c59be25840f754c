"""Loop timing with and without two synthetic cameras capturing in Python threads.

The control loop runs on its own Rust thread and never waits for cameras; this measures that
claim: the same simulated teleop (STS leader -> follower2) at `--hz`, one episode without
cameras, one with two 640x480 @ 30 fps synthetic cameras capturing (each frame copied, as a
writer would), and the loop telemetry of both. Prints one JSON document.

    python benches/loop_cameras.py --hz 250 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Any

import openk._core as core
from openk.cameras import CaptureThread, SyntheticCamera

KEYS = (
    "achieved_hz",
    "overruns",
    "lateness_p50_ns",
    "lateness_p99_ns",
    "lateness_p999_ns",
    "lateness_max_ns",
    "rows",
    "rows_repeated",
)


def episode(session: Any, seconds: float) -> dict[str, Any]:
    session.start_episode()
    time.sleep(seconds)
    tele = session.end_episode().to_dict()
    while session.next_batch(0.0) is not None:
        pass
    return {k: tele[k] for k in KEYS} | {"ticks": tele["ticks"], "realtime": tele["realtime"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hz", type=float, default=250.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--realtime", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as calib:
        robot = {
            "type": "openk-1-alpha_follower2",
            "port": "sim",
            "sts_port": "sim",
            "id": "bench",
            "calibration_dir": calib,
        }
        teleop = {"type": "openk-1-sts_leader", "port": "sim", "id": "bench"}
        teleop["calibration_dir"] = calib
        session = core.TeleopSession(
            robot, teleop, control_hz=args.hz, record_fps=30.0, realtime=args.realtime
        )
        with session:
            time.sleep(0.3)
            without = episode(session, args.seconds)
            frames = [0, 0]

            def sink(key: str, frame: Any, stamp: int) -> None:
                frames[0 if key == "cam_1" else 1] += int(frame.copy().size > 0)

            cams = [
                CaptureThread(SyntheticCamera(k, 640, 480, 30), sink).start()
                for k in ("cam_1", "cam_2")
            ]
            try:
                with_cams = episode(session, args.seconds)
            finally:
                for c in cams:
                    c.stop()
    print(
        json.dumps(
            {
                "hz": args.hz,
                "without_cameras": without,
                "with_two_cameras": with_cams,
                "camera_frames": frames,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
