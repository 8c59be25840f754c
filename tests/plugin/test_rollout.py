"""lerobot-rollout drives an openk follower through the plugin: lerobot 0.6.1 feeds a policy the
robot's `.pos` / `.vel` state only, so the policy is trained on an openk recording made with
`--robot.state_channels=[pos,vel]` and the plugin's follower observes the same channels."""

from __future__ import annotations

from pathlib import Path

from .lerobot_run import RunLerobot, assert_followed_the_policy, summary
from .test_plugin import CAMERA, ROBOT, ROBOT_FLAGS, TRACK_DEG

TASK = "follow the scripted leader"
ROLLOUT_S = 4
# The tiny ACT's goals wander by several degrees over a few seconds; the follower goes along.
GOAL_SPAN_DEG = 2.0
MOVED_DEG = 2.0


def rollout(run_lerobot: RunLerobot, policy: Path, *flags: str) -> tuple[int, str]:
    proc = run_lerobot(
        "rollout",
        "--strategy.type=base",
        f"--policy.path={policy}",
        "--policy.device=cpu",
        *ROBOT_FLAGS,
        CAMERA,
        *flags,
        f"--task={TASK}",
        "--fps=30",
        f"--duration={ROLLOUT_S}",
        # Keep the pose the policy reached: the summary then shows where it took the arm.
        "--return_to_initial_position=false",
        "--play_sounds=false",
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_lerobot_rollout_runs_a_policy_on_the_follower(
    run_lerobot: RunLerobot, trained_policy_pos_vel: Path
) -> None:
    code, output = rollout(run_lerobot, trained_policy_pos_vel, "--robot.state_channels=[pos,vel]")
    assert code == 0, output[-6000:]
    assert "Duration limit reached" in output, output[-4000:]
    report = summary(output)
    assert report["type"] == ROBOT
    # The policy's goals changed over the run, the follower ended among them and had moved
    # from where it started.
    last = assert_followed_the_policy(report, GOAL_SPAN_DEG, TRACK_DEG)
    first = report["first_state"]
    assert isinstance(first, dict) and set(first) == set(last) and len(last) == 7, report
    assert max(abs(last[n] - first[n]) for n in last) > MOVED_DEG, (first, last)


def test_a_policy_trained_with_torque_fails_under_lerobot_rollout_with_a_hint(
    run_lerobot: RunLerobot, trained_policy: Path
) -> None:
    # lerobot-rollout keeps the `.pos` / `.vel` state (12 values) of a follower observing every
    # channel; a policy trained on all 17 cannot take it. lerobot's own error is a tensor
    # size mismatch; the plugin says why, and what to do, before it.
    code, output = rollout(run_lerobot, trained_policy)
    assert code != 0
    assert "must match the size of tensor b (17)" in output, output[-4000:]
    assert "observes torque (.tor), which lerobot-rollout does not give the policy" in output
    assert "--robot.state_channels='[pos,vel]'" in output
