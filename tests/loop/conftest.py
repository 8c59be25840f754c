"""Fixtures for the teleop loop tests: sessions on simulated arms, always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import openk._core as _core


@pytest.fixture
def calib_dir(tmp_path: Path) -> Path:
    """An empty calibration folder, so no test reads or writes the user's cache."""
    d = tmp_path / "calibration"
    d.mkdir()
    return d


@pytest.fixture
def make_session(calib_dir: Path) -> Iterator[Callable[..., Any]]:
    """Builds TeleopSessions on simulated ports; every session is stopped at teardown."""
    sessions: list[Any] = []

    def make(
        robot: dict[str, Any] | None = None,
        teleop: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        robot = robot or {
            "type": "openk-1-alpha_follower2",
            "port": "sim",
            "sts_port": "sim",
            "id": "follower",
        }
        robot.setdefault("calibration_dir", str(calib_dir))
        if teleop is not None:
            teleop.setdefault("calibration_dir", str(calib_dir))
        kwargs.setdefault("realtime", "off")
        # About half a second of failed exchanges at 200 Hz: on a loaded machine a simulator
        # thread (a device with its own MCU, really) can go unscheduled for longer than the
        # product's 50 ms default budget. Fault tests set their own budget.
        kwargs.setdefault("max_consecutive_errors", 100)
        s = _core.TeleopSession(robot, teleop, **kwargs)
        sessions.append(s)
        return s

    yield make
    for s in sessions:
        s.stop()
