"""openk: drive OpenK robot arms at hardware speed and record LeRobot v3.0 datasets.

Errors are importable without the native module; native names (`now_ns`, buses, simulators,
the teleop session) load from `openk._core` on first use so `import openk` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from openk.errors import (
    BusTimeoutError,
    CalibrationError,
    ConfigError,
    DatasetError,
    HubError,
    MotorError,
    OpenKError,
    PortError,
    ProtocolError,
)

__all__ = [
    "BusTimeoutError",
    "CalibrationError",
    "ConfigError",
    "DatasetError",
    "HubError",
    "MotorError",
    "OpenKError",
    "PortError",
    "ProtocolError",
    "now_ns",
]


def __getattr__(name: str) -> Any:
    # importlib, not `from openk import _core`: that form asks this very __getattr__ for
    # `_core` first and would recurse.
    _core = importlib.import_module("openk._core")
    try:
        return getattr(_core, name)
    except AttributeError:
        raise AttributeError(f"module 'openk' has no attribute {name!r}") from None
