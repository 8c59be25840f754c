"""The peer client feetech-servo-sdk (scservo_sdk) drives our simulator over the pty.

This pins the simulator to the protocol as real clients speak it, independently of our codec.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import scservo_sdk as scs

from openk._core import feetech

from ..helpers import wait_until

IDS = [1, 2, 3, 4, 5, 6, 7]
PRESENT_POSITION = 56
GOAL_POSITION = 42
SDK = tuple[scs.PortHandler, scs.PacketHandler]


@pytest.fixture
def sdk(sim: feetech.FeetechSim) -> Iterator[SDK]:
    port = scs.PortHandler(sim.port)
    assert port.openPort()
    assert port.setBaudRate(1_000_000)
    yield port, scs.PacketHandler(0)
    port.closePort()


def test_ping_reads_model_number(sdk: SDK) -> None:
    port, ph = sdk
    for id_ in IDS:
        model, comm, error = ph.ping(port, id_)
        assert comm == scs.COMM_SUCCESS, ph.getTxRxResult(comm)
        assert (model, error) == (777, 0)
    _, comm, _ = ph.ping(port, 42)
    assert comm == scs.COMM_RX_TIMEOUT


def test_read_and_write(sim: feetech.FeetechSim, sdk: SDK) -> None:
    port, ph = sdk
    value, comm, error = ph.read2ByteTxRx(port, 3, PRESENT_POSITION)
    assert (value, comm, error) == (2048, scs.COMM_SUCCESS, 0)
    comm, error = ph.write2ByteTxRx(port, 3, GOAL_POSITION, 2500)
    assert (comm, error) == (scs.COMM_SUCCESS, 0)
    assert sim.register(3, "Goal_Position") == 2500


def test_sync_read_and_sync_write(sim: feetech.FeetechSim, sdk: SDK) -> None:
    port, ph = sdk
    writer = scs.GroupSyncWrite(port, ph, GOAL_POSITION, 2)
    goals = {id_: 1000 + 300 * id_ for id_ in IDS}
    for id_, goal in goals.items():
        assert writer.addParam(id_, [scs.SCS_LOBYTE(goal), scs.SCS_HIBYTE(goal)])
    assert writer.txPacket() == scs.COMM_SUCCESS

    reader = scs.GroupSyncRead(port, ph, PRESENT_POSITION, 2)
    for id_ in IDS:
        assert reader.addParam(id_)

    def positions() -> dict[int, int]:
        # Up to 3 tries, as lerobot's num_retry=3 does: the SDK's fixed ~34 ms reply window can
        # pass while a loaded CI machine has not scheduled the simulator thread.
        for _ in range(3):
            comm = reader.txRxPacket()
            if comm == scs.COMM_SUCCESS:
                break
        assert comm == scs.COMM_SUCCESS, ph.getTxRxResult(comm)
        out = {}
        for id_ in IDS:
            assert reader.isAvailable(id_, PRESENT_POSITION, 2)
            out[id_] = reader.getData(id_, PRESENT_POSITION, 2)
        return out

    first = positions()
    assert all(abs(p - 2048) < 400 for p in first.values())
    wait_until(lambda: positions() == goals, "the servos reached their goals")
    assert all(sim.register(id_, "Torque_Enable") == 1 for id_ in IDS)


def test_sdk_sees_our_injected_checksum_fault(sim: feetech.FeetechSim, sdk: SDK) -> None:
    port, ph = sdk
    sim.corrupt_replies(1)
    _, comm, _ = ph.read2ByteTxRx(port, 1, PRESENT_POSITION)
    assert comm == scs.COMM_RX_CORRUPT
    value, comm, _ = ph.read2ByteTxRx(port, 1, PRESENT_POSITION)
    assert (value, comm) == (2048, scs.COMM_SUCCESS)
