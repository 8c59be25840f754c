"""A command's way out runs every step even when one is interrupted: a second Ctrl-C while a
camera stops must not skip the arm's return home nor the writer's close (that loses the
recording). Fakes only: no loop, no clock."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

import openk.commands.record as rec
import openk.policy.run as policy_run
from openk.commands.rollout import rollout
from openk.config import RolloutConfig, parse_config
from openk.session import Events, quietly, teardown
from openk.terminal import Key, StatusLine

from .fakes import RecordingWriter, ScriptedSession
from .test_orchestrator import _cfg


def test_teardown_runs_every_step_then_reraises_the_first_interruption() -> None:
    ran: list[str] = []

    def step(name: str, exc: BaseException | None = None) -> Any:
        def run() -> None:
            ran.append(name)
            if exc is not None:
                raise exc

        return run

    first = KeyboardInterrupt("first")
    with pytest.raises(KeyboardInterrupt) as caught:
        teardown(
            step("keys", RuntimeError("a failing step")),
            quietly(step("camera", first)),  # `quietly` drops errors, never interruptions
            None,  # no such step (no writer yet)
            step("home", SystemExit(2)),
            quietly(step("camera 2", OSError("unplugged"))),
            step("writer"),
        )
    assert caught.value is first
    assert ran == ["keys", "camera", "home", "camera 2", "writer"]

    # no interruption: the first error of a step not run quietly, after every step ran
    ran.clear()
    with pytest.raises(RuntimeError, match="keys"):
        teardown(step("a", RuntimeError("keys")), step("b", ValueError("later")), step("c"))
    assert ran == ["a", "b", "c"]
    ran.clear()
    teardown(quietly(step("a", OSError("gone"))), step("b"))
    assert ran == ["a", "b"]


class _CtrlCWhileStopping:
    """A camera whose stop is cut by a (second) Ctrl-C."""

    stopped = 0

    def start(self, on_frame: Any) -> None:
        pass

    def stop(self) -> None:
        type(self).stopped += 1
        raise KeyboardInterrupt

    error: str | None = None


def test_ctrl_c_while_a_camera_stops_still_returns_home_and_keeps_the_episodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(
        tmp_path,
        "--dataset.num_episodes=5",
        "--robot.cameras={front: {type: synthetic, width: 8, height: 8},"
        " wrist: {type: synthetic, width: 8, height: 8}}",
    )
    events = Events()
    # episode 1 ends by key; the first Ctrl-C comes 6 rows into episode 2
    session = ScriptedSession(
        on_key=events.on_key, keys={(1, 6): Key.RIGHT, (2, 6): KeyboardInterrupt}
    )
    writer = RecordingWriter()
    monkeypatch.setattr(rec, "_open_writer", lambda *args: writer)
    _CtrlCWhileStopping.stopped = 0
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        rec.record(
            cfg,
            session_factory=lambda c: session,
            camera_factory=lambda name, cam: _CtrlCWhileStopping(),
            ui=StatusLine(out, tty=False, plain_interval_s=0),
            events=events,
        )
    assert _CtrlCWhileStopping.stopped == 2  # the second camera stopped too
    assert session.closed, "the arm was not sent home"
    assert writer.closed, "the writer was not closed"
    assert [len(ep) for ep in writer.saved] == [6, 6]
    assert "interrupted: kept episode 1" in out.getvalue()


class _PolicySession(ScriptedSession):
    policy_error: BaseException | None = None

    def bind_events(self, events: Events) -> None:
        pass

    def policy_stats(self) -> dict[str, Any]:
        return {}


def test_ctrl_c_while_a_rollout_camera_stops_still_returns_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _PolicySession(keys={(1, 3): KeyboardInterrupt})  # the first Ctrl-C

    class Setup:
        def stats(self) -> dict[str, Any]:
            return {}

    monkeypatch.setattr(policy_run, "prepare_policy", lambda *a, **k: Setup())
    monkeypatch.setattr(policy_run, "policy_session_factory", lambda *a, **k: lambda c: session)
    monkeypatch.setattr(
        policy_run, "policy_camera_factory", lambda setup: lambda n, c: _CtrlCWhileStopping()
    )
    cfg = parse_config(
        RolloutConfig,
        [
            "--robot.type=openk-1-alpha_follower",
            "--robot.port=sim",
            "--robot.cameras={front: {type: synthetic, width: 8, height: 8}}",
            "--policy.path=unused",
            "--duration=0",
            f"--log_file={tmp_path / 'rollout.log'}",
        ],
    )
    _CtrlCWhileStopping.stopped = 0
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        rollout(cfg, ui=StatusLine(out, tty=False, plain_interval_s=0))
    assert _CtrlCWhileStopping.stopped == 1
    assert session.log[-1] == "end 1", session.log  # the episode was ended
    assert session.closed, "the arm was not sent home"
    assert "stopped (Ctrl-C)" in out.getvalue()
