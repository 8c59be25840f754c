"""Python peer of the openk teleop loop, built the way the reference project does it.

Leader: 7 STS3215 read with feetech-servo-sdk's GroupSyncRead (what lerobot's FeetechMotorsBus
does). Follower: 5 DAMIAO motors through pydamiao (state refreshed at most every 5 ms, as
OpenK's DamiaoMotorsBus does, then one MIT command per motor) and 2 STS3215 with GroupSyncWrite
goals plus a GroupSyncRead of their positions. The loop runs free (no sleep) for `--seconds`;
its tick rate is the highest rate it can sustain. Prints one JSON document.

`--damiao-driver reference` swaps pydamiao for what the reference project itself ships
(OpenK's DM_CAN.py driver, rebuilt here from its wire format): every command is written and
whatever replies have arrived are parsed at once, never waited for (`read_all`), so the loop
never blocks on the CAN bus and its DAMIAO state is whatever came back last.

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
# (P_MAX, V_MAX, T_MAX) of the MIT mapping, by model (DM_CAN.py's Limit_Param).
MIT_LIMITS = {"DM4310": (12.5, 30.0, 10.0), "DM6006": (12.5, 45.0, 20.0)}
# The adapter's 30-byte host frame: CAN id at bytes 13-14, DLC 8 at 18, payload at 21-28.
HOST_FRAME = bytes(
    [0x55, 0xAA, 0x1E, 0x03, 0x01, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0] + [0] * 9
)


def _to_uint(x: float, lo: float, hi: float, bits: int) -> int:
    x = min(max(x, lo), hi)
    return int((x - lo) / (hi - lo) * ((1 << bits) - 1))


def _to_float(u: int, lo: float, hi: float, bits: int) -> float:
    return u / ((1 << bits) - 1) * (hi - lo) + lo


class ReferenceDamiao:
    """The reference driver's I/O pattern: write, then parse what is already there."""

    def __init__(self, port: str) -> None:
        import serial

        self.ser = serial.Serial(port, 921600, timeout=0.5)
        self.pending = b""
        self.sent = 0
        self.received = 0
        self.state: dict[int, tuple[float, float, float]] = {}
        self.model_by_mst = {mst: model for _, model, _, mst in DAMIAO_MOTORS}

    def _send(self, can_id: int, data: bytes) -> None:
        frame = bytearray(HOST_FRAME)
        frame[13], frame[14] = can_id & 0xFF, (can_id >> 8) & 0xFF
        frame[21:29] = data
        self.ser.write(frame)
        self.sent += 1

    def recv(self) -> None:
        data = self.pending + self.ser.read(self.ser.in_waiting)
        i = 0
        while i <= len(data) - 16:
            if data[i] == 0xAA and data[i + 15] == 0x55:
                can_id = int.from_bytes(data[i + 3 : i + 7], "little")
                model = self.model_by_mst.get(can_id)
                if data[i + 1] == 0x11 and model is not None:
                    self.received += 1
                    p, v, t = MIT_LIMITS[model]
                    d = data[i + 7 : i + 15]
                    self.state[can_id] = (
                        _to_float(d[1] << 8 | d[2], -p, p, 16),
                        _to_float(d[3] << 4 | d[4] >> 4, -v, v, 12),
                        _to_float((d[4] & 0xF) << 8 | d[5], -t, t, 12),
                    )
                i += 16
            else:
                i += 1
        self.pending = data[i:]

    def enable(self, esc: int) -> None:
        self._send(esc, bytes([0xFF] * 7 + [0xFC]))
        time.sleep(0.01)
        self.recv()

    def set_mit_mode(self, esc: int) -> None:
        # Register write (RID 10, control mode) = 1 (MIT), then give it time to answer.
        self._send(0x7FF, bytes([esc & 0xFF, esc >> 8, 0x55, 10, 1, 0, 0, 0]))
        time.sleep(0.01)
        self.recv()

    def refresh(self, esc: int) -> None:
        self._send(0x7FF, bytes([esc & 0xFF, esc >> 8, 0xCC, 0, 0, 0, 0, 0]))
        self.recv()

    def mit(self, esc: int, model: str, q: float, dq: float, kp: float, kd: float) -> None:
        p, v, t = MIT_LIMITS[model]
        qu, dqu = _to_uint(q, -p, p, 16), _to_uint(dq, -v, v, 12)
        kpu, kdu, tu = _to_uint(kp, 0, 500, 12), _to_uint(kd, 0, 5, 12), _to_uint(0.0, -t, t, 12)
        data = bytes(
            [
                qu >> 8,
                qu & 0xFF,
                dqu >> 4,
                (dqu & 0xF) << 4 | kpu >> 8,
                kpu & 0xFF,
                kdu >> 4,
                (kdu & 0xF) << 4 | tu >> 8,
                tu & 0xFF,
            ]
        )
        self._send(esc, data)
        self.recv()

    def close(self) -> None:
        self.ser.close()


def run(
    leader_port: str, damiao_port: str, sts_port: str, seconds: float, driver: str
) -> dict[str, object]:
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

    motors = []
    reference = ReferenceDamiao(damiao_port) if driver == "reference" else None
    if reference is not None:
        for _, _, esc, _ in DAMIAO_MOTORS:
            reference.set_mit_mode(esc)
            reference.enable(esc)
    else:
        # pydamiao's receiver thread blocks in serial.read(64) for up to `timeout`; 1 ms (not
        # its 0.1 s default) is the fastest setting, so the peer gets its best case.
        bus = pydamiao.SerialBus(damiao_port, baudrate=921600, timeout=0.001)
        for name, model, esc, mst in DAMIAO_MOTORS:
            m = pydamiao.Motor(
                bus, pydamiao.MotorType[model], esc, mst, name=name, auto_disable=False
            )
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
            if reference is not None:
                for _, _, esc, _ in DAMIAO_MOTORS:
                    reference.refresh(esc)
            for m in motors:
                if not m.refresh_state(timeout=0.05):
                    errors += 1
            last_refresh = now
        if sts_read.txRxPacket() != scs.COMM_SUCCESS:
            errors += 1
        # Commands: leader ticks -> radians around the middle, MIT per motor; STS goals.
        for i, raw in enumerate(leader[:5]):
            q = (raw - 2048) / 4096 * 2 * math.pi
            if reference is not None:
                _, model, esc, _ = DAMIAO_MOTORS[i]
                reference.mit(esc, model, q, 0.0, 20.0, 1.0)
            else:
                motors[i].set_mit(q, 0.0, 20.0, 1.0, 0.0)
        sts_write.clearParam()
        for i, raw in zip(FOLLOWER_STS_IDS, leader[5:7], strict=True):
            sts_write.addParam(i, [raw & 0xFF, (raw >> 8) & 0xFF])
        sts_write.txPacket()
        ticks += 1
        tick_s.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    replies_per_command = None
    if reference is not None:
        # Fire-and-forget outruns the CAN bus: replies missing (or still queued) at the end
        # show how far the bus fell behind the commands.
        time.sleep(0.05)
        reference.recv()
        replies_per_command = reference.received / max(1, reference.sent)
        # Every motor must have answered, or the peer ran on no feedback at all.
        errors += len(DAMIAO_MOTORS) - len(reference.state)
        reference.close()
    else:
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
        "damiao_replies_per_command": replies_per_command,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leader-port", required=True)
    parser.add_argument("--damiao-port", required=True)
    parser.add_argument("--sts-port", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--damiao-driver", choices=["pydamiao", "reference"], default="pydamiao")
    args = parser.parse_args()
    result = run(
        args.leader_port, args.damiao_port, args.sts_port, args.seconds, args.damiao_driver
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
