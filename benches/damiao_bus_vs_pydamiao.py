"""5-motor DAMIAO MIT round trip (command + feedback for every motor) on the same adapter
simulator, at real timing: openk's DamiaoBus (Rust, via the bindings) vs pydamiao (PyPI).

Run with the project venv (native module built by scripts/bootstrap.sh --test):
    .venv/bin/python benches/damiao_bus_vs_pydamiao.py [--seconds 5]

Wire-time floor (spec §E, CAN 1 Mbit/s): 10 CAN frames ≈ 1.11-1.35 ms plus the simulated
adapter/USB latency (250 µs) per round trip, i.e. ≈ 620-720 rounds/s at most for a bus that
pipelines the five commands. The two clients run one after the other on one simulator, so
the ratio compares them under the same machine load.
"""

from __future__ import annotations

import argparse
import statistics
import time

from pydamiao import ControlMode, MotorManager, MotorType, SerialBus

from openk._core import damiao

ARM = [
    ("shoulder_pan", "DM6006", 0x01, 0x11),
    ("shoulder_lift", "DM6006", 0x02, 0x12),
    ("shoulder_roll", "DM4310", 0x03, 0x13),
    ("elbow_flex", "DM4310", 0x04, 0x14),
    ("wrist_roll", "DM4310", 0x05, 0x15),
]
HOLD = (0.0, 0.0, 20.0, 1.0, 0.0)


def run_openk(port: str, seconds: float) -> list[float]:
    rounds: list[float] = []
    with damiao.DamiaoBus(port, ARM) as bus:
        bus.connect()
        bus.enable()
        commands = [HOLD] * len(ARM)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            bus.mit(commands)
            rounds.append(time.perf_counter() - t0)
        bus.disable()
    return rounds


def run_pydamiao(port: str, seconds: float) -> list[float]:
    types = {"DM6006": MotorType.DM6006, "DM4310": MotorType.DM4310}
    bus = SerialBus(port, baudrate=921600, timeout=0.001)
    manager = MotorManager(bus)
    motors = []
    for name, model, esc, mst in ARM:
        motor = manager.add_motor(types[model], esc, mst, name=name)
        motor.auto_disable = False
        motors.append(motor)
    manager.set_mode_all(ControlMode.MIT)
    manager.enable_all()
    rounds: list[float] = []
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            before = [m.last_update_time for m in motors]
            for m in motors:
                m.set_mit(pos=0.0, vel=0.0, kp=20.0, kd=1.0, torque=0.0)
            # One feedback per motor: wait until each motor's state has been updated.
            deadline = t0 + 0.5
            while any(m.last_update_time == b for m, b in zip(motors, before, strict=True)):
                if time.perf_counter() > deadline:
                    raise TimeoutError("pydamiao: a motor did not answer within 0.5 s")
                time.sleep(0)
            rounds.append(time.perf_counter() - t0)
    finally:
        bus.close()
    return rounds


def summary(name: str, rounds: list[float]) -> tuple[float, str]:
    rounds_ms = sorted(r * 1e3 for r in rounds)
    p50 = statistics.median(rounds_ms)
    p99 = rounds_ms[min(len(rounds_ms) - 1, int(len(rounds_ms) * 0.99))]
    rate = len(rounds) / sum(rounds)
    line = f"{name:10s} {len(rounds):6d} rounds  {rate:8.1f} rounds/s"
    return rate, f"{line}  p50 {p50:.3f} ms  p99 {p99:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with damiao.DamiaoSim(ARM) as sim:
        ours = run_openk(sim.port, args.seconds)
        peer = run_pydamiao(sim.port, args.seconds)
    ours_rate, ours_line = summary("openk", ours)
    peer_rate, peer_line = summary("pydamiao", peer)
    print("5 DAMIAO motors, MIT command + feedback per motor, adapter simulator at real timing")
    print("wire-time floor: 10 CAN frames 1.11-1.35 ms + 0.25 ms USB => <= ~620-720 rounds/s")
    print(ours_line)
    print(peer_line)
    print(f"ratio openk/pydamiao: {ours_rate / peer_rate:.1f}x")


if __name__ == "__main__":
    main()
