"""The codec bindings reproduce the golden wire images and surface every error bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openk._core import feetech
from openk.errors import ConfigError, ProtocolError


def vectors(vectors_dir: Path) -> dict[str, dict]:
    data = json.loads((vectors_dir / "feetech_vectors.json").read_text())
    return {v["id"]: v for v in data}


def test_encoders_match_reference_bytes(vectors_dir: Path) -> None:
    v = vectors(vectors_dir)
    host = {
        k: [bytes.fromhex(h) for h in x["outputs"].get("host_to_bus_hex", [])] for k, x in v.items()
    }
    assert feetech.encode_ping(1) == host["ft_ping"][0]
    assert feetech.encode_read(1, 56, 2) == host["ft_read_bad_checksum"][0]
    goal_2048 = feetech.encode_write(1, 42, bytes([0x00, 0x08]))
    assert goal_2048 == host["ft_write_goal_position"][0]
    assert feetech.encode_sync_read(56, 2, [1, 2, 3, 4, 5, 6, 7]) == host["ft_sync_read_7"][0]
    items = [(1, b"\x00\x08"), (2, b"\x00\x04"), (3, b"\x00\x0c"), (4, b"\x00\x00")]
    items += [(5, b"\xff\x0f"), (6, b"\xdc\x05")]
    assert feetech.encode_sync_write(42, 2, items) == host["ft_sync_write_6"][0]
    assert feetech.encode_reset(1) == host["ft_reset"][0]
    assert feetech.encode_action() == host["ft_reg_write_action"][1]


def test_decoder_keeps_every_error_bit_and_resyncs(vectors_dir: Path) -> None:
    v = vectors(vectors_dir)
    multi = bytes.fromhex(v["ft_read_error_multi"]["inputs"]["servo_replies_hex"][0])
    (status,) = feetech.decode_status(multi)
    assert status.error_names == ["input_voltage", "overheat", "overload"]
    garbage = bytes.fromhex(v["ft_read_leading_garbage"]["inputs"]["servo_replies_hex"][0])
    (status,) = feetech.decode_status(garbage)
    assert (status.id, int.from_bytes(status.params, "little")) == (3, 4095)
    bad = bytes.fromhex(v["ft_read_bad_checksum"]["inputs"]["servo_replies_hex"][0])
    with pytest.raises(ProtocolError, match="checksum"):
        feetech.decode_status(bad)


def test_sign_magnitude_and_table() -> None:
    assert feetech.encode_value("Goal_Position", -100) == 0x8064
    assert feetech.encode_value("Homing_Offset", -300) == 0x092C
    assert feetech.decode_value("Present_Load", 0x052C) == -300
    with pytest.raises(ValueError, match="Goal_Position"):
        feetech.encode_value("Goal_Position", 40_000)
    with pytest.raises(ConfigError):
        feetech.encode_value("No_Such_Register", 1)
    table = {r["name"]: r for r in feetech.control_table()}
    assert table["Present_Position"]["address"] == 56
    assert table["Present_Position"]["access"] == "r"
    assert feetech.baud_from_code(5) == 76_800
