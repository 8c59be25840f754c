"""Feature dictionaries (lerobot style) and their Arrow / HF `datasets` encodings."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from openk.errors import DatasetError

Features = dict[str, dict[str, Any]]

DEFAULT_FEATURES: Features = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
CAMERA_DTYPES = ("video", "image")
CAMERA_PREFIX = "observation.images."
STAT_NAMES = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
_NUMERIC = {"float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"}


def camera_feature(height: int, width: int, *, video: bool = True) -> dict[str, Any]:
    return {
        "dtype": "video" if video else "image",
        "shape": [int(height), int(width), 3],
        "names": ["height", "width", "channels"],
    }


def vector_feature(names: list[str], dtype: str = "float32") -> dict[str, Any]:
    return {"dtype": dtype, "shape": [len(names)], "names": list(names)}


def with_defaults(user_features: Mapping[str, Mapping[str, Any]]) -> Features:
    """Validate user features and append lerobot's five default features after them."""
    out: Features = {}
    for key, spec in user_features.items():
        if key in DEFAULT_FEATURES:
            continue
        if "/" in key:
            raise DatasetError(f"feature name {key!r} contains '/', which lerobot forbids")
        if not isinstance(spec, Mapping) or "dtype" not in spec or "shape" not in spec:
            raise DatasetError(f"feature {key!r} needs at least 'dtype' and 'shape'")
        dtype = spec["dtype"]
        shape = [int(s) for s in spec["shape"]]
        if dtype in CAMERA_DTYPES:
            if len(shape) != 3 or shape[2] != 3:
                raise DatasetError(f"camera feature {key!r} needs shape [height, width, 3]")
        elif dtype not in _NUMERIC and dtype != "string":
            raise DatasetError(f"feature {key!r} has unsupported dtype {dtype!r}")
        entry = {"dtype": dtype, "shape": shape, "names": copy.deepcopy(spec.get("names"))}
        if "info" in spec:
            entry["info"] = copy.deepcopy(spec["info"])
        out[key] = entry
    for key, spec in DEFAULT_FEATURES.items():
        out[key] = copy.deepcopy(spec)
    return out


def camera_keys(features: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [k for k, f in features.items() if f["dtype"] in CAMERA_DTYPES]


def video_keys(features: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [k for k, f in features.items() if f["dtype"] == "video"]


def image_keys(features: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [k for k, f in features.items() if f["dtype"] == "image"]


def row_keys(features: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """User features that come from the loop's Arrow rows (not cameras, not defaults)."""
    return [
        k
        for k, f in features.items()
        if f["dtype"] not in CAMERA_DTYPES and k not in DEFAULT_FEATURES
    ]


def arrow_type(feature: Mapping[str, Any]) -> pa.DataType:
    dtype = feature["dtype"]
    if dtype == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if dtype == "string":
        return pa.string()
    value = pa.from_numpy_dtype(dtype) if dtype != "bool" else pa.bool_()
    shape = list(feature["shape"])
    if shape == [1]:
        return value
    if len(shape) == 1:
        return pa.list_(value, shape[0])
    raise DatasetError(f"multi-dimensional feature shape {shape} is not supported by openk yet")


def _hf_feature(feature: Mapping[str, Any]) -> dict[str, Any]:
    dtype = feature["dtype"]
    if dtype == "image":
        return {"_type": "Image"}
    value = {"dtype": dtype, "_type": "Value"}
    shape = list(feature["shape"])
    if shape == [1]:
        return value
    return {"feature": value, "length": shape[0], "_type": "List"}


def data_schema(features: Mapping[str, Mapping[str, Any]]) -> pa.Schema:
    """Schema of the data parquet: every non-video feature, with the `huggingface` metadata."""
    fields = []
    hf: dict[str, Any] = {}
    for key, feat in features.items():
        if feat["dtype"] == "video":
            continue
        fields.append(pa.field(key, arrow_type(feat)))
        hf[key] = _hf_feature(feat)
    meta = {b"huggingface": json.dumps({"info": {"features": hf}}).encode()}
    return pa.schema(fields, metadata=meta)


def schema_differences(
    ours: Mapping[str, Mapping[str, Any]], theirs: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Plain-words differences between two feature dicts, ignoring video `info` and `fps`."""
    problems = []
    for key in ours:
        if key not in theirs:
            problems.append(f"feature {key!r} is new (the dataset does not have it)")
    for key in theirs:
        if key not in ours:
            problems.append(f"feature {key!r} is missing (the dataset has it)")
    for key in ours:
        if key not in theirs:
            continue
        a, b = ours[key], theirs[key]
        for attr in ("dtype", "shape", "names"):
            va, vb = a.get(attr), b.get(attr)
            if attr == "shape":
                va, vb = list(va or []), list(vb or [])
            if va != vb:
                problems.append(f"feature {key!r}: {attr} {va!r} differs from the dataset's {vb!r}")
    return problems


def features_from_arrow_schema(
    schema: pa.Schema,
    *,
    cameras: Mapping[str, tuple[int, int]] | None = None,
    use_videos: bool = True,
    rename_map: Mapping[str, str] | None = None,
    extra_columns: tuple[str, ...] = ("capture_time_ns",),
) -> Features:
    """Build user features from the loop's batch schema (joint names from field metadata).

    `cameras` maps a camera key (`front` or `observation.images.front`) to (height, width).
    Only `observation.*`, `action*` and `extra_columns` are declared; other telemetry is ignored.
    """
    rename_map = dict(rename_map or {})
    out: Features = {}
    for field in schema:
        name = rename_map.get(field.name, field.name)
        if not (
            name.startswith("observation.") or name.startswith("action") or name in extra_columns
        ):
            continue
        if pa.types.is_fixed_size_list(field.type) or pa.types.is_list(field.type):
            value_type = field.type.value_type
            names = None
            if field.metadata and b"names" in field.metadata:
                names = json.loads(field.metadata[b"names"])
            size = field.type.list_size if pa.types.is_fixed_size_list(field.type) else None
            if size is None:
                if names is None:
                    raise DatasetError(
                        f"column {field.name!r}: variable lists need `names` metadata"
                    )
                size = len(names)
            out[name] = {
                "dtype": value_type.to_pandas_dtype().__name__,
                "shape": [size],
                "names": names,
            }
        else:
            out[name] = {
                "dtype": field.type.to_pandas_dtype().__name__,
                "shape": [1],
                "names": None,
            }
    for cam, (height, width) in (cameras or {}).items():
        key = cam if cam.startswith(CAMERA_PREFIX) else CAMERA_PREFIX + cam
        key = rename_map.get(key, key)
        out[key] = camera_feature(height, width, video=use_videos)
    return out
