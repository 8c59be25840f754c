"""Quality flags of recorded episodes, each with the threshold that raised it.

From openk's loop telemetry (meta/openk/episodes.jsonl) where present: loop rate below target,
overruns, repeated camera frames. From the rows of any dataset: idle start/end, length
outliers, jerky actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from openk.dataset.edit import Source, idle_bounds


@dataclass(frozen=True)
class Thresholds:
    rate_fraction: float = 0.95  # achieved_hz below this fraction of target_hz
    overrun_fraction: float = 0.01  # overruns above this fraction of ticks
    repeated_fraction: float = 0.05  # repeated camera frames above this fraction of rows
    idle_s: float = 1.0  # idle head or tail longer than this
    idle_range_fraction: float = 0.01  # idle: action within this fraction of its range
    length_low: float = 0.5  # length below this times the median
    length_high: float = 2.0  # length above this times the median
    jerk_fraction: float = 0.2  # |second difference of an action joint| above this * its range

    def describe(self) -> dict[str, str]:
        return {
            "loop rate": f"achieved rate < {self.rate_fraction:.0%} of the target",
            "overruns": f"overruns > {self.overrun_fraction:.0%} of the loop ticks",
            "repeated frames": f"a camera repeated > {self.repeated_fraction:.0%} of its frames",
            "idle start/end": (
                f"> {self.idle_s:g} s at the start or end with every action joint within "
                f"{self.idle_range_fraction:.0%} of its range"
            ),
            "length": f"length < {self.length_low:g}x or > {self.length_high:g}x the median",
            "jerky actions": (
                f"an action joint jumps (second difference) > {self.jerk_fraction:.0%} of its range"
            ),
        }


def _matrix(table: pa.Table, key: str) -> np.ndarray:
    col = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
        flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
        return flat.reshape(table.num_rows, -1)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, 1)


def episode_flags(src: Source, thresholds: Thresholds | None = None) -> list[list[dict[str, Any]]]:
    """For each episode, a list of {flag, detail}."""
    th = thresholds or Thresholds()
    lengths = [int(ep["length"]) for ep in src.episodes]
    median = float(np.median(lengths)) if lengths else 0.0
    action_range: np.ndarray | None = None
    if "action" in src.features:
        from openk.dataset import meta

        st = meta.read_stats(src.root).get("action")
        if st is not None:
            action_range = np.maximum(np.asarray(st["max"]) - np.asarray(st["min"]), 1e-9)
    out: list[list[dict[str, Any]]] = []
    for e, n in enumerate(lengths):
        flags: list[dict[str, Any]] = []
        extra = src.extras.get(e) or {}
        loop = (extra.get("metadata") or {}).get("openk_loop") or {}
        target, achieved = loop.get("target_hz"), loop.get("achieved_hz")
        if target and achieved is not None and achieved < th.rate_fraction * float(target):
            flags.append(
                {"flag": "loop rate", "detail": f"{float(achieved):.1f} Hz of {float(target):g}"}
            )
        ticks, overruns = loop.get("ticks"), loop.get("overruns")
        if ticks and overruns and overruns > th.overrun_fraction * float(ticks):
            flags.append({"flag": "overruns", "detail": f"{overruns} of {ticks} ticks"})
        for cam, count in (extra.get("repeated_frames") or {}).items():
            if n and count > th.repeated_fraction * n:
                flags.append({"flag": "repeated frames", "detail": f"{cam}: {count} of {n}"})
        if median and (n < th.length_low * median or n > th.length_high * median):
            flags.append({"flag": "length", "detail": f"{n} frames, median {median:g}"})
        if action_range is not None and n > 2:
            action = _matrix(src.rows(e, ["action"]), "action")
            threshold = float(np.max(action_range)) * th.idle_range_fraction
            start, stop = idle_bounds(action, threshold)
            idle_head, idle_tail = start / src.fps, (n - stop) / src.fps
            if idle_head > th.idle_s or idle_tail > th.idle_s:
                flags.append(
                    {
                        "flag": "idle start/end",
                        "detail": f"{idle_head:.1f} s idle at the start, "
                        f"{idle_tail:.1f} s at the end",
                    }
                )
            jerk = np.abs(np.diff(action, n=2, axis=0)) / action_range
            worst = float(jerk.max()) if jerk.size else 0.0
            if worst > th.jerk_fraction:
                frame = int(np.unravel_index(int(jerk.argmax()), jerk.shape)[0]) + 1
                flags.append(
                    {
                        "flag": "jerky actions",
                        "detail": f"{worst:.0%} of a joint's range at frame {frame}",
                    }
                )
        out.append(flags)
    return out
