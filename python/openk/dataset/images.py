"""PNG frames for datasets stored with `video=False` (dtype `image`), as lerobot embeds them."""

from __future__ import annotations

import struct
import zlib

import av
import numpy as np

import openk.dataset.video  # noqa: F401  (sets SVT_LOG before av loads)

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def encode_png(frame: np.ndarray, level: int = 1) -> bytes:
    """RGB uint8 (H, W, 3) -> PNG bytes (filter 0; zlib releases the GIL while compressing)."""
    height, width = frame.shape[:2]
    rows = np.empty((height, 1 + width * 3), dtype=np.uint8)
    rows[:, 0] = 0
    rows[:, 1:] = frame.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


def decode_png(data: bytes) -> np.ndarray:
    """Any PNG (ours or lerobot's PIL output) -> RGB uint8 (H, W, 3)."""
    codec = av.CodecContext.create("png", "r")
    frames = codec.decode(av.Packet(data))
    if not frames:
        frames = codec.decode(None)
    return frames[0].to_ndarray(format="rgb24")
