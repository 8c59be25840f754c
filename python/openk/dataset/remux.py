"""Cut and join mp4 videos by copying packets (PyAV), re-encoding only what a cut forces.

A segment is `count` frames of a source file starting at frame `first`. Packets are copied
unchanged (kept frames decode bit-identically) with their timestamps renumbered to frame numbers
(time base 1/fps), so the output is constant-frame-rate from 0, as lerobot expects. A segment
that starts inside a GOP (its first frame is not a keyframe) has only the frames up to the next
keyframe re-encoded, with the source's codec settings; a source whose packets are reordered
(B-frames) cannot be cut by packet copy at all, so a segment of such a source is re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from openk.dataset.video import VideoConfig, av
from openk.errors import DatasetError


@dataclass(frozen=True)
class Segment:
    path: Path
    first: int  # first frame number in the source file
    count: int


@dataclass
class RemuxReport:
    frames: int = 0  # frames written
    copied: int = 0  # frames whose packets were copied unchanged
    reencoded: int = 0  # frames decoded and encoded again
    reasons: list[str] | None = None

    def add_reason(self, text: str) -> None:
        if self.reasons is None:
            self.reasons = []
        self.reasons.append(text)


def _frame_no(value: int | None, time_base: Fraction, fps: int) -> int:
    return round(Fraction(value or 0) * time_base * fps)


@dataclass
class _Pkt:
    frame: int
    decode_frame: int
    key: bool
    packet: Any
    used: bool = False


def _read_packets(path: Path, fps: int) -> tuple[list[_Pkt], bool]:
    """All packets of the file's first video stream in decode order, and whether any is
    reordered (presentation order differs from decode order)."""
    out: list[_Pkt] = []
    reordered = False
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        tb = stream.time_base or Fraction(1, fps)
        for packet in src.demux(stream):
            if not packet.size or packet.pts is None:
                continue
            f = _frame_no(packet.pts, tb, fps)
            d = _frame_no(packet.dts if packet.dts is not None else packet.pts, tb, fps)
            if f != d or (out and f <= out[-1].frame):
                reordered = True
            out.append(_Pkt(f, d, bool(packet.is_keyframe), packet))
    return out, reordered


def keyframes(path: Path, fps: int) -> tuple[list[int], bool]:
    """Frame numbers of the keyframes of `path`, and whether its packets are reordered."""
    pkts, reordered = _read_packets(path, fps)
    return [p.frame for p in pkts if p.key], reordered


def plan_segment(keys: list[int], reordered: bool, seg_first: int, count: int) -> int:
    """How many frames of the segment need re-encoding (the head up to the next keyframe)."""
    if reordered:
        return count
    if seg_first in keys:
        return 0
    later = [k for k in keys if seg_first < k < seg_first + count]
    return (later[0] if later else seg_first + count) - seg_first


def config_for(feature_info: dict[str, Any] | None, codec_name: str) -> VideoConfig:
    """Encoder settings matching the source video (the feature's info block, its codec)."""
    block = feature_info or {}
    vcodec = "h264" if codec_name in ("h264", "libx264") else "libsvtav1"
    return VideoConfig(
        vcodec=vcodec,
        pix_fmt=str(block.get("video.pix_fmt") or "yuv420p"),
        g=int(block.get("video.g") or 2),
        crf=int(block.get("video.crf") or 30),
        preset=block.get("video.preset"),
        isolate=False,
    )


class _Cache:
    def __init__(self, fps: int) -> None:
        self.fps = fps
        self._files: dict[Path, tuple[list[_Pkt], bool]] = {}

    def get(self, path: Path, first: int, count: int) -> tuple[list[_Pkt], bool]:
        """The file's packets; read again when one of frames first..first+count-1 was
        already muxed (muxing consumes a packet), e.g. a dataset merged with itself."""
        cached = self._files.get(path)
        if cached is not None and any(
            p.used for p in cached[0] if first <= p.frame < first + count
        ):
            cached = None
        if cached is None:
            self._files.clear()  # segments come file by file; keep one file's packets
            self._files[path] = _read_packets(path, self.fps)
        return self._files[path]


def _decode_range(path: Path, first: int, count: int, fps: int) -> list[np.ndarray]:
    from openk.dataset.video import decode_frames

    return list(decode_frames(path, first / fps, count, fps))


def write_segments(
    out_path: Path,
    segments: list[Segment],
    fps: int,
    feature_info: dict[str, Any] | None = None,
) -> RemuxReport:
    """Write the segments one after the other into `out_path` (an mp4)."""
    report = RemuxReport()
    cache = _Cache(fps)
    tb = Fraction(1, fps)
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        out_stream: Any = None
        encoder_stream: Any = None
        offset = 0

        def mux_encoded(frames: list[np.ndarray], config: VideoConfig) -> None:
            nonlocal offset
            enc: Any = av.CodecContext.create(config.encoder, "w")
            height, width = frames[0].shape[:2]
            enc.width, enc.height = width, height
            enc.pix_fmt = config.pix_fmt
            enc.time_base = tb
            enc.framerate = Fraction(fps)
            enc.options = config.codec_options()
            enc.open()
            encoded: list[Any] = []
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame = frame.reformat(format=config.pix_fmt)
                frame.pts = i
                frame.time_base = tb
                encoded += enc.encode(frame)
            encoded += enc.encode(None)
            if len(encoded) != len(frames):
                raise DatasetError(
                    f"re-encoding {len(frames)} frames produced {len(encoded)} packets; "
                    "the encoder hides frames, which a packet-copied video cannot mix with"
                )
            for i, packet in enumerate(encoded):
                packet.stream = out_stream
                packet.time_base = tb
                packet.pts = packet.dts = offset + i
                packet.duration = 1
                out.mux(packet)
            offset += len(frames)

        for seg in segments:
            if seg.count <= 0:
                continue
            pkts, reordered = cache.get(seg.path, seg.first, seg.count)
            if out_stream is None:
                with av.open(str(seg.path)) as src:
                    template = src.streams.video[0]
                    out_stream = out.add_stream_from_template(template, opaque=True)
                    codec_name = template.codec_context.name
                    encoder_stream = config_for(feature_info, codec_name)
            end = seg.first + seg.count
            kept = [p for p in pkts if seg.first <= p.frame < end]
            if len(kept) != seg.count:
                raise DatasetError(
                    f"{seg.path}: frames {seg.first}..{end - 1} wanted, {len(kept)} found"
                )
            keys = [p.frame for p in pkts if p.key]
            head = plan_segment(keys, reordered, seg.first, seg.count)
            if head:
                why = (
                    "its packets are reordered (B-frames)"
                    if reordered
                    else f"frame {seg.first} is inside a GOP"
                )
                report.add_reason(f"{seg.path.name}: re-encoded {head} frame(s): {why}")
                mux_encoded(_decode_range(seg.path, seg.first, head, fps), encoder_stream)
                report.reencoded += head
            for p in kept:
                if p.frame < seg.first + head:
                    continue
                packet = p.packet
                p.used = True
                packet.stream = out_stream
                packet.time_base = tb
                packet.pts = packet.dts = offset + (p.frame - seg.first - head)
                packet.duration = 1
                out.mux(packet)
            copied = seg.count - head
            offset += copied
            report.copied += copied
        report.frames = offset
    if out_stream is None:
        raise DatasetError(f"no frame to write into {out_path}")
    return report
