"""Config parsing: precedence, value syntax, and the shipped YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest

from openk.config import (
    CalibrateConfig,
    ConfigError,
    RecordConfig,
    ReplayConfig,
    TeleoperateConfig,
    parse_config,
    validate_repo_id,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

SIM = [
    "--robot.type=openk-1-alpha_follower",
    "--robot.port=sim",
    "--teleop.type=openk-1-sts_leader",
    "--teleop.port=sim",
]


def test_defaults_match_the_reference_record_config() -> None:
    cfg = parse_config(RecordConfig, [*SIM, "--dataset.repo_id=me/ds", "--dataset.single_task=t"])
    ds = cfg.dataset
    assert (ds.fps, ds.episode_time_s, ds.reset_time_s, ds.num_episodes) == (30, 30, 10, 2)
    assert ds.video is True and ds.push_to_hub is True and ds.private is False
    assert cfg.resume is False and cfg.play_sounds is False
    assert cfg.log_file == Path("logs/openk_record.log")
    # A sim follower gets a sim STS port without being told.
    assert cfg.robot.sts_port == "sim"


def test_flags_override_file_and_file_overrides_defaults(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        "robot: {type: openk-1-alpha_follower, port: sim, id: from_file}\n"
        "teleop: {type: openk_leader, port: sim}\n"
        "dataset: {repo_id: me/file, single_task: from file, num_episodes: 5, fps: 15}\n"
        "resume: true\n"
    )
    cfg = parse_config(
        RecordConfig,
        [f"--config_path={cfg_file}", "--dataset.num_episodes=2", "--robot.id=from_flag"],
    )
    assert cfg.dataset.num_episodes == 2  # flag beats file
    assert cfg.dataset.fps == 15  # file beats default
    assert cfg.dataset.episode_time_s == 30  # default kept when absent from both
    assert cfg.robot.id == "from_flag"
    assert cfg.robot.type == "openk-1-alpha_follower"
    assert cfg.resume is True
    assert cfg.dataset.single_task == "from file"


def test_values_follow_yaml_syntax_like_draccus() -> None:
    cfg = parse_config(
        RecordConfig,
        [
            *SIM,
            "--dataset.repo_id=me/123",
            "--dataset.single_task=42",  # a str field keeps the text, not the number
            "--dataset.tags=[a, b]",
            "--dataset.private=True",
            "--dataset.video=false",
            "--dataset.episode_time_s=2.5",
            "--robot.cameras={front: {type: synthetic, width: 320, height: 240}}",
            '--direction_map={"grip": -1, "wrist_roll": -1}',
            "--robot.max_relative_target=20",
            "--resume",  # a bare boolean flag means true
            "--realtime=off",
            "--vcodec=h264",
        ],
    )
    assert cfg.dataset.single_task == "42"
    assert cfg.dataset.tags == ["a", "b"]
    assert cfg.dataset.private is True and cfg.dataset.video is False
    assert cfg.dataset.episode_time_s == 2.5
    front = cfg.robot.cameras["front"]
    assert (front.type, front.width, front.height) == ("synthetic", 320, 240)
    assert cfg.direction_map == {"grip": -1.0, "wrist_roll": -1.0}
    assert cfg.robot.max_relative_target == 20.0
    assert cfg.resume is True
    assert (cfg.realtime, cfg.vcodec) == ("off", "h264")


def test_cameras_can_be_cleared_by_a_flag(tmp_path: Path) -> None:
    cfg = parse_config(
        RecordConfig,
        [
            f"--config_path={CONFIG_DIR / 'record_sim.yaml'}",
            "--robot.cameras={}",
        ],
    )
    assert cfg.robot.cameras == {}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--robot.prot=sim"], "unknown flag --robot.prot; did you mean --robot.port?"),
        (["--dataset.num_episode=3"], "did you mean --dataset.num_episodes?"),
        (["--dataset.num_episodes=two"], "--dataset.num_episodes has value 'two', expected int"),
        (["--resume=maybe"], "--resume has value 'maybe', expected bool"),
        (["--realtime=always"], "expected one of auto|require|off"),
        (["--robot.type=openk-1-alpha_folower"], "did you mean openk-1-alpha_follower?"),
        (["--robot.type=openk_leader"], "openk_leader is a teleop type"),
        (["--teleop.sts_port=sim"], "unknown flag --teleop.sts_port"),
    ],
)
def test_bad_flags_name_the_key_and_the_fix(args: list[str], expected: str) -> None:
    base = [*SIM, "--dataset.repo_id=me/ds", "--dataset.single_task=t"]
    with pytest.raises(ConfigError) as err:
        parse_config(RecordConfig, [*base, *args])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_state_channels_from_a_flag_or_a_file(tmp_path: Path) -> None:
    base = [*SIM, "--dataset.repo_id=me/ds", "--dataset.single_task=t"]
    cfg = parse_config(RecordConfig, [*base, "--robot.state_channels=[pos,vel]"])
    assert cfg.robot.state_channels == ["pos", "vel"]
    assert cfg.robot.to_core()["state_channels"] == ["pos", "vel"]
    assert parse_config(RecordConfig, base).robot.state_channels is None  # every channel
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        "robot: {type: openk-1-alpha_follower2, port: sim, state_channels: [pos, vel]}\n"
        "teleop: {type: openk-1-sts_leader, port: sim}\n"
    )
    cfg = parse_config(TeleoperateConfig, [f"--config_path={cfg_file}"])
    assert cfg.robot.state_channels == ["pos", "vel"]
    with pytest.raises(ConfigError, match='no state channel "effort"; allowed: pos, vel, tor'):
        parse_config(RecordConfig, [*base, "--robot.state_channels=[pos,effort]"])
    with pytest.raises(ConfigError, match="state_channels must include pos"):
        parse_config(RecordConfig, [*base, "--robot.state_channels=[vel]"])
    with pytest.raises(ConfigError, match=r"unknown flag --teleop\.state_channels"):
        parse_config(RecordConfig, [*base, "--teleop.state_channels=[pos]"])


def test_unknown_yaml_key_names_the_file_and_the_closest_key(tmp_path: Path) -> None:
    cfg_file = tmp_path / "typo.yaml"
    cfg_file.write_text("dataset:\n  repo_id: me/ds\n  singel_task: t\n")
    with pytest.raises(ConfigError) as err:
        parse_config(RecordConfig, [f"--config_path={cfg_file}"])
    msg = str(err.value)
    assert "dataset.singel_task" in msg and str(cfg_file) in msg
    assert "did you mean dataset.single_task?" in msg


@pytest.mark.parametrize(
    "repo_id", ["../x", "/abs/path", "a/../../b", "a/b/c", "", "~/x", "a\\b", "no_namespace"]
)
def test_repo_ids_that_could_escape_the_root_are_refused(repo_id: str) -> None:
    with pytest.raises(ConfigError, match="not a valid dataset repo id"):
        validate_repo_id(repo_id)


@pytest.mark.parametrize("repo_id", ["local/openk_sim", "debroglieeeen/OpenK202511231651"])
def test_ordinary_repo_ids_pass(repo_id: str) -> None:
    assert validate_repo_id(repo_id) == repo_id


@pytest.mark.parametrize(
    "name",
    [
        "record_example.yaml",
        "record_example_sim.yaml",
        "record_one_motor_test_sim.yaml",
        "record_sts_leader.yaml",
        "record_sim.yaml",
    ],
)
def test_shipped_record_configs_parse(name: str) -> None:
    cfg = parse_config(RecordConfig, [f"--config_path={CONFIG_DIR / name}"])
    assert cfg.robot.type and cfg.teleop.type and cfg.dataset.repo_id


def test_record_one_motor_test_needs_a_real_repo_id() -> None:
    path = CONFIG_DIR / "record_one_motor_test.yaml"
    with pytest.raises(ConfigError, match="not a valid dataset repo id"):
        parse_config(RecordConfig, [f"--config_path={path}"])
    cfg = parse_config(RecordConfig, [f"--config_path={path}", "--dataset.repo_id=me/one-motor"])
    assert cfg.robot.type == "one-motor-test_follower"
    assert cfg.robot.max_relative_target == 20.0
    assert cfg.teleop.type == "one-motor-test_leader"


def test_record_sim_is_local_and_short() -> None:
    cfg = parse_config(RecordConfig, [f"--config_path={CONFIG_DIR / 'record_sim.yaml'}"])
    assert cfg.dataset.push_to_hub is False
    assert cfg.robot.port == "sim" and cfg.teleop.port == "sim"
    assert sorted(cfg.robot.cameras) == ["front", "wrist"]
    assert all(c.type == "synthetic" for c in cfg.robot.cameras.values())
    assert cfg.dataset.num_episodes * cfg.dataset.episode_time_s <= 60


@pytest.mark.parametrize(
    "name", ["teleop_example.yaml", "teleop_example_sim.yaml", "teleop_one_motor_test.yaml"]
)
def test_shipped_teleop_configs_parse(name: str) -> None:
    cfg = parse_config(TeleoperateConfig, [f"--config_path={CONFIG_DIR / name}"])
    assert cfg.fps == 60


def test_record_yaml_is_reusable_for_teleoperate() -> None:
    # The reference accepts a record file's `dataset:` section in teleoperate (teleoperate says
    # on stderr that it does not use it: tests/cli/test_orchestrator.py).
    cfg = parse_config(
        TeleoperateConfig,
        [f"--config_path={CONFIG_DIR / 'record_example_sim.yaml'}", "--teleop_time_s=1"],
    )
    assert cfg.teleop_time_s == 1.0
    assert cfg.dataset


def test_teleoperate_refuses_dataset_flags() -> None:
    """`--dataset.*` typed for teleoperate would be ignored: refused, naming the flag."""
    with pytest.raises(ConfigError, match=r"--dataset\.repo_id: openk teleoperate records"):
        parse_config(
            TeleoperateConfig,
            [
                f"--config_path={CONFIG_DIR / 'teleop_example_sim.yaml'}",
                "--dataset.repo_id=me/ds",
            ],
        )


def test_replay_and_calibrate_configs() -> None:
    cfg = parse_config(
        ReplayConfig,
        [
            "--robot.type=openk-1-alpha_follower",
            "--robot.port=sim",
            "--dataset.repo_id=me/ds",
            "--dataset.episode=0",
        ],
    )
    assert cfg.dataset.episode == 0
    with pytest.raises(ConfigError, match=r"missing --dataset\.episode"):
        parse_config(
            ReplayConfig,
            ["--robot.type=openk-1-alpha_follower", "--robot.port=sim", "--dataset.repo_id=a/b"],
        )
    cal = parse_config(CalibrateConfig, ["--teleop.type=openk-1-sts_leader", "--teleop.port=sim"])
    assert cal.robot is None and cal.teleop is not None
    with pytest.raises(ConfigError, match="either"):
        parse_config(CalibrateConfig, [])


def test_camera_index_is_a_number_and_a_device_path_is_text() -> None:
    base = [*SIM, "--dataset.repo_id=me/ds", "--dataset.single_task=t"]
    by_index = parse_config(
        RecordConfig,
        [*base, "--robot.cameras.front.type=opencv", "--robot.cameras.front.index_or_path=0"],
    )
    assert by_index.robot.cameras["front"].index_or_path == 0
    by_path = parse_config(
        RecordConfig,
        [*base, "--robot.cameras={front: {type: opencv, index_or_path: /dev/video2}}"],
    )
    assert by_path.robot.cameras["front"].index_or_path == "/dev/video2"
