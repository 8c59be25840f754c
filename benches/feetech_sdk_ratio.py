"""Sync read of 7 STS3215 at 1 Mbaud: openk's FeetechBus vs feetech-servo-sdk, same simulator.

Both clients read Present_Position from servos 1-7 in one SYNC_READ transaction, against one
FeetechSim with real wire timing. Rounds alternate between the clients so both see the same
machine load; the result is a ratio within this one run. The wire-time floor of the
transaction is 710 us (15 bytes out + 7 x 8 bytes back at 10 us/byte).

    .venv/bin/python benches/feetech_sdk_ratio.py [--iterations 2000] [--usb-latency-ms 0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import scservo_sdk as scs

from openk._core import feetech

IDS = [1, 2, 3, 4, 5, 6, 7]
PRESENT_POSITION = 56
WIRE_FLOOR_US = 710.0


def openk_round(port: str, n: int) -> list[float]:
    motors = {f"m{i}": i for i in IDS}
    with feetech.FeetechBus(port, motors, timeout_s=0.02, retries=0) as bus:
        bus.sync_read("Present_Position")  # warm-up
        out = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            values = bus.sync_read("Present_Position")
            out.append((time.perf_counter_ns() - t0) / 1000)
        assert len(values) == len(IDS)
        return out


def sdk_round(port: str, n: int) -> list[float]:
    handler = scs.PortHandler(port)
    assert handler.openPort() and handler.setBaudRate(1_000_000)
    packets = scs.PacketHandler(0)
    reader = scs.GroupSyncRead(handler, packets, PRESENT_POSITION, 2)
    for i in IDS:
        reader.addParam(i)
    out = []
    failures = 0
    try:
        reader.txRxPacket()  # warm-up
        for _ in range(n):
            t0 = time.perf_counter_ns()
            ok = reader.txRxPacket() == scs.COMM_SUCCESS
            values = [reader.getData(i, PRESENT_POSITION, 2) for i in IDS]
            out.append((time.perf_counter_ns() - t0) / 1000)
            failures += not ok
        assert len(values) == len(IDS)
    finally:
        handler.closePort()
    if failures:
        print(f"  (feetech-servo-sdk: {failures} of {n} sync reads failed)")
    return out


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))]

    mean = sum(s) / len(s)
    return {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "mean": mean, "hz": 1e6 / mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000, help="sync reads per client")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per client")
    parser.add_argument("--usb-latency-ms", type=float, default=0.0, help="simulated USB hop")
    args = parser.parse_args()

    per_round = max(1, args.iterations // args.rounds)
    results: dict[str, list[float]] = {"openk": [], "feetech-servo-sdk": []}
    runners: dict[str, Callable[[str, int], list[float]]] = {
        "openk": openk_round,
        "feetech-servo-sdk": sdk_round,
    }
    with feetech.FeetechSim(ids=IDS, usb_latency_s=args.usb_latency_ms / 1000) as sim:
        for _ in range(args.rounds):
            for name, run in runners.items():
                results[name] += run(sim.port, per_round)
        stats = sim.stats()

    print(
        f"sync read of 7 STS3215 @ 1 Mbaud, simulated USB hop {args.usb_latency_ms} ms, "
        f"{per_round * args.rounds} reads per client "
        f"(wire-time floor {WIRE_FLOOR_US:.0f} us + USB hop)"
    )
    print(f"{'client':<20}{'p50 us':>10}{'p90 us':>10}{'p99 us':>10}{'mean us':>10}{'rate Hz':>10}")
    table = {name: summary(samples) for name, samples in results.items()}
    for name, s in table.items():
        print(
            f"{name:<20}{s['p50']:>10.0f}{s['p90']:>10.0f}{s['p99']:>10.0f}"
            f"{s['mean']:>10.0f}{s['hz']:>10.0f}"
        )
    ours, peer = table["openk"], table["feetech-servo-sdk"]
    print(
        f"ratio feetech-servo-sdk / openk: p50 {peer['p50'] / ours['p50']:.2f}x, "
        f"mean {peer['mean'] / ours['mean']:.2f}x; "
        f"openk p50 is {ours['p50'] / WIRE_FLOOR_US:.2f}x the wire floor"
    )
    print(f"simulator: {stats['chunks_received']} requests, {stats['replies_sent']} replies")


if __name__ == "__main__":
    main()
