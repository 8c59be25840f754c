"""The native module's layout: one submodule per motor protocol, importable by dotted name."""

from __future__ import annotations

import importlib
import sys

import openk._core as core


def test_protocol_submodules_import_by_dotted_name() -> None:
    for name in ("feetech", "damiao"):
        module = importlib.import_module(f"openk._core.{name}")
        assert module is sys.modules[f"openk._core.{name}"] is getattr(core, name)
        assert module.__name__ == f"openk._core.{name}"
        for export in module.__all__:
            value = getattr(module, export)
            if isinstance(value, type):
                assert value.__module__ == module.__name__, export
    from openk._core.damiao import DamiaoBus, encode_mit
    from openk._core.feetech import BROADCAST_ID, FeetechBus, checksum

    assert (BROADCAST_ID, checksum(bytes([1, 2, 0x01]))) == (0xFE, 0xFB)
    assert FeetechBus.__name__ == "FeetechBus" and DamiaoBus.__name__ == "DamiaoBus"
    assert len(encode_mit(0.0, 0.0, 0.0, 0.0, 0.0)) == 8


def test_the_top_level_holds_no_protocol_prefixed_names() -> None:
    flat = [n for n in core.__all__ if n.lower().startswith(("feetech", "damiao", "stscan"))]
    assert flat == ["feetech", "damiao"]
