"""A lerobot policy on CPU beside the 500 Hz loop on the simulated arm (issue 9).

Runs in the lerobot oracle venv (torch and lerobot 0.6.1 there), with this checkout's openk on
PYTHONPATH. Without `--policy.path` it first records 2 x 3 s of sim teleop with `openk record`
and trains a tiny ACT with `lerobot-train` in a temp dir (random-init backbone, CPU).

One run, one session of `openk._core.TeleopSession` on the sim follower at `--control-hz`:
  1. `--seconds` with a scripted producer (no inference) sending one action per row period;
  2. `--seconds` with `openk.policy` (LoadedPolicy + PolicyRunner) computing those actions on
     the newest observation and a synthetic camera frame;
then the ratio of loop overruns and lateness p99 with/without inference, the
observation-to-command latency (row capture -> action handed to the loop) p50/p99, and the
per-tick goal step of the policy's actions played by the loop at control rate
(record_fps = control_hz, so one row per tick): interpolated over the row period vs
step-hold (the goal jumps in one tick, then holds for the row). Prints one JSON document.

    PYTHONPATH=python $(scripts/oracle-venv.sh | tail -n 1) benches/rollout.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

# The tiny ACT and its training run are the tests' (tests/tiny_act.py): one recipe.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tiny_act import ROBOT, offline_env, train_tiny_act

FPS = 30.0


def pump(session: Any, until: float, on_batch: Any = None, wait_s: float = 0.05) -> list[Any]:
    import pyarrow as pa

    tables = []
    while time.monotonic() < until:
        batch = session.next_batch(wait_s)
        if batch is None:
            continue
        table = pa.table(batch)
        tables.append(table)
        if on_batch is not None:
            on_batch(table)
    return tables


def telemetry_dict(t: Any) -> dict[str, Any]:
    return {
        "ticks": t.ticks,
        "overruns": t.overruns,
        "achieved_hz": round(t.achieved_hz, 2),
        "lateness_p99_us": round(t.lateness_p99_ns / 1e3, 1),
        "lateness_max_us": round(t.lateness_max_ns / 1e3, 1),
        "late_actions": t.late_actions,
    }


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy.path", dest="policy_path", default=None)
    parser.add_argument("--control-hz", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--realtime", default="auto")
    args = parser.parse_args()

    from openk._core import TeleopSession
    from openk.policy.runner import LoadedPolicy, ObservationTap, PolicyRunner

    with tempfile.TemporaryDirectory(prefix="openk-bench-rollout-") as tmp:
        work = Path(tmp)
        os.environ.update(offline_env(work))
        started = time.monotonic()
        path = Path(args.policy_path) if args.policy_path else train_tiny_act(work, sys.executable)
        train_s = time.monotonic() - started
        loaded = LoadedPolicy(str(path), device="cpu", task="follow", robot_type=ROBOT)
        cam_keys = [k for k in loaded.config.input_features if k.startswith("observation.images")]
        robot = {
            "type": ROBOT,
            "port": "sim",
            "id": "follower",
            "calibration_dir": str(work / "calibration"),
        }

        # --- phases 1 and 2: loop timing without and with inference -------------------------
        session = TeleopSession(
            robot, None, control_hz=args.control_hz, record_fps=FPS, realtime=args.realtime,
            batch_rows=1,
        )  # fmt: skip
        session.start()
        names = list(session.action_names)
        tap = ObservationTap(cam_keys)
        rng = np.random.default_rng(0)
        for key in cam_keys:
            c, h, w = loaded.config.input_features[key].shape
            tap.on_frame(key, rng.integers(0, 256, (h, w, c), dtype=np.uint8))
        try:
            # Warm-up (first inference allocates), then phase 1: a scripted producer.
            session.start_episode()
            stop = threading.Event()

            def scripted() -> None:
                k = 0
                while not stop.wait(1.0 / FPS):
                    k += 1
                    session.send_action([5.0 * math.sin(k / FPS) for _ in names])

            obs = None
            while obs is None:
                pump(session, time.monotonic() + 0.1, tap.on_batch)
                obs = tap.observe()
            loaded.reset()
            loaded.predict(obs)
            session.end_episode()

            session.start_episode()
            producer = threading.Thread(target=scripted, daemon=True)
            producer.start()
            pump(session, time.monotonic() + args.seconds, tap.on_batch)
            stop.set()
            producer.join()
            without = session.end_episode()

            latencies: list[float] = []
            # Where the latency goes: the newest row's age when the policy takes it (the rows'
            # 30 Hz clock and the policy's are not aligned) and each row's delivery to Python.
            row_age: list[float] = []
            delivery: list[float] = []

            def observe() -> Any:
                obs = tap.observe()
                if obs is not None:
                    row_age.append((time.monotonic_ns() - tap.observed_t_ns) / 1e6)
                return obs

            def on_batch(table: Any) -> None:
                tap.on_batch(table)
                t_ns = table.column("capture_time_ns")[table.num_rows - 1].as_py()
                delivery.append((time.monotonic_ns() - t_ns) / 1e6)

            actions: list[np.ndarray] = []

            def trace(_obs: Any, action: np.ndarray) -> None:
                latencies.append((time.monotonic_ns() - tap.observed_t_ns) / 1e6)
                actions.append(np.asarray(action, dtype=np.float64))

            runner = PolicyRunner(
                loaded.predict, loaded.reset, observe, session.send_action,
                wait_row=tap.wait_row, fps=FPS, action_names=names, trace=trace,
            )  # fmt: skip
            session.start_episode()
            runner.start_episode()
            pump(session, time.monotonic() + args.seconds, on_batch)
            runner.pause()
            with_inf = session.end_episode()
            stats = runner.stats(whole_run=True)
            runner.close()
        finally:
            session.stop()

        # --- phase 3: the policy's actions at control rate, interpolated vs step-hold --------
        # One row per tick (record_fps = control_hz). Interpolated: each action due one policy
        # period ahead, the loop moves the goal there linearly. Step-hold: due on the next
        # tick, so the goal jumps in one tick and holds until the next action.
        seq = actions[: int(3 * FPS)] or [np.zeros(len(names))]
        steps: dict[str, np.ndarray] = {}
        for mode in ("interpolated", "step_hold"):
            s = TeleopSession(
                robot, None, control_hz=args.control_hz, record_fps=args.control_hz,
                realtime=args.realtime, batch_rows=8,
            )  # fmt: skip
            s.start()
            try:
                s.start_episode()
                s.send_actions([seq[0].tolist()])
                pump(s, time.monotonic() + 0.3)
                tables = []
                period = round(1e9 / FPS)
                t0 = time.monotonic_ns()
                for k, action in enumerate(seq[1:], start=1):
                    due = t0 + k * period
                    while time.monotonic_ns() < due - period:
                        tables += pump(s, time.monotonic() + 0.001, wait_s=0.001)
                    start = due if mode == "interpolated" else None
                    s.send_actions([action.tolist()], start_ns=start)
                tables += pump(s, time.monotonic() + 0.2)
                s.end_episode()
            finally:
                s.stop()
            goal = np.concatenate(
                [np.asarray(t.column("action").to_pylist(), dtype=np.float64) for t in tables]
            )
            steps[mode] = np.abs(np.diff(goal, axis=0)).max(axis=1)

    def step_stats(v: np.ndarray) -> dict[str, float]:
        moving = v[v > 1e-9]
        return {
            "max": round(float(v.max()), 4),
            "p99": round(float(np.percentile(v, 99)), 4),
            "ticks_moving_pct": round(100.0 * moving.size / max(v.size, 1), 1),
        }

    interp, hold = step_stats(steps["interpolated"]), step_stats(steps["step_hold"])
    result = {
        "control_hz": args.control_hz,
        "policy_fps": FPS,
        "seconds_per_phase": args.seconds,
        "policy_source": "given"
        if args.policy_path
        else f"tiny ACT trained here in {train_s:.0f} s",
        "realtime": with_inf.realtime,
        "cpus": len(os.sched_getaffinity(0)),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "without_inference": telemetry_dict(without),
        "with_inference": telemetry_dict(with_inf),
        "overruns_ratio_with_vs_without": ratio(with_inf.overruns, without.overruns),
        "lateness_p99_ratio_with_vs_without": ratio(
            with_inf.lateness_p99_ns, without.lateness_p99_ns
        ),
        "policy": stats,
        "obs_to_command_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
            "p99": round(float(np.percentile(latencies, 99)), 2) if latencies else None,
            "n": len(latencies),
            "row_age_at_observe_p50": pct(row_age, 50),
            "row_age_at_observe_p99": pct(row_age, 99),
            "row_delivery_p50": pct(delivery, 50),
            "row_delivery_p99": pct(delivery, 99),
        },
        "goal_step_per_tick": {
            "interpolated": interp,
            "step_hold": hold,
            "max_ratio_step_hold_vs_interpolated": ratio(hold["max"], interp["max"]),
            "p99_ratio_step_hold_vs_interpolated": ratio(hold["p99"], interp["p99"]),
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
