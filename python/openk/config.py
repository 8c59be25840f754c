"""Typed configs for the `openk` commands, parsed the way lerobot/draccus parse them.

Precedence, lowest to highest: dataclass defaults → `--config_path=FILE.yaml` → dotted
command-line flags (`--robot.type=...`, `--dataset.num_episodes=2`). Every mistake becomes a
one-line `ConfigError` that names the key and the fix, so the CLI can print it as is.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from openk import devices
from openk.devices import is_sim_port
from openk.errors import ConfigError, OpenKError

# --- robots and teleoperators ---------------------------------------------------------------
# Device facts (types, aliases, keys, defaults, the simulator-port rule) are the core's: see
# `openk.devices`, which reads the native catalogue.

CAMERA_TYPES: tuple[str, ...] = ("synthetic", "opencv", "realsense")

Realtime = Literal["auto", "require", "off"]
VideoCodec = Literal["libsvtav1", "h264", "libx264", "hevc", "libx265"]


def help_meta(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class CameraConfig:
    """One camera: `synthetic` (draws its frame number), `opencv` (V4L2/MJPG) or `realsense`."""

    type: str = "synthetic"
    fps: int = 30
    width: int = 640
    height: int = 480
    index_or_path: int | str | None = None
    serial_number_or_name: str | None = None
    color_mode: str = "rgb"
    rotation: int = 0
    warmup_s: float = 1.0
    fourcc: str | None = None
    use_depth: bool = False


@dataclass
class DeviceConfig:
    """A robot (follower) or teleoperator (leader); which keys apply depends on `type`."""

    type: str | None = field(default=None, metadata=help_meta("device type"))
    id: str | None = field(default=None, metadata=help_meta("device id (names the calibration)"))
    port: str | None = field(
        default=None, metadata=help_meta("serial port (see `openk find-port`) or `sim`")
    )
    sts_port: str | None = field(
        default=None, metadata=help_meta("serial port of the follower's STS servos, or `sim`")
    )
    calibration_dir: Path | None = field(
        default=None, metadata=help_meta("folder of calibration JSON files")
    )
    disable_torque_on_disconnect: bool | None = None
    control_type: Literal["MIT", "POS_VEL"] | None = None
    motor_norm_mode: str | None = None
    sts_motor_norm_mode: str | None = None
    max_relative_target: float | dict[str, float] | None = None
    damiao_kp: float | dict[str, float] | None = None
    damiao_kd: float | dict[str, float] | None = None
    damiao_velocity_limit: float | dict[str, float] | None = None
    state_channels: list[str] | None = field(
        default=None,
        metadata=help_meta(
            "state channels the follower observes and records, e.g. '[pos,vel]' (pos is "
            "required; default: every channel the type has)"
        ),
    )
    cameras: dict[str, CameraConfig] = field(
        default_factory=dict, metadata=help_meta("cameras as YAML/JSON {name: {type, ...}}")
    )

    def to_core(self) -> dict[str, Any]:
        """The dict the native session takes: only keys that were set, paths as strings."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "cameras":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


@dataclass
class DatasetRecordConfig:
    repo_id: str | None = field(
        default=None, metadata=help_meta("dataset id <hf_user>/<name> (required)")
    )
    single_task: str | None = field(
        default=None, metadata=help_meta("what is done in every episode (required)")
    )
    root: Path | None = field(
        default=None,
        metadata=help_meta("local folder (default $HF_LEROBOT_HOME/<repo_id>)"),
    )
    fps: int = field(default=30, metadata=help_meta("dataset rows per second"))
    episode_time_s: float = field(default=30, metadata=help_meta("seconds per episode"))
    reset_time_s: float = field(default=10, metadata=help_meta("seconds between episodes"))
    num_episodes: int = field(default=2, metadata=help_meta("episodes to record"))
    video: bool = field(default=True, metadata=help_meta("encode cameras as video (else PNG)"))
    push_to_hub: bool = field(default=True, metadata=help_meta("upload after recording"))
    private: bool = field(default=False, metadata=help_meta("private Hub repo"))
    tags: list[str] | None = field(default=None, metadata=help_meta("Hub tags, e.g. '[a,b]'"))
    num_image_writer_processes: int = 0
    num_image_writer_threads_per_camera: int = 4
    video_encoding_batch_size: int = 1
    rename_map: dict[str, str] = field(
        default_factory=dict, metadata=help_meta("rename observation keys {old: new}")
    )


@dataclass
class PolicyConfig:
    """A trained lerobot policy (`pip install 'openk[policy]'`)."""

    path: str | None = field(
        default=None, metadata=help_meta("policy checkpoint folder or Hub repo id")
    )
    device: str | None = field(
        default=None, metadata=help_meta("torch device (default: the checkpoint's)")
    )


# Motion safety: the reference's teleoperate options, acted on by the Rust loop for teleoperate,
# record and replay (openk._core.TeleopSession documents the behaviour). Defaults are the
# reference's, except the *_dt_s step periods: None moves the ramp every control tick (the
# reference's Python loop could only step every 0.05 s); a number is honoured as that step.
MOTION_SAFETY: dict[str, tuple[float | None, str]] = {
    "start_ramp_time_s": (2.0, "seconds to blend from the follower's pose to the first goal"),
    "start_ramp_dt_s": (None, "start ramp step period in s (default: every control tick)"),
    "end_home_ramp_time_s": (3.0, "seconds to return home (0 per joint) on stop; 0: stay"),
    "end_home_ramp_dt_s": (None, "end ramp step period in s (default: every control tick)"),
    "end_home_settle_s": (1.0, "seconds home is held before torque off / hold"),
}


def _ramp_field(name: str) -> Any:
    default, text = MOTION_SAFETY[name]
    return field(default=default, metadata=help_meta(text))


@dataclass
class MotionSafetyConfig:
    """The MOTION_SAFETY options (top-level flags, e.g. `--start_ramp_time_s`) of every command
    that moves the follower; `--help` lists them after the command's own options."""

    start_ramp_time_s: float = _ramp_field("start_ramp_time_s")
    start_ramp_dt_s: float | None = _ramp_field("start_ramp_dt_s")
    end_home_ramp_time_s: float = _ramp_field("end_home_ramp_time_s")
    end_home_ramp_dt_s: float | None = _ramp_field("end_home_ramp_dt_s")
    end_home_settle_s: float = _ramp_field("end_home_settle_s")


@dataclass
class RecordConfig(MotionSafetyConfig):
    robot: DeviceConfig = field(default_factory=DeviceConfig)
    dataset: DatasetRecordConfig = field(default_factory=DatasetRecordConfig)
    # Optional with a policy (the policy drives the follower then).
    teleop: DeviceConfig | None = field(default_factory=DeviceConfig)
    policy: PolicyConfig | None = field(
        default=None, metadata=help_meta("run a trained policy instead of the leader")
    )
    direction_map: dict[str, float] | None = field(
        default=None, metadata=help_meta("per-joint sign flips {joint: -1}")
    )
    display_data: bool = field(default=False, metadata=help_meta("stream to rerun"))
    always_calibrate: bool = field(default=False, metadata=help_meta("calibrate on connect"))
    play_sounds: bool = False
    resume: bool = field(default=False, metadata=help_meta("append to an existing dataset"))
    log_file: Path | None = field(default=Path("logs/openk_record.log"))
    daily_log_file_name: bool = field(default=False, metadata=help_meta("date in log name"))
    # openk's own options (not in lerobot): the control loop and the encoder.
    control_hz: float | None = field(
        default=None, metadata=help_meta("control loop rate in Hz (default: the robot's)")
    )
    realtime: Realtime = field(
        default="auto", metadata=help_meta("SCHED_FIFO for the loop: auto|require|off")
    )
    vcodec: VideoCodec = field(
        default="libsvtav1", metadata=help_meta("video codec: libsvtav1 (lerobot's) or h264")
    )


ROLLOUT_STRATEGIES: tuple[str, ...] = ("base", "episodic", "dagger")


@dataclass
class RolloutStrategyConfig:
    type: str = field(
        default="base",
        metadata=help_meta("base (no recording, runs --duration) or episodic (records)"),
    )


@dataclass
class RolloutConfig(MotionSafetyConfig):
    """`openk rollout`: lerobot-rollout's flags where they apply to an openk arm."""

    robot: DeviceConfig = field(default_factory=DeviceConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    strategy: RolloutStrategyConfig = field(default_factory=RolloutStrategyConfig)
    dataset: DatasetRecordConfig | None = None
    teleop: DeviceConfig | None = None
    fps: int = field(default=30, metadata=help_meta("policy actions per second (base)"))
    duration: float = field(
        default=0.0, metadata=help_meta("seconds to run (base); 0 runs until Esc/Ctrl-C")
    )
    task: str = field(default="", metadata=help_meta("task text given to the policy"))
    rename_map: dict[str, str] = field(
        default_factory=dict, metadata=help_meta("rename robot keys for the policy {old: new}")
    )
    display_data: bool = False
    play_sounds: bool = False
    resume: bool = field(default=False, metadata=help_meta("append to an existing dataset"))
    always_calibrate: bool = False
    log_file: Path | None = field(default=Path("logs/openk_rollout.log"))
    daily_log_file_name: bool = False
    control_hz: float | None = field(
        default=None, metadata=help_meta("control loop rate in Hz (default: the robot's)")
    )
    realtime: Realtime = "auto"
    vcodec: VideoCodec = "libsvtav1"


@dataclass
class TeleoperateConfig(MotionSafetyConfig):
    teleop: DeviceConfig = field(default_factory=DeviceConfig)
    robot: DeviceConfig = field(default_factory=DeviceConfig)
    direction_map: dict[str, float] | None = None
    # A config file's `dataset:` section is allowed so one YAML file can serve record and
    # teleoperate; teleoperate says on stderr that it does not use it, and refuses --dataset.*
    # flags (typed for this command, they would be ignored).
    dataset: dict[str, Any] | None = None
    fps: int = 60
    teleop_time_s: float | None = None
    display_data: bool = False
    display_cli: bool = False
    always_calibrate: bool = False
    play_sounds: bool = False
    log_file: Path | None = field(default=Path("logs/openk_teleoperate.log"))
    daily_log_file_name: bool = False
    control_hz: float | None = None
    realtime: Realtime = "auto"


@dataclass
class FindJointLimitsConfig(MotionSafetyConfig):
    """`openk find-joint-limits`: teleoperate and report the range each joint reached (the
    reference's command; lerobot's end-effector bounds need a URDF, which openk does not take)."""

    robot: DeviceConfig = field(default_factory=DeviceConfig)
    teleop: DeviceConfig = field(default_factory=DeviceConfig)
    direction_map: dict[str, float] | None = None
    teleop_time_s: float = field(default=30.0, metadata=help_meta("seconds of measuring"))
    warmup_time_s: float = field(
        default=5.0, metadata=help_meta("seconds of teleoperation before measuring starts")
    )
    control_loop_fps: int = field(default=30, metadata=help_meta("samples per second"))
    always_calibrate: bool = False
    log_file: Path | None = field(default=Path("logs/openk_find_joint_limits.log"))
    daily_log_file_name: bool = False
    control_hz: float | None = None
    realtime: Realtime = "auto"


@dataclass
class DatasetReplayConfig:
    repo_id: str | None = None
    episode: int | None = None
    root: Path | None = None
    fps: int | None = None


@dataclass
class ReplayConfig(MotionSafetyConfig):
    robot: DeviceConfig = field(default_factory=DeviceConfig)
    dataset: DatasetReplayConfig = field(default_factory=DatasetReplayConfig)
    play_sounds: bool = False
    always_calibrate: bool = False
    log_file: Path | None = field(default=Path("logs/openk_replay.log"))
    daily_log_file_name: bool = False
    control_hz: float | None = None
    realtime: Realtime = "auto"


@dataclass
class CalibrateConfig:
    robot: DeviceConfig | None = None
    teleop: DeviceConfig | None = None
    # Scripted calibration for tests and sims: no prompts, the sweep is driven by the simulator.
    scripted: bool = False
    log_file: Path | None = field(default=Path("logs/openk_calibrate.log"))
    daily_log_file_name: bool = False


C = TypeVar("C")

# --- value decoding -------------------------------------------------------------------------


@dataclass(frozen=True)
class CliValue:
    """A value typed on the command line: a raw string, decoded only once its type is known."""

    text: str


class _Context:
    """Knows where each key came from, so errors say `--flag` or `key in FILE`."""

    def __init__(self, config_path: Path | None, cli_paths: set[str]) -> None:
        self.config_path = config_path
        self.cli_paths = cli_paths

    def name(self, path: str) -> str:
        if path in self.cli_paths or any(path.startswith(p + ".") for p in self.cli_paths):
            return f"--{path}"
        if self.config_path is not None:
            return f"'{path}' in {self.config_path}"
        return f"'{path}'"

    def unknown(self, path: str, key: str, valid: Sequence[str]) -> ConfigError:
        full = f"{path}.{key}" if path else key
        close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
        where = self.name(full)
        kind = "flag" if where.startswith("--") else "config key"
        hint = ""
        if close:
            suggestion = f"{path}.{close[0]}" if path else close[0]
            hint = f"; did you mean {'--' if kind == 'flag' else ''}{suggestion}?"
        else:
            hint = f"; valid keys here: {', '.join(sorted(valid))}"
        return ConfigError(f"unknown {kind} {where}{hint}")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + "|".join(str(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    pass


def _parse_cli_text(text: str) -> Any:
    """Values after `=` follow YAML (so JSON too): `2`, `true`, `[a, b]`, `{cam: {...}}`."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _decode(tp: Any, raw: Any, path: str, ctx: _Context) -> Any:
    if isinstance(raw, CliValue):
        # Strings typed on the command line stay verbatim ("123", "a: b" are valid tasks).
        if _accepts_str(tp) and not _is_container(tp) and not _accepts_number(tp):
            text = raw.text
            if _accepts_none(tp) and text.strip().lower() in ("null", "none", "~"):
                return None
            return _decode_scalar_str(tp, text, path, ctx)
        raw = _parse_cli_text(raw.text)
    try:
        return _decode_value(tp, raw, path, ctx)
    except _Mismatch:
        shown = _show(raw)
        raise ConfigError(
            f"{ctx.name(path)} has value {shown}, expected {_type_name(tp)}"
        ) from None


def _decode_scalar_str(tp: Any, text: str, path: str, ctx: _Context) -> Any:
    if any(_is_path(a) for a in _union_args(tp)):
        return Path(text)
    if _literal_in(tp):
        try:
            return _decode_value(tp, text, path, ctx)
        except _Mismatch:
            raise ConfigError(
                f"{ctx.name(path)} has value {text!r}, expected {_type_name(tp)}"
            ) from None
    return text


def _show(raw: Any) -> str:
    text = repr(_plain(raw))
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(raw: Any) -> Any:
    if isinstance(raw, CliValue):
        return raw.text
    if isinstance(raw, Mapping):
        return {k: _plain(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_plain(v) for v in raw]
    return raw


def _union_args(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _accepts_str(tp: Any) -> bool:
    return any(
        a is str or _is_path(a) or typing.get_origin(a) is Literal or a is Any
        for a in _union_args(tp)
    )


def _accepts_number(tp: Any) -> bool:
    """`int | str` (a camera index or a device path) must read `0` as the number."""
    return any(a in (int, float) for a in _union_args(tp))


def _accepts_none(tp: Any) -> bool:
    return type(None) in _union_args(tp)


def _is_container(tp: Any) -> bool:
    return any(
        typing.get_origin(a) in (list, dict) or dataclasses.is_dataclass(a) for a in _union_args(tp)
    )


def _is_path(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Path)


def _literal_in(tp: Any) -> bool:
    return any(typing.get_origin(a) is Literal for a in _union_args(tp))


def _decode_value(tp: Any, raw: Any, path: str, ctx: _Context) -> Any:
    if isinstance(raw, CliValue):
        return _decode(tp, raw, path, ctx)
    origin = typing.get_origin(tp)
    if tp is Any:
        return _plain(raw)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if raw is None:
            if type(None) in args:
                return None
            raise _Mismatch
        # Scalars before containers so `20` picks float in `float | dict[str, float]`.
        for arg in sorted(args, key=lambda a: 1 if _is_container(a) else 0):
            if arg is type(None):
                continue
            try:
                return _decode_value(arg, raw, path, ctx)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        choices = typing.get_args(tp)
        if raw in choices:
            return raw
        if isinstance(raw, str):
            for choice in choices:
                if isinstance(choice, str) and choice.lower() == raw.lower():
                    return choice
        raise _Mismatch
    if dataclasses.is_dataclass(tp):
        if not isinstance(raw, Mapping):
            raise _Mismatch
        return _build(tp, raw, path, ctx)  # type: ignore[arg-type]
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(raw, str):
            # draccus-style `--dataset.tags=a,b` as well as YAML lists.
            raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(raw, list):
            raise _Mismatch
        return [_decode(item_tp, v, f"{path}[{i}]", ctx) for i, v in enumerate(raw)]
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp) or (str, Any)
        if not isinstance(raw, Mapping):
            raise _Mismatch
        out = {}
        for k, v in raw.items():
            out[_decode_value(key_tp, k, path, ctx)] = _decode(value_tp, v, f"{path}.{k}", ctx)
        return out
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise _Mismatch
    if tp is int:
        if isinstance(raw, bool):
            raise _Mismatch
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is float:
        if isinstance(raw, bool):
            raise _Mismatch
        if isinstance(raw, (int, float)):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is str:
        # YAML turns `id: 1` into an int; an id or port is still text.
        if isinstance(raw, bool) or raw is None or isinstance(raw, (list, dict)):
            raise _Mismatch
        return str(raw)
    if _is_path(tp):
        if isinstance(raw, (str, Path)):
            return Path(raw)
        raise _Mismatch
    raise _Mismatch


def _build(cls: type[C], raw: Mapping[str, Any], path: str, ctx: _Context) -> C:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or key not in fields:
            raise ctx.unknown(path, str(key), list(fields))
        sub = f"{path}.{key}" if path else key
        kwargs[key] = _decode(hints[key], value, sub, ctx)
    return cls(**kwargs)


# --- sources: YAML file and dotted flags ----------------------------------------------------


def parse_flags(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Split `--a.b=v` / `--a.b v` / bare `--flag` (true) into {dotted key: raw text}.

    Returns the flags and the positional arguments left over.
    """
    flags: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and len(arg) > 2:
            body = arg[2:]
            if "=" in body:
                key, value = body.split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                key, value = body, args[i + 1]
                i += 1
            else:
                key, value = body, "true"
            key = key.strip()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*", key):
                raise ConfigError(f"cannot read flag {arg!r}; write it as --key=value")
            # lerobot spells flags with underscores; accept dashes too.
            flags[key.replace("-", "_")] = value
        else:
            positional.append(arg)
        i += 1
    return flags, positional


def load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"--config_path={path} does not exist; pass a YAML file such as config/record_sim.yaml"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where} is not valid YAML; fix the file's syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys (robot:, dataset:, ...)")
    return data


def _overlay(tree: dict[str, Any], dotted: str, value: CliValue) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, CliValue):
            # `--robot='{...}' --robot.port=x`: expand the earlier whole value first.
            child = _parse_cli_text(child.text)
        if not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


def _check_device(dev: DeviceConfig | None, role: devices.Role, ctx: _Context, raw: Any) -> None:
    if dev is None:
        return
    valid_types = devices.type_names(role)
    if dev.type is None:
        raise ConfigError(f"missing --{role}.type; add --{role}.type=<{'|'.join(valid_types)}>")
    info = devices.find(dev.type, role)
    if info is None:
        close = difflib.get_close_matches(dev.type, list(valid_types), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        other = devices.find(dev.type)
        if other is not None:
            hint = f"{dev.type} is a {other.kind} type, pass it as --{other.kind}.type; "
        raise ConfigError(
            f"unknown {role} type {dev.type!r} ({ctx.name(role + '.type')}); {hint}"
            f"valid types: {', '.join(valid_types)}"
        )
    allowed = info.config_keys
    if isinstance(raw, Mapping):
        for key in raw:
            if key not in allowed:
                err = ctx.unknown(role, str(key), sorted(allowed))
                raise ConfigError(f"{err} ({role} type {dev.type})")
    if not dev.port:
        raise ConfigError(
            f"missing --{role}.port; add --{role}.port=<serial port> (see `openk find-port`) "
            f"or --{role}.port=sim"
        )
    if info.needs_sts_port and not dev.sts_port:
        if is_sim_port(dev.port):
            dev.sts_port = dev.port
        else:
            raise ConfigError(
                f"missing --{role}.sts_port; {dev.type} needs the STS servo port too "
                f"(see `openk find-port`), e.g. --{role}.sts_port=/dev/ttyUSB0"
            )
    if dev.state_channels is not None:
        # The core checks the channels (one rule for every tool), before anything connects.
        devices.load_core().device_features(dev.type, role, state_channels=dev.state_channels)
    for name, cam in dev.cameras.items():
        if cam.type not in CAMERA_TYPES:
            raise ConfigError(
                f"{ctx.name(f'{role}.cameras.{name}.type')}: unknown camera type {cam.type!r}; "
                f"valid types: {', '.join(CAMERA_TYPES)}"
            )
    if dev.id is None:
        dev.id = info.default_id


def validate_repo_id(repo_id: str, flag: str = "--dataset.repo_id") -> str:
    """Refuse ids that could escape the dataset root or that the Hub would refuse (the
    project's one rule, `openk.repo_id`), naming the flag to fix."""
    from openk.repo_id import validate_repo_id as project_rule

    try:
        return project_rule(repo_id)
    except OpenKError:
        raise ConfigError(
            f"{flag}={repo_id!r} is not a valid dataset repo id; use {flag}=<hf_user>/"
            "<dataset_name> (letters, digits, '-', '_', '.'; no '..' or leading '/')"
        ) from None


def _check_positive(value: float | int, name: str, ctx: _Context, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(f"{ctx.name(name)} is {value}; it must be {bound}")


def _check_loop(control_hz: float | None, fps: float | None, fps_key: str, ctx: _Context) -> None:
    """The loop's rates, checked by the core (the session checks them the same way), with the
    options named as the user wrote them."""

    def flag(key: str, given: bool) -> str:
        # A value the user gave is named where it came from; a default by the flag to set.
        name = ctx.name(key)
        return name if given and name != f"'{key}'" else f"--{key}"

    names = {
        "control_hz": flag("control_hz", control_hz is not None),
        "record_fps": flag(fps_key, True),
    }
    devices.load_core().validate_loop(control_hz, None if fps is None else float(fps), names=names)


EVAL_PREFIX = "eval_"
ROLLOUT_PREFIX = "rollout_"


def _check_policy(policy: PolicyConfig) -> None:
    if not policy.path:
        raise ConfigError(
            "missing --policy.path; pass the checkpoint folder lerobot-train wrote "
            "(.../checkpoints/last/pretrained_model) or a Hub repo id"
        )


def _check_eval_name(repo_id: str, policy: PolicyConfig | None) -> None:
    """The reference's rule (lerobot's before 0.6): a dataset recorded with a policy is an
    evaluation dataset and its name starts with `eval_`; without a policy it does not."""
    name = repo_id.split("/", 1)[-1]
    if policy is not None and not name.startswith(EVAL_PREFIX):
        raise ConfigError(
            f"--dataset.repo_id={repo_id}: a dataset recorded with --policy.path is an "
            f"evaluation dataset and its name must start with '{EVAL_PREFIX}'; use "
            f"--dataset.repo_id=<hf_user>/{EVAL_PREFIX}{name}"
        )
    if policy is None and name.startswith(EVAL_PREFIX):
        raise ConfigError(
            f"--dataset.repo_id={repo_id}: dataset names starting with '{EVAL_PREFIX}' are "
            "reserved for policy evaluation; add --policy.path=<checkpoint> or choose a name "
            f"without '{EVAL_PREFIX}'"
        )


def _validate_rollout(cfg: RolloutConfig, raw: dict[str, Any], ctx: _Context) -> None:
    _check_device(cfg.robot, "robot", ctx, raw.get("robot"))
    _check_policy(cfg.policy)
    kind = cfg.strategy.type
    if kind in ("sentry", "highlight"):
        raise ConfigError(
            f"--strategy.type={kind} is not supported by openk yet; use "
            f"--strategy.type=base (no recording), episodic (records episodes) or dagger"
        )
    if kind not in ROLLOUT_STRATEGIES:
        raise ConfigError(
            f"--strategy.type={kind!r} is unknown; valid types: {', '.join(ROLLOUT_STRATEGIES)}"
        )
    if kind == "dagger":
        if cfg.teleop is None:
            raise ConfigError(
                "--strategy.type=dagger hands the arm from the policy to a leader arm; add "
                "--teleop.type=... --teleop.port=... --teleop.id=..."
            )
        _check_device(cfg.teleop, "teleop", ctx, raw.get("teleop"))
    elif cfg.teleop is not None:
        raise ConfigError(
            f"--teleop.* in openk rollout is for --strategy.type=dagger (a leader takes over "
            f"from the policy); --strategy.type={kind} does not use it: remove the --teleop.* "
            "options"
        )
    _check_loop(cfg.control_hz, cfg.fps, "fps", ctx)
    _check_positive(cfg.duration, "duration", ctx, allow_zero=True)
    if kind == "base":
        if cfg.dataset is not None:
            raise ConfigError(
                "--strategy.type=base does not record data; remove the --dataset.* options "
                "or use --strategy.type=episodic"
            )
        for key in ("resume", "vcodec"):
            if key in raw:
                raise ConfigError(
                    f"--{key} is for recording; --strategy.type=base records nothing (remove "
                    "it, or use --strategy.type=episodic)"
                )
        return
    if cfg.duration > 0:
        raise ConfigError(
            f"--duration is for --strategy.type=base; {kind} runs --dataset.num_episodes "
            "episodes of --dataset.episode_time_s each"
        )
    ds = cfg.dataset
    if ds is None or not ds.repo_id:
        raise ConfigError(
            f"--strategy.type={kind} records episodes and needs "
            f"--dataset.repo_id=<hf_user>/{ROLLOUT_PREFIX}<name>"
        )
    validate_repo_id(ds.repo_id)
    name = ds.repo_id.split("/", 1)[-1]
    if not name.startswith(ROLLOUT_PREFIX) and not cfg.resume:
        # lerobot-rollout 0.6.1's rule and words.
        raise ConfigError(
            f"--dataset.repo_id={ds.repo_id}: dataset names for rollout must start with "
            f"'{ROLLOUT_PREFIX}'. Use --dataset.repo_id=<user>/{ROLLOUT_PREFIX}<name> for "
            "policy deployment datasets."
        )
    if not ds.single_task and cfg.task:
        ds.single_task = cfg.task
    elif ds.single_task and not cfg.task:
        cfg.task = ds.single_task
    if not ds.single_task:
        raise ConfigError('missing --task; add --task="what the robot does"')
    if "fps" in (raw.get("dataset") or {}) and "fps" in raw and ds.fps != cfg.fps:
        raise ConfigError(f"--fps={cfg.fps} and --dataset.fps={ds.fps} differ; give one")
    if "fps" not in (raw.get("dataset") or {}):
        ds.fps = cfg.fps
    _check_positive(ds.num_episodes, "dataset.num_episodes", ctx)
    _check_positive(ds.episode_time_s, "dataset.episode_time_s", ctx)
    _check_positive(ds.reset_time_s, "dataset.reset_time_s", ctx, allow_zero=True)


def _validate(cfg: Any, raw: dict[str, Any], ctx: _Context) -> None:
    if isinstance(cfg, RecordConfig):
        _check_device(cfg.robot, "robot", ctx, raw.get("robot"))
        if cfg.policy is not None:
            _check_policy(cfg.policy)
            if "teleop" not in raw:
                cfg.teleop = None
            else:
                raise ConfigError(
                    "--policy.path with --teleop.*: the policy drives the follower and openk "
                    "cannot hand it over to a leader arm yet; remove the --teleop.* options "
                    "(the arm holds its pose between episodes)"
                )
        _check_device(cfg.teleop, "teleop", ctx, raw.get("teleop"))
        ds = cfg.dataset
        if not ds.repo_id:
            raise ConfigError(
                "missing --dataset.repo_id; add --dataset.repo_id=<hf_user>/<dataset_name>"
            )
        validate_repo_id(ds.repo_id)
        _check_eval_name(ds.repo_id, cfg.policy)
        if not ds.single_task:
            raise ConfigError(
                'missing --dataset.single_task; add --dataset.single_task="what the robot does"'
            )
        _check_loop(cfg.control_hz, ds.fps, "dataset.fps", ctx)
        _check_positive(ds.num_episodes, "dataset.num_episodes", ctx)
        _check_positive(ds.episode_time_s, "dataset.episode_time_s", ctx)
        _check_positive(ds.reset_time_s, "dataset.reset_time_s", ctx, allow_zero=True)
    elif isinstance(cfg, RolloutConfig):
        _validate_rollout(cfg, raw, ctx)
    elif isinstance(cfg, TeleoperateConfig):
        flags = sorted(p for p in ctx.cli_paths if p == "dataset" or p.startswith("dataset."))
        if flags:
            raise ConfigError(
                f"--{flags[0]}: openk teleoperate records nothing, so it has no --dataset.* "
                "options; remove them (or use openk record)"
            )
        _check_device(cfg.robot, "robot", ctx, raw.get("robot"))
        _check_device(cfg.teleop, "teleop", ctx, raw.get("teleop"))
        _check_loop(cfg.control_hz, cfg.fps, "fps", ctx)
        if cfg.teleop_time_s is not None:
            _check_positive(cfg.teleop_time_s, "teleop_time_s", ctx)
    elif isinstance(cfg, FindJointLimitsConfig):
        _check_device(cfg.robot, "robot", ctx, raw.get("robot"))
        _check_device(cfg.teleop, "teleop", ctx, raw.get("teleop"))
        _check_positive(cfg.teleop_time_s, "teleop_time_s", ctx)
        _check_positive(cfg.warmup_time_s, "warmup_time_s", ctx, allow_zero=True)
        _check_loop(cfg.control_hz, cfg.control_loop_fps, "control_loop_fps", ctx)
    elif isinstance(cfg, ReplayConfig):
        _check_device(cfg.robot, "robot", ctx, raw.get("robot"))
        if not cfg.dataset.repo_id:
            raise ConfigError(
                "missing --dataset.repo_id; add --dataset.repo_id=<hf_user>/<dataset_name>"
            )
        validate_repo_id(cfg.dataset.repo_id)
        if cfg.dataset.episode is None:
            raise ConfigError("missing --dataset.episode; add --dataset.episode=0")
        _check_positive(cfg.dataset.episode, "dataset.episode", ctx, allow_zero=True)
        # The dataset's own fps is checked against the loop once the episode is read.
        _check_loop(cfg.control_hz, cfg.dataset.fps, "dataset.fps", ctx)
    elif isinstance(cfg, CalibrateConfig):
        if (cfg.robot is None) == (cfg.teleop is None):
            raise ConfigError(
                "calibrate one device: give either --robot.type/--robot.port or "
                "--teleop.type/--teleop.port, not both"
            )
        _check_device(cfg.robot, "robot", ctx, raw.get("robot"))
        _check_device(cfg.teleop, "teleop", ctx, raw.get("teleop"))


def parse_config(
    cls: type[C],
    args: Sequence[str] = (),
    *,
    config_path: str | os.PathLike[str] | None = None,
    validate: bool = True,
) -> C:
    """Build `cls` from defaults, an optional YAML file and dotted flags.

    `args` are command-line tokens (`--robot.type=...`); `--config_path` may be among them.
    """
    flags, positional = parse_flags(args)
    if positional:
        raise ConfigError(f"unexpected argument {positional[0]!r}; options are written --key=value")
    path_text = flags.pop("config_path", None)
    if path_text is None and config_path is not None:
        path_text = os.fspath(config_path)
    path = Path(path_text) if path_text else None
    tree: dict[str, Any] = load_yaml(path) if path is not None else {}
    for key, value in flags.items():
        _overlay(tree, key, CliValue(value))
    ctx = _Context(path, set(flags))
    raw = tree
    cfg = _build(cls, raw, "", ctx)
    if validate:
        _validate(cfg, raw, ctx)
    return cfg


def config_fields(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted flag, type, help) of every option, for `--help`."""
    out: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    own = inspect.get_annotations(cls)
    # The command's own options first, then those shared through a base (MotionSafetyConfig).
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):
        tp = hints[f.name]
        name = f"{prefix}{f.name}"
        inner = [a for a in _union_args(tp) if isinstance(a, type) and dataclasses.is_dataclass(a)]
        if inner and f.name != "cameras":
            out.extend(config_fields(inner[0], name + "."))
            continue
        out.append((name, _type_name(tp), f.metadata.get("help", "")))
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config, for logging (paths as strings)."""

    def conv(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, list):
            return [conv(v) for v in value]
        return value

    out: dict[str, Any] = conv(dataclasses.asdict(cfg))
    return out


def dataset_root(repo_id: str, root: Path | None) -> Path:
    """--dataset.root, else `$HF_LEROBOT_HOME/<repo_id>` as lerobot (id validated first)."""
    validate_repo_id(repo_id)
    if root is not None:
        return Path(root).expanduser()
    from openk.dataset.layout import default_root

    return default_root(repo_id)
