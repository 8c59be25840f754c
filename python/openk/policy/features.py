"""Does a policy checkpoint fit the robot? Checked from the checkpoint's files, before the arm
moves and without torch: the policy's `config.json` declares its input and output features
(type and shape); the dataset it was trained on, when it is on this machine, names the joints.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openk.errors import ConfigError
from openk.policy import PolicyMismatchError

log = logging.getLogger("openk.policy")

STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGE_PREFIX = "observation.images."
CONFIG_NAME = "config.json"
TRAIN_CONFIG_NAME = "train_config.json"


@dataclass
class PolicySpec:
    """What a checkpoint declares: lerobot's `input_features` / `output_features`."""

    path: str
    type: str
    # key -> (lerobot FeatureType name: STATE | VISUAL | ENV | ..., shape)
    inputs: dict[str, tuple[str, tuple[int, ...]]]
    outputs: dict[str, tuple[str, tuple[int, ...]]]
    device: str | None = None
    # Names and fps of the dataset it was trained on, when that dataset is on this machine.
    trained_names: dict[str, list[str]] = field(default_factory=dict)
    trained_fps: int | None = None
    trained_on: str | None = None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the policy's {what} {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the policy's {what} {path} is not a JSON object")
    return data


def checkpoint_file(path: str, name: str, *, required: bool = True) -> Path | None:
    """`name` inside a local checkpoint folder, or downloaded from the Hub for a repo id."""
    local = Path(path).expanduser()
    if local.is_dir():
        found = local / name
        if found.is_file():
            return found
        if not required:
            return None
        nested = local / "pretrained_model" / name
        hint = (
            f"; did you mean --policy.path={local / 'pretrained_model'}?"
            if nested.is_file()
            else " (pass the folder lerobot-train wrote as .../checkpoints/<step>/pretrained_model)"
        )
        raise ConfigError(f"--policy.path={path} has no {name}{hint}")
    if local.exists() or path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise ConfigError(
            f"--policy.path={path} is neither a checkpoint folder nor a Hub repo id "
            "(<user>/<model>); pass the pretrained_model folder lerobot-train wrote"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        return Path(hf_hub_download(path, name))
    except EntryNotFoundError:
        if required:
            raise ConfigError(f"the Hub model {path} has no {name}") from None
        return None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise ConfigError(f"cannot fetch {name} of the Hub model {path}: {err}") from None


def _features(raw: Any, path: Path, key: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: {key!r} is missing; is this a lerobot policy checkpoint?")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, spec in raw.items():
        if not isinstance(spec, Mapping) or "shape" not in spec:
            raise ConfigError(f"{path}: {key}.{name} has no shape")
        out[str(name)] = (str(spec.get("type", "")), tuple(int(s) for s in spec["shape"]))
    return out


def _trained_dataset(path: str) -> tuple[dict[str, list[str]], int | None, str | None]:
    """Joint names and fps of the training dataset, if train_config.json points at one here."""
    train = checkpoint_file(path, TRAIN_CONFIG_NAME, required=False)
    if train is None:
        return {}, None, None
    ds = _read_json(train, TRAIN_CONFIG_NAME).get("dataset") or {}
    repo_id, root = ds.get("repo_id"), ds.get("root")
    candidates: list[Path] = []
    if root:
        candidates.append(Path(root).expanduser())
    if isinstance(repo_id, str) and repo_id:
        from openk.dataset.layout import default_root

        # A repo id this project would refuse: just skip the lookup.
        with contextlib.suppress(Exception):
            candidates.append(default_root(repo_id))
    from openk.dataset import meta

    for folder in candidates:
        info_path = meta.info_path(folder)
        if not info_path.is_file():
            continue
        info = _read_json(info_path, "training dataset's info.json")
        feats = info.get("features") or {}
        names = {
            key: list(spec["names"])
            for key, spec in feats.items()
            if key in (STATE_KEY, ACTION_KEY) and isinstance(spec.get("names"), list)
        }
        fps = info.get("fps")
        return names, int(fps) if isinstance(fps, (int, float)) else None, str(folder)
    return {}, None, None


def read_policy_spec(path: str) -> PolicySpec:
    """The checkpoint's declared features (config.json), plus its training dataset's names."""
    config_path = checkpoint_file(path, CONFIG_NAME)
    assert config_path is not None
    cfg = _read_json(config_path, CONFIG_NAME)
    names, fps, trained_on = _trained_dataset(path)
    return PolicySpec(
        path=path,
        type=str(cfg.get("type", "?")),
        inputs=_features(cfg.get("input_features"), config_path, "input_features"),
        outputs=_features(cfg.get("output_features"), config_path, "output_features"),
        device=cfg.get("device"),
        trained_names=names,
        trained_fps=fps,
        trained_on=trained_on,
    )


@dataclass
class RobotSpec:
    """What the robot gives the policy and takes from it (names from the device catalogue)."""

    state_names: list[str]
    action_names: list[str]
    # policy-facing camera key (after --rename_map) -> (height, width), and its robot name
    cameras: dict[str, tuple[int, int]]
    camera_sources: dict[str, str]


def robot_spec(
    state_names: Sequence[str],
    action_names: Sequence[str],
    cameras: Mapping[str, tuple[int, int]],
    rename_map: Mapping[str, str] | None = None,
) -> RobotSpec:
    """`cameras` maps robot camera names (`front`) to (height, width); `rename_map` renames the
    full keys (`observation.images.front` -> `observation.images.top`) as lerobot's does."""
    rename = dict(rename_map or {})
    keys: dict[str, tuple[int, int]] = {}
    sources: dict[str, str] = {}
    for name, hw in cameras.items():
        key = name if name.startswith(IMAGE_PREFIX) else IMAGE_PREFIX + name
        key = rename.get(key, key)
        keys[key] = (int(hw[0]), int(hw[1]))
        sources[key] = name
    return RobotSpec(list(state_names), list(action_names), keys, sources)


def _name_diff(what: str, trained: list[str], ours: list[str]) -> str:
    missing = [n for n in trained if n not in ours]
    extra = [n for n in ours if n not in trained]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"the robot lacks {missing}")
        if extra:
            parts.append(f"the policy was not trained on {extra}")
        return f"{what} names differ: {'; '.join(parts)}"
    return f"{what} joints are in another order: trained {trained}, robot {ours}"


def feature_differences(policy: PolicySpec, robot: RobotSpec) -> list[str]:
    """Plain-words differences that stop the policy from running on this robot ([] = fits)."""
    problems: list[str] = []
    for key, (ftype, shape) in policy.inputs.items():
        if ftype == "STATE" or key == STATE_KEY:
            if key != STATE_KEY:
                problems.append(f"the policy wants state input {key!r}; openk provides {STATE_KEY}")
            elif shape != (len(robot.state_names),):
                problems.append(
                    f"{STATE_KEY}: the policy wants shape {list(shape)}, the robot gives "
                    f"[{len(robot.state_names)}] ({', '.join(robot.state_names)})"
                )
        elif ftype == "VISUAL" or key.startswith(IMAGE_PREFIX):
            if key not in robot.cameras:
                have = ", ".join(sorted(robot.cameras)) or "no cameras"
                problems.append(
                    f"the policy wants camera {key!r}, the robot has {have}; add that camera to "
                    f"--robot.cameras or map one onto it with --rename_map="
                    f'\'{{"observation.images.<robot camera>": "{key}"}}\''
                )
                continue
            height, width = robot.cameras[key]
            if shape != (3, height, width):
                problems.append(
                    f"{key}: the policy wants images of {shape[-1]}x{shape[-2]} "
                    f"(shape {list(shape)}), camera {robot.camera_sources[key]!r} gives "
                    f"{width}x{height}; set its width/height to match"
                )
        else:
            problems.append(
                f"the policy wants input {key!r} ({ftype or 'unknown type'}), which an openk "
                "robot does not provide"
            )
    action = policy.outputs.get(ACTION_KEY)
    if action is None:
        problems.append(f"the policy declares no {ACTION_KEY!r} output")
    elif action[1] != (len(robot.action_names),):
        problems.append(
            f"action: the policy outputs shape {list(action[1])}, the robot takes "
            f"[{len(robot.action_names)}] ({', '.join(robot.action_names)})"
        )
    for key, ours in ((STATE_KEY, robot.state_names), (ACTION_KEY, robot.action_names)):
        trained = policy.trained_names.get(key)
        if trained is not None and trained != ours and len(trained) == len(ours):
            problems.append(_name_diff(key, trained, ours))
    return problems


def check_policy_fits(policy: PolicySpec, robot: RobotSpec, robot_type: str) -> None:
    """Raise `PolicyMismatchError` naming every difference; log what fits."""
    problems = feature_differences(policy, robot)
    if problems:
        raise PolicyMismatchError(
            f"the policy at {policy.path} does not fit {robot_type} (nothing was moved): "
            + "; ".join(problems)
        )
    unused = sorted(set(robot.cameras) - set(policy.inputs))
    if unused:
        log.info("cameras the policy does not use (recorded only): %s", ", ".join(unused))
    if not policy.trained_names:
        log.info(
            "the policy's training dataset is not on this machine; checked shapes, not joint names"
        )


def policy_cameras(policy: PolicySpec) -> list[str]:
    """The camera keys the policy reads."""
    return [
        k for k, (t, _s) in policy.inputs.items() if t == "VISUAL" or k.startswith(IMAGE_PREFIX)
    ]


__all__ = [
    "PolicySpec",
    "RobotSpec",
    "check_policy_fits",
    "feature_differences",
    "policy_cameras",
    "read_policy_spec",
    "robot_spec",
]
