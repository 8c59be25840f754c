"""`openk scan`: which Feetech servo ids answer on a port (the hint of every STS timeout)."""

from __future__ import annotations

import pytest

from openk._core import damiao, feetech
from openk.errors import BusTimeoutError
from openk.tools import scan, scan_damiao

from .conftest import RunOpenk, one_line_error


def test_scan_lists_the_ids_that_answer() -> None:
    sim = feetech.FeetechSim(ids=[3, 9, 12])
    lines: list[str] = []
    assert scan(sim.port, echo=lines.append) == {1_000_000: [3, 9, 12]}
    assert lines == [f"{sim.port} at 1000000 baud: 3, 9, 12"]


def test_a_silent_bus_says_what_to_check_and_offers_the_other_bauds() -> None:
    sim = feetech.FeetechSim(ids=[1, 2])
    for servo in (1, 2):
        sim.set_silent(servo, True)
    with pytest.raises(BusTimeoutError, match="no servo answered") as err:
        scan(sim.port, echo=lambda line: None)
    assert "power" in str(err.value) and "--all-bauds" in str(err.value)


def test_every_baud_rate_is_tried_with_all_bauds() -> None:
    sim = feetech.FeetechSim(ids=[5])
    lines: list[str] = []
    found = scan(sim.port, all_bauds=True, echo=lines.append)
    assert list(found) == [1_000_000, 500_000, 250_000, 128_000, 115_200, 76_800, 57_600, 38_400]
    assert len(lines) == 8


def test_openk_scan_on_the_command_line(run_openk: RunOpenk) -> None:
    done = run_openk("scan", "sim")
    assert done.returncode == 0, done.stderr
    assert "sim at 1000000 baud: 1, 2, 3, 4, 5, 6, 7" in done.stdout
    missing = run_openk("scan", "/dev/ttyOPENK_NOPE")
    assert missing.returncode != 0
    assert "/dev/ttyOPENK_NOPE" in one_line_error(missing)


def test_damiao_scan_shows_each_motors_esc_and_mst_ids() -> None:
    sim = damiao.DamiaoSim(motors=[("a", "DM4310", 0x02, 0x22), ("b", "DM6006", 0x07, 0x17)])
    lines: list[str] = []
    found = scan_damiao(sim.port, echo=lines.append)
    assert found == [(0x02, 0x22, "disabled"), (0x07, 0x17, "disabled")]
    assert lines == [
        f"{sim.port}: ESC_ID 0x02 answers from MST_ID 0x22 (disabled)",
        f"{sim.port}: ESC_ID 0x07 answers from MST_ID 0x17 (disabled)",
    ]


def test_a_damiao_adapter_with_no_motor_says_what_to_check() -> None:
    sim = damiao.DamiaoSim(motors=[("a", "DM4310", 0x03, 0x13)])
    with pytest.raises(BusTimeoutError, match="no DAMIAO motor answered") as err:
        scan_damiao(sim.port, last_esc_id=2, echo=lambda line: None)
    assert "termination" in str(err.value) and "ESC_ID 1-2" in str(err.value)


def test_openk_scan_damiao_on_the_command_line(run_openk: RunOpenk) -> None:
    done = run_openk("scan", "sim", "--damiao")
    assert done.returncode == 0, done.stderr
    assert "sim: ESC_ID 0x05 answers from MST_ID 0x15 (disabled)" in done.stdout
