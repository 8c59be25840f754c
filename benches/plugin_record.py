"""`lerobot-record` with the `lerobot_robot_openk` plugin vs `openk record` (issue 10).

Both in the lerobot oracle venv (lerobot 0.6.1), on the same simulated follower and leader,
one small synthetic camera, the same loop rate, fps, episodes and h264, one after the other in
one run. The plugin is found as the plugin tests find it: its dist-info in a temp folder on
PYTHONPATH, nothing installed. Per command: the loop's achieved rate (the plugin's
`openk summary` line; `openk record`'s per-episode loop metadata), rows per second of
recording, camera frames that repeat their predecessor (decoded from the stored video, the
same way for both: a frame equal to the previous one to within 1/255 on average), and the
end-of-episode wait: from an episode's end (its start line + episode_time_s) to the next
episode's start line, or to the process's exit after the last one. Prints one JSON document.

    $(scripts/oracle-venv.sh | tail -n 1) benches/plugin_record.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_ROOT = ROOT / "plugins" / "lerobot_robot_openk"
ROBOT = "openk-1-alpha_follower"
LEADER = "openk-1-sts_leader"


def plugin_dist(folder: Path) -> Path:
    text = (PLUGIN_ROOT / "pyproject.toml").read_text()
    name = re.search(r'^name = "([^"]+)"', text, re.M)
    version = re.search(r'^version = "([^"]+)"', text, re.M)
    if not (name and version):
        raise SystemExit("plugins/lerobot_robot_openk/pyproject.toml lacks name/version")
    info = folder / f"{name.group(1)}-{version.group(1)}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name.group(1)}\nVersion: {version.group(1)}\n"
    )
    (info / "top_level.txt").write_text("lerobot_robot_openk\n")
    return folder


def env_for(home: Path, path: list[Path]) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env.pop("OPENK_DEBUG", None)
    env.update(
        PYTHONPATH=os.pathsep.join(map(str, path)),
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        HF_LEROBOT_HOME=str(home / "lerobot_home"),
        HF_HOME=str(home / "hf_home"),
        WANDB_MODE="disabled",
        NO_COLOR="1",
    )
    return env


def run_timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[list, float, float, int]:
    """Runs argv; each output line with its wall-clock arrival time, start and exit times."""
    lines: list[tuple[float, str]] = []
    started = time.time()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = proc.wait(timeout=900)
    ended = time.time()
    reader.join(timeout=10)
    return lines, started, ended, code


def repeated_frames(root: Path) -> dict[str, int]:
    import av
    import numpy as np

    counts = {"frames": 0, "repeated": 0}
    for video in sorted(root.glob("videos/**/*.mp4")):
        with av.open(str(video)) as container:
            prev = None
            for frame in container.decode(video=0):
                img = frame.to_ndarray(format="rgb24").astype(np.int16)
                counts["frames"] += 1
                if prev is not None and float(np.abs(img - prev).mean()) < 1.0:
                    counts["repeated"] += 1
                prev = img
    return counts


def waits(starts: list[float], exit_t: float, episode_s: float) -> list[float]:
    ends = [t + episode_s for t in starts]
    nxt = [*starts[1:], exit_t]
    return [round(n - e, 3) for e, n in zip(ends, nxt, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hz", type=float, default=500.0, help="loop rate")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="per episode")
    parser.add_argument("--realtime", default="off")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    common = [
        "--dataset.single_task=follow the leader",
        f"--dataset.num_episodes={args.episodes}",
        f"--dataset.episode_time_s={args.seconds}",
        "--dataset.reset_time_s=0",
        f"--dataset.fps={args.fps}",
        "--dataset.push_to_hub=false",
        f"--teleop.type={LEADER}",
        "--teleop.port=sim",
        "--teleop.id=leader",
        f"--robot.type={ROBOT}",
        "--robot.port=sim",
        "--robot.id=follower",
    ]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="openk-bench-plugin-") as tmp:
        work = Path(tmp)
        dist = plugin_dist(work / "plugin_dist")

        # --- lerobot-record with the plugin ------------------------------------------------
        root = work / "lerobot_ds"
        argv = [
            str(bindir / "lerobot-record"),
            *common,
            "--robot.sts_port=sim",
            f"--robot.control_hz={args.hz}",
            f"--robot.realtime={args.realtime}",
            f"--robot.cameras={{front: {{type: openk_synthetic, width: 64, height: 48, "
            f"fps: {args.fps}}}}}",
            "--dataset.repo_id=bench/plugin_rec",
            f"--dataset.root={root}",
            "--dataset.rgb_encoder.vcodec=h264",
        ]
        env = env_for(work, [ROOT / "python", PLUGIN_ROOT, dist])
        lines, t0, t1, code = run_timed(argv, env, work)
        if code != 0:
            print("\n".join(text for _, text in lines[-60:]), file=sys.stderr)
            return code
        summary = [re.search(r"openk summary: (\{.*\})", text) for _, text in lines]
        report = json.loads([m for m in summary if m][-1].group(1))
        # log_say logs the line and lerobot's console echoes it: one start per second at most.
        starts: list[float] = []
        for t, text in lines:
            if "Recording episode" in text and (not starts or t - starts[-1] > 1.0):
                starts.append(t)
        info = json.loads((root / "meta" / "info.json").read_text())
        results["lerobot-record + plugin"] = {
            "achieved_hz": round(float(report["achieved_hz"]), 1),
            "rows": info["total_frames"],
            "rows_per_s": round(info["total_frames"] / (args.episodes * args.seconds), 2),
            "camera": repeated_frames(root),
            "end_of_episode_wait_s": waits(starts, t1, args.seconds),
            "wall_s": round(t1 - t0, 1),
        }

        # --- openk record ------------------------------------------------------------------
        root = work / "openk_ds"
        log_file = work / "openk_record.log"
        argv = [
            sys.executable,
            "-m",
            "openk.cli",
            "record",
            *common,
            f"--control_hz={args.hz}",
            f"--realtime={args.realtime}",
            f"--robot.cameras={{front: {{type: synthetic, width: 64, height: 48, "
            f"fps: {args.fps}}}}}",
            f"--robot.calibration_dir={work / 'calibration'}",
            f"--teleop.calibration_dir={work / 'calibration'}",
            "--dataset.repo_id=bench/openk_rec",
            f"--dataset.root={root}",
            "--vcodec=h264",
            f"--log_file={log_file}",
        ]
        lines, t0, t1, code = run_timed(argv, env_for(work, [ROOT / "python"]), work)
        if code != 0:
            print("\n".join(text for _, text in lines[-60:]), file=sys.stderr)
            return code
        starts = []
        for text in log_file.read_text().splitlines():
            if re.search(r"episode \d+/\d+ started", text):
                stamp = datetime.strptime(text[:23], "%Y-%m-%d %H:%M:%S.%f")
                starts.append(stamp.timestamp())
        extras = [
            json.loads(x)
            for x in (root / "meta" / "openk" / "episodes.jsonl").read_text().splitlines()
        ]
        info = json.loads((root / "meta" / "info.json").read_text())
        results["openk record"] = {
            "achieved_hz": [round(e["metadata"]["openk_loop"]["achieved_hz"], 1) for e in extras],
            "rows": info["total_frames"],
            "rows_per_s": round(info["total_frames"] / (args.episodes * args.seconds), 2),
            "camera": repeated_frames(root),
            "camera_repeats_counted_by_openk": [e["repeated_frames"] for e in extras],
            "end_of_episode_wait_s": waits(starts, t1, args.seconds),
            "wall_s": round(t1 - t0, 1),
        }
    print(
        json.dumps(
            {
                "hz": args.hz,
                "fps": args.fps,
                "episodes": args.episodes,
                "seconds_per_episode": args.seconds,
                "realtime": args.realtime,
                "loadavg_1m": round(os.getloadavg()[0], 2),
                **results,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
