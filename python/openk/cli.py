"""The `openk` command line (click), with lerobot-style dotted flags.

`openk record --robot.type=... --dataset.repo_id=...` works like the reference project's
`openk-record`: click only routes to the subcommand; `config.py` parses the dotted flags and the
`--config_path` YAML so the messages name the exact key and its fix.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from openk.config import (
    CalibrateConfig,
    FindJointLimitsConfig,
    RecordConfig,
    ReplayConfig,
    RolloutConfig,
    TeleoperateConfig,
    config_fields,
    parse_config,
)
from openk.devices import example
from openk.errors import ConfigError, OpenKError

DOTTED = {
    "ignore_unknown_options": True,
    "allow_extra_args": True,
    "help_option_names": ["-h", "--help"],
}


def _debug_enabled(debug: bool = False) -> bool:
    return debug or os.environ.get("OPENK_DEBUG", "").lower() in ("1", "true", "yes")


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr naming the fix, then exit with `code`."""
    click.echo(f"openk: error: {message}", err=True)
    sys.exit(code)


def run_guarded(fn: Callable[[], Any], debug: bool) -> Any:
    """Turn openk errors into one line + exit code; tracebacks only with --debug/OPENK_DEBUG."""
    try:
        return fn()
    except ConfigError as err:
        if _debug_enabled(debug):
            traceback.print_exc()
        fail(str(err), 2)
    except OpenKError as err:
        if _debug_enabled(debug):
            traceback.print_exc()
        fail(str(err), 1)
    except KeyboardInterrupt:
        click.echo("openk: interrupted", err=True)
        sys.exit(130)
    except (SystemExit, click.exceptions.Exit, click.ClickException):
        raise
    except Exception as err:
        if _debug_enabled(debug):
            traceback.print_exc()
        fail(
            f"unexpected {type(err).__name__}: {err} (rerun with --debug for the traceback)",
            1,
        )


def _pop_debug(args: list[str]) -> tuple[list[str], bool]:
    rest = [a for a in args if a not in ("--debug", "--debug=true")]
    return rest, len(rest) != len(args)


def _options_epilog(cls: type, examples: Sequence[str]) -> str:
    lines = ["\b", "Examples:"]
    lines.extend(f"  {ex}" for ex in examples)
    lines += ["", "\b", "Options (dotted, as lerobot spells them; --key=value):"]
    for name, tp, text in config_fields(cls):
        if text:
            lines.append(f"  --{name:<34} {text} [{tp}]")
    lines += [
        "",
        "\b",
        "Also: --config_path=FILE.yaml (file values, overridden by flags), --debug.",
        "Values are YAML: true/false, numbers, [a, b], {key: value}.",
    ]
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="openk", message="openk %(version)s")
def main() -> None:
    """openk: drive OpenK robot arms and record LeRobot v3.0 datasets.

    Every command runs on simulated motors with --robot.port=sim / --teleop.port=sim.
    """


# Example device types, picked from the core's catalogue by what the example shows: a follower
# with a second (STS) port, a DAMIAO leader, an all-STS leader.
_FOLLOWER = example("robot", needs_sts_port=True)
_DAMIAO_LEADER = example("teleop", compliant=True)
_STS_LEADER = example("teleop", compliant=False, needs_sts_port=False, sts_link="ttl")

RECORD_EXAMPLES = [
    "openk record --config_path=config/record_sim.yaml",
    f"openk record --robot.type={_FOLLOWER} --robot.port=/dev/ttyACM1 \\",
    "    --robot.sts_port=/dev/ttyUSB0 --robot.id=follower \\",
    f"    --teleop.type={_DAMIAO_LEADER} --teleop.port=/dev/ttyACM0 --teleop.id=leader \\",
    "    --dataset.repo_id=<user>/<dataset> --dataset.num_episodes=2 \\",
    '    --dataset.single_task="Describe task" --log_file=logs/openk_record.log',
    "openk record --config_path=config/record_example.yaml \\",
    "    --dataset.repo_id=<user>/<dataset> --resume=true",
]


def _record_impl(args: Sequence[str]) -> None:
    argv, debug = _pop_debug(list(args))

    def go() -> None:
        cfg = parse_config(RecordConfig, argv)
        from openk.commands.record import record

        record(cfg, debug=_debug_enabled(debug))

    run_guarded(go, debug)


@main.command(
    "record",
    context_settings=DOTTED,
    epilog=_options_epilog(RecordConfig, RECORD_EXAMPLES),
)
@click.pass_context
def record_cmd(ctx: click.Context) -> None:
    """Record teleoperated (or, with --policy.path, policy-driven) episodes into a LeRobot
    v3.0 dataset.

    While recording: → ends the episode early, ← re-records it, Esc stops; Ctrl-C stops and
    keeps every finished episode.
    """
    _record_impl(ctx.args)


ROLLOUT_EXAMPLES = [
    f"openk rollout --robot.type={_FOLLOWER} --robot.port=/dev/ttyACM1 \\",
    "    --robot.sts_port=/dev/ttyUSB0 --robot.id=follower \\",
    "    --robot.cameras='{front: {type: opencv, index_or_path: 0}}' \\",
    "    --policy.path=outputs/train/act/checkpoints/last/pretrained_model --duration=60",
    "openk rollout ... --strategy.type=episodic --dataset.repo_id=<user>/rollout_<name> \\",
    '    --task="Describe task" --dataset.num_episodes=5',
]


@main.command(
    "rollout",
    context_settings=DOTTED,
    epilog=_options_epilog(RolloutConfig, ROLLOUT_EXAMPLES),
)
@click.pass_context
def rollout_cmd(ctx: click.Context) -> None:
    """Run a trained lerobot policy on the arm (needs pip install 'openk[policy]').

    --strategy.type=base runs it for --duration seconds without recording; episodic records
    episodes (→ ends one early, ← re-records, Esc stops). Ctrl-C stops; the arm holds.
    """
    argv, debug = _pop_debug(list(ctx.args))

    def go() -> None:
        cfg = parse_config(RolloutConfig, argv)
        from openk.commands.rollout import rollout

        rollout(cfg, debug=_debug_enabled(debug))

    run_guarded(go, debug)


@main.command(
    "teleoperate",
    context_settings=DOTTED,
    epilog=_options_epilog(
        TeleoperateConfig,
        [
            "openk teleoperate --config_path=config/teleop_example.yaml",
            f"openk teleoperate --teleop.type={_STS_LEADER} --teleop.port=sim \\",
            f"    --robot.type={_FOLLOWER} --robot.port=sim --teleop_time_s=10",
        ],
    ),
)
@click.pass_context
def teleoperate_cmd(ctx: click.Context) -> None:
    """Drive the follower from the leader without recording (Ctrl-C or Esc stops)."""
    argv, debug = _pop_debug(list(ctx.args))

    def go() -> None:
        cfg = parse_config(TeleoperateConfig, argv)
        from openk.commands.teleoperate import teleoperate

        teleoperate(cfg, debug=_debug_enabled(debug))

    run_guarded(go, debug)


@main.command(
    "find-joint-limits",
    context_settings=DOTTED,
    epilog=_options_epilog(
        FindJointLimitsConfig,
        [
            f"openk find-joint-limits --teleop.type={_STS_LEADER} --teleop.port=sim \\",
            f"    --robot.type={_FOLLOWER} --robot.port=sim --teleop_time_s=20",
        ],
    ),
)
@click.pass_context
def find_joint_limits_cmd(ctx: click.Context) -> None:
    """Teleoperate and print each joint's lowest and highest position reached (for
    max_relative_target and soft limits). Esc or Ctrl-C stops early."""
    argv, debug = _pop_debug(list(ctx.args))

    def go() -> None:
        cfg = parse_config(FindJointLimitsConfig, argv)
        from openk.commands.find_joint_limits import find_joint_limits

        find_joint_limits(cfg, debug=_debug_enabled(debug))

    run_guarded(go, debug)


@main.command(
    "replay",
    context_settings=DOTTED,
    epilog=_options_epilog(
        ReplayConfig,
        [
            f"openk replay --robot.type={_FOLLOWER} --robot.port=sim \\",
            "    --dataset.repo_id=<user>/<dataset> --dataset.root=outputs/datasets/x \\",
            "    --dataset.episode=0",
        ],
    ),
)
@click.pass_context
def replay_cmd(ctx: click.Context) -> None:
    """Send an episode's recorded actions to the follower at the dataset's fps."""
    argv, debug = _pop_debug(list(ctx.args))

    def go() -> None:
        cfg = parse_config(ReplayConfig, argv)
        from openk.commands.replay import replay

        replay(cfg, debug=_debug_enabled(debug))

    run_guarded(go, debug)


@main.command(
    "calibrate",
    context_settings=DOTTED,
    epilog=_options_epilog(
        CalibrateConfig,
        [
            f"openk calibrate --robot.type={_FOLLOWER} --robot.port=/dev/ttyACM1 \\",
            "    --robot.sts_port=/dev/ttyUSB0 --robot.id=follower",
            f"openk calibrate --teleop.type={_STS_LEADER} --teleop.port=sim --scripted=true",
        ],
    ),
)
@click.pass_context
def calibrate_cmd(ctx: click.Context) -> None:
    """Calibrate one robot or teleoperator: move to the middle, sweep every joint, Enter."""
    argv, debug = _pop_debug(list(ctx.args))

    def go() -> None:
        cfg = parse_config(CalibrateConfig, argv)
        from openk.commands.calibrate import calibrate

        calibrate(cfg, debug=_debug_enabled(debug))

    run_guarded(go, debug)


@main.command("find-port")
@click.option("--list", "list_only", is_flag=True, help="Only list the serial ports.")
@click.option(
    "--glob",
    "patterns",
    multiple=True,
    hidden=True,
    help="Port path patterns (default: the serial devices of this OS).",
)
def find_port_cmd(list_only: bool, patterns: tuple[str, ...]) -> None:
    """Find the port of a motor adapter: list ports, unplug it, press Enter, see which vanished.

    \b
    Examples:
      openk find-port           # the unplug-and-replug flow
      openk find-port --list    # just list the serial ports
    """
    import openk.tools as tools

    run_guarded(lambda: tools.find_port(list_only=list_only, patterns=patterns or None), False)


@main.command("scan")
@click.argument("port")
@click.option("--baud", default=1_000_000, show_default=True, help="Baud rate to scan at.")
@click.option("--all-bauds", is_flag=True, help="Scan at every STS3215 baud rate in turn.")
@click.option(
    "--damiao", is_flag=True, help="PORT is a DAMIAO USB-CAN adapter: list its motors' ids."
)
def scan_cmd(port: str, baud: int, all_bauds: bool, damiao: bool) -> None:
    """List the motors that answer on PORT (`sim`: a simulated bus).

    Feetech (STS) servos answer a broadcast PING; with --damiao, each ESC_ID 1-16 is asked for
    its state (nothing moves) and the MST_ID it answers from is shown.

    \b
    Examples:
      openk scan /dev/ttyUSB0               # STS servo ids that answer at 1 Mbaud
      openk scan /dev/ttyUSB0 --all-bauds   # a servo set to another baud rate
      openk scan /dev/ttyACM0 --damiao      # DAMIAO motors behind the USB-CAN adapter
    """
    import openk.tools as tools

    if damiao:
        run_guarded(lambda: tools.scan_damiao(port), False)
    else:
        run_guarded(lambda: tools.scan(port, baud=baud, all_bauds=all_bauds), False)


@main.command("find-cameras")
@click.option("--max-index", default=10, show_default=True, help="OpenCV indices to probe.")
def find_cameras_cmd(max_index: int) -> None:
    """List cameras openk can open (V4L2 devices, OpenCV indices) and the synthetic camera.

    \b
    Example:
      openk find-cameras
    """
    import openk.tools as tools

    run_guarded(lambda: tools.find_cameras(max_index=max_index), False)


@main.command("info")
def info_cmd() -> None:
    """Print versions, platform and realtime capability (for bug reports and tuning).

    \b
    Example:
      openk info
    """
    import openk.tools as tools

    run_guarded(tools.info, False)


def _dataset_location(target: str, root: str | None) -> tuple[str | None, Path]:
    """(repo id if known, local folder) of a `ROOT_OR_REPO` argument."""
    from openk.config import dataset_root, validate_repo_id

    if root:
        return validate_repo_id(target, "ROOT_OR_REPO"), Path(root)
    path = Path(target)
    if not path.exists():
        from openk.dataset.edit import finish_interrupted_edit

        did = finish_interrupted_edit(path)  # a crash mid-swap leaves the folder renamed
        if did:
            click.echo(did)
    if path.exists():
        return None, path
    try:
        validate_repo_id(target, "ROOT_OR_REPO")
    except ConfigError:
        raise ConfigError(
            f"{target!r} is neither an existing dataset folder nor a repo id <hf_user>/<name>; "
            "pass the folder that holds the dataset (meta/, data/, videos/)"
        ) from None
    return target, dataset_root(target, None)


@main.command("verify")
@click.argument("root_or_repo")
@click.option("--root", default=None, help="Local folder when the argument is a repo id.")
@click.option("--debug", is_flag=True, hidden=True)
def verify_cmd(root_or_repo: str, root: str | None, debug: bool) -> None:
    """Check a dataset's consistency and print what is wrong, in plain words.

    \b
    Examples:
      openk verify outputs/datasets/openk_sim
      openk verify <user>/<dataset>       # under $HF_LEROBOT_HOME
    """

    def go() -> None:
        import openk.tools as tools

        _, path = _dataset_location(root_or_repo, root)
        tools.verify(path)

    run_guarded(go, debug)


@main.command("push")
@click.argument("root_or_repo")
@click.option("--repo-id", "--repo_id", "repo_id", default=None, help="Hub repo id to push to.")
@click.option("--root", default=None, help="Local folder when the argument is a repo id.")
@click.option("--private", is_flag=True, help="Create the Hub repo as private.")
@click.option("--tags", multiple=True, help="Tags for the dataset card (repeatable).")
@click.option("--debug", is_flag=True, hidden=True)
def push_cmd(
    root_or_repo: str,
    repo_id: str | None,
    root: str | None,
    private: bool,
    tags: tuple[str, ...],
    debug: bool,
) -> None:
    """Push a local dataset to the Hugging Face Hub (token from HF_TOKEN or `hf auth login`).

    \b
    Examples:
      openk push <user>/<dataset>
      openk push outputs/datasets/openk_sim --repo-id=<user>/openk_sim --private
    """

    def go() -> None:
        import openk.tools as tools

        found_repo, path = _dataset_location(root_or_repo, root)
        target = repo_id or found_repo
        if target is None:
            raise ConfigError(
                f"{root_or_repo} is a folder; add --repo-id=<hf_user>/<dataset_name> to push it"
            )
        tools.push(path, target, private=private, tags=list(tags) or None)

    run_guarded(go, debug)


@main.command("recover")
@click.argument("root_or_repo")
@click.option("--root", default=None, help="Local folder when the argument is a repo id.")
@click.option("--discard", is_flag=True, help="Drop the interrupted episode instead of keeping it.")
@click.option("--debug", is_flag=True, hidden=True)
def recover_cmd(root_or_repo: str, root: str | None, discard: bool, debug: bool) -> None:
    """Turn an episode interrupted by a crash (its journal) into a saved episode, or drop it.

    \b
    Examples:
      openk recover outputs/datasets/openk_sim
      openk recover <user>/<dataset> --discard
    """

    def go() -> None:
        import openk.tools as tools

        repo_id, path = _dataset_location(root_or_repo, root)
        tools.recover(path, repo_id=repo_id, discard=discard)

    run_guarded(go, debug)


def _dataset_path(target: str) -> Path:
    return _dataset_location(target, None)[1]


_OUTPUT_HELP = "Write the result as a new dataset here (default: edit in place, atomically)."


@main.group("edit", context_settings={"help_option_names": ["-h", "--help"]})
def edit_group() -> None:
    """Delete, trim, split, retask or merge episodes without re-encoding video.

    DATASET is a dataset folder or a repo id under $HF_LEROBOT_HOME. Without --output the
    dataset is changed in place: the result is built beside it, verified, then swapped in by
    rename (a crash leaves the old or the new dataset). --dry-run prints what would change.

    \b
    Examples:
      openk edit delete outputs/datasets/pick --episodes 3,7
      openk edit trim outputs/datasets/pick --episode 2 --start 1.5 --end 9
      openk edit trim outputs/datasets/pick --idle --dry-run
      openk edit split outputs/datasets/pick --episodes 0-4 --output outputs/datasets/pick_val
      openk edit retask outputs/datasets/pick --episodes 5 --task "place the cube"
      openk edit merge outputs/datasets/arm1 outputs/datasets/arm2 --output outputs/datasets/all
    """


def _out(output: str | None) -> Path | None:
    return Path(output) if output else None


@edit_group.command("delete")
@click.argument("dataset")
@click.option("--episodes", required=True, help="Episodes to delete: 3,7 or 2-5.")
@click.option("--output", default=None, help=_OUTPUT_HELP)
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--debug", is_flag=True, hidden=True)
def edit_delete_cmd(
    dataset: str, episodes: str, output: str | None, dry_run: bool, debug: bool
) -> None:
    """Delete episodes (the rest are renumbered from 0)."""
    from openk.commands import edit

    run_guarded(
        lambda: edit.delete(_dataset_path(dataset), episodes, output=_out(output), dry_run=dry_run),
        debug,
    )


@edit_group.command("trim")
@click.argument("dataset")
@click.option("--episode", type=int, default=None, help="The episode to trim.")
@click.option("--start", type=float, default=None, help="Keep from this time (seconds).")
@click.option("--end", type=float, default=None, help="Keep up to this time (seconds).")
@click.option(
    "--idle", is_flag=True, help="Drop idle frames at the start and end of every episode."
)
@click.option(
    "--idle-threshold",
    type=float,
    default=None,
    help="With --idle: a frame is idle while every action joint stays within this of the "
    "first/last frame (default: 1%% of the widest joint range; printed).",
)
@click.option("--output", default=None, help=_OUTPUT_HELP)
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--debug", is_flag=True, hidden=True)
def edit_trim_cmd(
    dataset: str,
    episode: int | None,
    start: float | None,
    end: float | None,
    idle: bool,
    idle_threshold: float | None,
    output: str | None,
    dry_run: bool,
    debug: bool,
) -> None:
    """Cut frames at the start/end of an episode (or idle frames of every episode)."""
    from openk.commands import edit

    run_guarded(
        lambda: edit.trim(
            _dataset_path(dataset),
            episode=episode,
            start=start,
            end=end,
            idle=idle,
            idle_threshold=idle_threshold,
            output=_out(output),
            dry_run=dry_run,
        ),
        debug,
    )


@edit_group.command("split")
@click.argument("dataset")
@click.option("--episodes", required=True, help="Episodes that move to the new dataset.")
@click.option("--output", required=True, help="The new dataset's folder.")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--debug", is_flag=True, hidden=True)
def edit_split_cmd(dataset: str, episodes: str, output: str, dry_run: bool, debug: bool) -> None:
    """Move episodes out of DATASET into a new dataset at --output."""
    from openk.commands import edit

    run_guarded(
        lambda: edit.split(_dataset_path(dataset), episodes, Path(output), dry_run=dry_run),
        debug,
    )


@edit_group.command("retask")
@click.argument("dataset")
@click.option("--episodes", required=True, help="Episodes to relabel: 3,7 or 2-5.")
@click.option("--task", required=True, help="The new task text.")
@click.option("--output", default=None, help=_OUTPUT_HELP)
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--debug", is_flag=True, hidden=True)
def edit_retask_cmd(
    dataset: str, episodes: str, task: str, output: str | None, dry_run: bool, debug: bool
) -> None:
    """Give episodes a new task text."""
    from openk.commands import edit

    run_guarded(
        lambda: edit.retask(
            _dataset_path(dataset), episodes, task, output=_out(output), dry_run=dry_run
        ),
        debug,
    )


@edit_group.command("merge")
@click.argument("datasets", nargs=-1, required=True)
@click.option("--output", default=None, help="The merged dataset's folder.")
@click.option(
    "--repo-id",
    "--repo_id",
    "repo_id",
    default=None,
    help="Write the merged dataset to $HF_LEROBOT_HOME/<repo id> (instead of --output).",
)
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--debug", is_flag=True, hidden=True)
def edit_merge_cmd(
    datasets: tuple[str, ...], output: str | None, repo_id: str | None, dry_run: bool, debug: bool
) -> None:
    """Merge datasets of the same fps, robot type and features into a new one."""
    from openk.commands import edit

    def go() -> None:
        from openk.config import dataset_root, validate_repo_id

        if (output is None) == (repo_id is None):
            raise ConfigError("merge writes a new dataset: give --output DIR or --repo-id ID")
        target = (
            Path(output)
            if output is not None
            else dataset_root(validate_repo_id(str(repo_id), "--repo-id"), None)
        )
        edit.merge([_dataset_path(d) for d in datasets], target, dry_run=dry_run)

    run_guarded(go, debug)


@main.command("view")
@click.argument("dataset")
@click.option("--port", default=8765, show_default=True, help="Port to serve on.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (another than loopback exposes the dataset to the network).",
)
@click.option("--no-browser", is_flag=True, help="Do not open a browser window.")
@click.option("--debug", is_flag=True, hidden=True)
def view_cmd(dataset: str, port: int, host: str, no_browser: bool, debug: bool) -> None:
    """Review a dataset in the browser: episodes, quality flags, synced videos and plots.

    DATASET is a folder, or a repo id (local under $HF_LEROBOT_HOME, else downloaded there from
    the Hub). Marked episodes give the exact `openk edit delete` command, runnable from the page
    after a confirmation.

    \b
    Examples:
      openk view outputs/datasets/openk_sim
      openk view <user>/<dataset> --port 8080 --no-browser
    """
    from openk.commands.view import view

    def go() -> None:
        path = Path(dataset)
        if not path.exists():
            from openk.dataset.layout import default_root
            from openk.dataset.reader import open_dataset

            # $HF_LEROBOT_HOME/<repo_id>, else downloaded there from the Hub (as lerobot does):
            # plain files the page can serve and edit, not links into the Hub's cache
            path = open_dataset(dataset, root=default_root(dataset)).root
        view(path, host=host, port=port, open_browser=not no_browser)

    run_guarded(go, debug)


def record_alias() -> None:
    """`openk-record ...`: the reference project's script name for `openk record ...`."""
    ctx_args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in ctx_args):
        with click.Context(record_cmd, info_name="openk-record") as ctx:
            click.echo(record_cmd.get_help(ctx))
        return
    _record_impl(ctx_args)
    sys.exit(0)


if __name__ == "__main__":
    main()
