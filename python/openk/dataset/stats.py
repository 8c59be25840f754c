"""Per-episode statistics and their aggregation, in lerobot's layout.

Numeric features: per dimension min/max/mean/std/count and quantiles q01..q99. Cameras: per
channel, in [0, 1] units, shaped (3, 1, 1); pixel quantiles are exact because uint8 pixels fit
a 256-bin histogram, which is also what makes the camera statistics cheap to keep while
streaming.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
Stats = dict[str, np.ndarray]


def numeric_stats(values: np.ndarray) -> Stats:
    """Stats over axis 0 of an (n,) or (n, d) array; vectors keep shape (d,), scalars (1,)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    arr = arr.reshape(arr.shape[0], -1)
    n = arr.shape[0]
    if n == 0:
        raise ValueError("cannot compute statistics of an empty episode")
    out: Stats = {
        "min": arr.min(axis=0),
        "max": arr.max(axis=0),
        "mean": arr.mean(axis=0),
        "std": arr.std(axis=0),
        "count": np.array([n], dtype=np.int64),
    }
    for key, q in QUANTILES.items():
        out[key] = np.quantile(arr, q, axis=0)
    return out


class ImageStatsAccumulator:
    """Running per-channel statistics of uint8 RGB frames (subsampled to ~150 px like lerobot)."""

    def __init__(self) -> None:
        self.count = 0
        self._hist = np.zeros((3, 256), dtype=np.int64)
        self._sum = np.zeros(3, dtype=np.float64)
        self._sumsq = np.zeros(3, dtype=np.float64)

    def update(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        if max(height, width) >= 300:
            step = int(width / 150) if width > height else int(height / 150)
            frame = frame[::step, ::step]
        pixels = frame.reshape(-1, 3)
        for c in range(3):
            channel = pixels[:, c]
            counts = np.bincount(channel, minlength=256)
            self._hist[c] += counts
            levels = np.arange(256, dtype=np.float64)
            self._sum[c] += float(counts @ levels)
            self._sumsq[c] += float(counts @ (levels * levels))
        self.count += 1

    def result(self) -> Stats:
        if self.count == 0:
            raise ValueError("no frame was seen")
        total = self._hist.sum(axis=1).astype(np.float64)
        mean = self._sum / total
        var = np.maximum(self._sumsq / total - mean * mean, 0.0)
        nonzero = self._hist > 0
        lo = np.array([np.argmax(nonzero[c]) for c in range(3)], dtype=np.float64)
        hi = np.array([255 - np.argmax(nonzero[c][::-1]) for c in range(3)], dtype=np.float64)
        out: Stats = {
            "min": lo / 255.0,
            "max": hi / 255.0,
            "mean": mean / 255.0,
            "std": np.sqrt(var) / 255.0,
            "count": np.array([self.count], dtype=np.int64),
        }
        cumulative = np.cumsum(self._hist, axis=1)
        for key, q in QUANTILES.items():
            levels = []
            for c in range(3):
                target = q * total[c]
                level = int(np.searchsorted(cumulative[c], target))
                before = cumulative[c][level - 1] if level > 0 else 0
                in_bin = max(int(self._hist[c][min(level, 255)]), 1)
                # linear interpolation inside the level's bin, as a histogram estimate does
                levels.append(min(level, 255) + (target - before) / in_bin - 0.5)
            out[key] = np.clip(np.array(levels), 0, 255) / 255.0
        return {k: (v if k == "count" else v.reshape(3, 1, 1)) for k, v in out.items()}


def aggregate(stats_list: Sequence[Mapping[str, np.ndarray]]) -> Stats:
    """Combine per-episode stats of a feature: exact min/max/mean/std, count-weighted quantiles."""
    means = np.stack([np.asarray(s["mean"], dtype=np.float64) for s in stats_list])
    variances = np.stack([np.asarray(s["std"], dtype=np.float64) ** 2 for s in stats_list])
    counts = np.stack([np.asarray(s["count"], dtype=np.int64) for s in stats_list])
    total = counts.sum(axis=0)
    weights = counts.astype(np.float64)
    while weights.ndim < means.ndim:
        weights = np.expand_dims(weights, -1)
    mean = (means * weights).sum(axis=0) / total.reshape((-1,) + (1,) * (means.ndim - 2))
    spread = ((variances + (means - mean) ** 2) * weights).sum(axis=0)
    std = np.sqrt(spread / total.reshape((-1,) + (1,) * (means.ndim - 2)))
    out: Stats = {
        "min": np.min(
            np.stack([np.asarray(s["min"], dtype=np.float64) for s in stats_list]), axis=0
        ),
        "max": np.max(
            np.stack([np.asarray(s["max"], dtype=np.float64) for s in stats_list]), axis=0
        ),
        "mean": mean,
        "std": std,
        "count": total,
    }
    for key in QUANTILES:
        if all(key in s for s in stats_list):
            qs = np.stack([np.asarray(s[key], dtype=np.float64) for s in stats_list])
            out[key] = (qs * weights).sum(axis=0) / total.reshape((-1,) + (1,) * (means.ndim - 2))
    return out


def to_jsonable(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {
        feature: {name: np.asarray(value).tolist() for name, value in per.items()}
        for feature, per in stats.items()
    }


def from_jsonable(data: Mapping[str, Mapping[str, Any]]) -> dict[str, Stats]:
    return {
        feature: {
            name: np.asarray(value, dtype=np.int64 if name == "count" else np.float64)
            for name, value in per.items()
        }
        for feature, per in data.items()
    }
