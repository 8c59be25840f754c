"""Run trained lerobot policies on the arm (`openk record --policy.path`, `openk rollout`).

The policy math is lerobot's own: the checkpoint's config, weights and pre/post-processors are
loaded with lerobot 0.6.1 (`pip install 'openk[policy]'`, Python ≥ 3.12). This package only
checks that the policy fits the robot before anything moves, feeds it the newest observation at
the dataset's rate from a thread of its own, and hands its actions to the Rust loop.

Importing `openk.policy` needs neither torch nor lerobot; `openk.policy.runner` does.
"""

from __future__ import annotations

import sys

from openk.errors import ConfigError, OpenKError

LEROBOT_VERSION = "0.6.1"


class PolicyError(OpenKError):
    """The policy failed while running (an exception, or a NaN/inf action)."""


class PolicyMismatchError(ConfigError):
    """The policy's input or output features do not match the robot; nothing has moved."""


def require_lerobot() -> None:
    """Fail with the install command when lerobot (and torch) are not importable."""
    if sys.version_info < (3, 12):
        raise ConfigError(
            "running a policy needs lerobot, which needs Python ≥ 3.12 (this is "
            f"{sys.version_info[0]}.{sys.version_info[1]}); make a Python 3.12 venv and "
            "pip install 'openk[policy]' in it"
        )
    try:
        import lerobot  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"running a policy needs lerobot {LEROBOT_VERSION} with torch; "
            "pip install 'openk[policy]'"
        ) from None
    from importlib.metadata import version

    found = version("lerobot")
    if found != LEROBOT_VERSION:
        raise ConfigError(
            f"openk runs policies with lerobot {LEROBOT_VERSION}, but {found} is installed; "
            "pip install 'openk[policy]' (it pins the right version)"
        )


__all__ = ["LEROBOT_VERSION", "PolicyError", "PolicyMismatchError", "require_lerobot"]
