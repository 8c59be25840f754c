"""Python peer of the openk teleop loop, built the way the reference project does it.

Leader: 7 STS3215 read with feetech-servo-sdk's GroupSyncRead (what lerobot's FeetechMotorsBus
does). Follower: 5 DAMIAO motors through pydamiao (state refreshed at most every 5 ms, as
OpenK's DamiaoMotorsBus does, then one MIT command per motor) and 2 STS3215 with GroupSyncWrite
goals plus a GroupSyncRead of their positions. The loop runs free (no sleep) for `--seconds`;
its tick rate is the highest rate it can sustain. Prints one JSON document.

Ports are the simulators' ptys (the Rust jitter bench starts them and runs this script), e.g.
    python benches/loop_peer.py --leader-port /dev/pts/3 --damiao-port /dev/pts/4 \
        --sts-port /dev/pts/5 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

PRESENT_POSITION = 56
GOAL_POSITION = 42
LEADER_IDS = [1, 2, 3, 4, 5, 6, 7]
FOLLOWER_STS_IDS = [2, 1]  # wrist_flex, grip
DAMIAO_MOTORS = [  # name, model, esc id, mst id (as the simulator is configured)
    ("shoulder_pan", "DM6006", 0x01, 0x11),
    ("shoulder_lift", "DM6006", 0x02, 0x12),
    ("shoulder_roll", "DM4310", 0x03, 0x13),
    ("elbow_flex", "DM4310", 0x04, 0x14),
    ("wrist_roll", "DM4310", 0x05, 0x15),
]
REFRESH_INTERVAL_S = 0.005  # OpenK's MIN_TELEMETRY_INTERVAL_S


def run(leader_port: str, damiao_port: str, sts_port: str, seconds: float) -> dict[str, object]:
    import pydamiao
    import scservo_sdk as scs

    leader_port_h = scs.PortHandler(leader_port)
    leader_port_h.openPort()
    leader_port_h.setBaudRate(1_000_000)
    packets = scs.PacketHandler(0)
    leader_read = scs.GroupSyncRead(leader_port_h, packets, PRESENT_POSITION, 2)
    for i in LEADER_IDS:
        leader_read.addParam(i)

    sts_port_h = scs.PortHandler(sts_port)
    sts_port_h.openPort()
    sts_port_h.setBaudRate(1_000_000)
    sts_read = scs.GroupSyncRead(sts_port_h, packets, PRESENT_POSITION, 2)
    for i in FOLLOWER_STS_IDS:
        sts_read.addParam(i)
    sts_write = scs.GroupSyncWrite(sts_port_h, packets, GOAL_POSITION, 2)

    # pydamiao's receiver thread blocks in serial.read(64) for up to `timeout`; 1 ms (not its
    # 0.1 s default) is the fastest setting, so the peer gets its best case.
    bus = pydamiao.SerialBus(damiao_port, baudrate=921600, timeout=0.001)
    motors = []
    for name, model, esc, mst in DAMIAO_MOTORS:
        m = pydamiao.Motor(bus, pydamiao.MotorType[model], esc, mst, name=name, auto_disable=False)
        m.set_mode(pydamiao.ControlMode.MIT)
        m.enable()
        motors.append(m)

    ticks = 0
    errors = 0
    tick_s: list[float] = []
    last_refresh = 0.0
    start = time.perf_counter()
    end = start + seconds
    while (now := time.perf_counter()) < end:
        t0 = now
        # Leader positions.
        if leader_read.txRxPacket() != scs.COMM_SUCCESS:
            errors += 1
        leader = [leader_read.getData(i, PRESENT_POSITION, 2) for i in LEADER_IDS]
        # Follower state: DAMIAO refresh (throttled like OpenK), STS positions.
        if now - last_refresh >= REFRESH_INTERVAL_S:
            for m in motors:
                if not m.refresh_state(timeout=0.05):
                    errors += 1
            last_refresh = now
        if sts_read.txRxPacket() != scs.COMM_SUCCESS:
            errors += 1
        # Commands: leader ticks -> radians around the middle, MIT per motor; STS goals.
        for m, raw in zip(motors, leader[:5], strict=True):
            q = (raw - 2048) / 4096 * 2 * math.pi
            m.set_mit(q, 0.0, 20.0, 1.0, 0.0)
        sts_write.clearParam()
        for i, raw in zip(FOLLOWER_STS_IDS, leader[5:7], strict=True):
            sts_write.addParam(i, [raw & 0xFF, (raw >> 8) & 0xFF])
        sts_write.txPacket()
        ticks += 1
        tick_s.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    bus.close()
    leader_port_h.closePort()
    sts_port_h.closePort()
    tick_s.sort()
    return {
        "ticks": ticks,
        "errors": errors,
        "seconds": elapsed,
        "rate_hz": ticks / elapsed if elapsed > 0 else 0.0,
        "tick_ms_p50": statistics.median(tick_s) * 1e3 if tick_s else 0.0,
        "tick_ms_p99": tick_s[int(0.99 * (len(tick_s) - 1))] * 1e3 if tick_s else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leader-port", required=True)
    parser.add_argument("--damiao-port", required=True)
    parser.add_argument("--sts-port", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    result = run(args.leader_port, args.damiao_port, args.sts_port, args.seconds)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
