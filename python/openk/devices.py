"""Device facts as the native core states them (its catalogue is the one source): type names
and aliases by role, joints and their raw units, accepted config keys, defaults, and the rule
that makes a port a simulator. Nothing here restates a fact; it only looks them up.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from openk.errors import OpenKError

if TYPE_CHECKING:
    from openk._core import DeviceInfo

Role = Literal["robot", "teleop"]


def load_core() -> ModuleType:
    """`openk._core`, or an error saying how to install it."""
    try:
        return importlib.import_module("openk._core")
    except ImportError as err:
        raise OpenKError(
            f"the native module openk._core is missing ({err}); install openk with "
            "scripts/bootstrap.sh (or pip install .)"
        ) from None


@functools.cache
def catalog() -> tuple[DeviceInfo, ...]:
    """Every robot and teleoperator type, robots first, in the core's order."""
    return tuple(load_core().device_catalog())


def devices(role: Role) -> tuple[DeviceInfo, ...]:
    """The types of one role: "robot" (followers) or "teleop" (leaders)."""
    return tuple(d for d in catalog() if d.kind == role)


def type_names(role: Role) -> tuple[str, ...]:
    """Names users may type for `role`, each canonical name followed by its aliases."""
    return tuple(name for d in devices(role) for name in d.names)


def find(type_name: str, role: Role | None = None) -> DeviceInfo | None:
    """The type `type_name` (canonical or alias) names, optionally only among `role`'s."""
    for d in catalog():
        if type_name in d.names and (role is None or d.kind == role):
            return d
    return None


def example(role: Role, **facts: object) -> str:
    """The first type of `role` whose facts match (`needs_sts_port=True`, `compliant=False`),
    for help texts that show a realistic command."""
    for d in devices(role):
        if all(getattr(d, key) == value for key, value in facts.items()):
            return d.type_name
    raise LookupError(f"no {role} type with {facts}")


def is_sim_port(port: str | None) -> bool:
    """Whether `port` selects the built-in simulator (the core's rule: `sim` or `sim://...`)."""
    return port is not None and bool(load_core().is_sim_port(port))


def raw_per_turn(radians: bool) -> float:
    """Raw position units in one turn of a joint: 2π for radians, the STS steps per turn."""
    for d in catalog():
        for j in d.joints:
            if j.radians == radians:
                return float(j.raw_per_turn)
    raise LookupError(f"no joint reads {'radians' if radians else 'steps'}")


def radian_joints(type_name: str, role: Role) -> set[str]:
    """Joints of `type_name` whose raw positions are radians (DAMIAO); the others read STS
    steps."""
    info = find(type_name, role)
    if info is None:
        raise OpenKError(f"unknown {role} type {type_name!r}")
    return set(info.radian_joints)
