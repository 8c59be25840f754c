"""The codec bindings reproduce the golden vectors and refuse what the reference got wrong."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from openk._core import damiao
from openk.errors import ConfigError, ProtocolError


def _vectors(vectors_dir: Path) -> list[dict[str, Any]]:
    return json.loads((vectors_dir / "damiao_vectors.json").read_text())


def test_mit_vectors_match_clamped_encoding(vectors_dir: Path) -> None:
    checked = 0
    for v in _vectors(vectors_dir):
        if v["kind"] != "mit_command":
            continue
        inp = v["inputs"]
        args = (inp["q"], inp["dq"], inp["kp"], inp["kd"], inp["tau"])
        expected = v["comparison"]["lerobot_clamped_payload_hex"]
        if expected is None:
            with pytest.raises(ProtocolError):
                damiao.encode_mit(*args, model=inp["motor_type"])
            continue
        payload = damiao.encode_mit(*args, model=inp["motor_type"])
        assert payload.hex() == expected, v["id"]
        frame = damiao.host_frame(inp["slave_id"], payload)
        if v["outputs"]["can_payload_hex"] == expected:
            assert frame.hex() == v["outputs"]["host_to_adapter_hex"], v["id"]
        checked += 1
    assert checked >= 10


def test_nan_and_inf_are_refused_not_wrapped() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ProtocolError, match="not a finite number"):
            damiao.encode_mit(bad, 0.0, 20.0, 1.0, 0.0)
    # dq = 40 on a DM4310 saturates at +VMAX instead of flipping sign (dm_mit_15).
    payload = damiao.encode_mit(0.0, 40.0, 20.0, 1.0, 0.0, model="DM4310")
    assert payload.hex() == "7ffffff0a33337ff"


def test_feedback_decode_surfaces_state_and_temperatures(vectors_dir: Path) -> None:
    v = next(x for x in _vectors(vectors_dir) if x["id"] == "dm_fb_04_error_nibble")
    decoder = damiao.DamiaoStreamDecoder()
    frames = decoder.push(bytes.fromhex(v["inputs"]["chunks_fed_hex"][0]))
    assert len(frames) == 1
    cmd, can_id, payload = frames[0]
    assert (cmd, can_id) == (0x11, 0x13)
    fb = damiao.decode_feedback(payload, model="DM4310")
    assert fb["state"] == "lost_communication"
    assert (fb["t_mos"], fb["t_rotor"]) == (60, 50)


def test_stream_decoder_reassembles_and_skips_garbage(vectors_dir: Path) -> None:
    by_id = {x["id"]: x for x in _vectors(vectors_dir)}
    decoder = damiao.DamiaoStreamDecoder()
    chunks = by_id["dm_fb_06_split_across_reads"]["inputs"]["chunks_fed_hex"]
    assert decoder.push(bytes.fromhex(chunks[0])) == []
    assert [f[1] for f in decoder.push(bytes.fromhex(chunks[1]))] == [0x11, 0x13]
    # The stray 0xAA no longer swallows the genuine frame after it.
    stray = by_id["dm_fb_08_false_sync_quirk"]["inputs"]["chunks_fed_hex"][0]
    assert [f[1] for f in decoder.push(bytes.fromhex(stray))] == [0x11, 0x13]
    assert decoder.skipped_bytes == 1


def test_model_table_and_unknown_model() -> None:
    assert damiao.model_limits("DM6006") == (12.5, 45.0, 20.0)
    assert damiao.model_limits("DM-J4310") == (12.5, 30.0, 10.0)
    with pytest.raises(ConfigError, match="DM9999"):
        damiao.model_limits("DM9999")
