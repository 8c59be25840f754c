"""lerobot's async inference drives an openk follower: lerobot 0.6.1's `policy_server` on
loopback runs the tiny ACT, its `robot_client` runs the plugin's follower on simulated ports."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..helpers import wait_until
from .lerobot_run import (
    PLUGIN_ROOT,
    REPO_ROOT,
    assert_followed_the_policy,
    lerobot_env,
    summary,
)
from .test_plugin import ROBOT_FLAGS, TRACK_DEG

CAMERA = "--robot.cameras={front: {type: openk_synthetic, width: 64, height: 48, fps: 30}}"
TASK = "follow the scripted leader"
# Action chunks the server must have sent (the client acts on each; at 30 fps and chunks of
# 10 it asks for one about every 5 frames) before the client is stopped: a few seconds.
CHUNKS = 10
# The tiny ACT's goals wander by several degrees over the run (about 14 measured).
GOAL_SPAN_DEG = 2.0
START_S = 120.0
STOP_S = 60.0
EXIT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def process(
    argv: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[str]]:
    """A subprocess writing to `log`, killed on every path out of the block."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=STOP_S)


def test_lerobot_async_inference_drives_the_follower(
    oracle_python: str, plugin_dist: Path, trained_policy: Path, tmp_path: Path
) -> None:
    env = lerobot_env(tmp_path, [REPO_ROOT / "python", PLUGIN_ROOT, plugin_dist])
    port = free_port()
    server_log, client_log = tmp_path / "server.log", tmp_path / "client.log"
    module = "lerobot.async_inference"
    with process(
        [oracle_python, "-m", f"{module}.policy_server", "--host=127.0.0.1", f"--port={port}"],
        tmp_path,
        env,
        server_log,
    ) as server:
        wait_until(
            lambda: server.poll() is not None or listening(port),
            "the policy server listens",
            timeout=START_S,
            details=server_log.read_text,
        )
        assert server.poll() is None, server_log.read_text()[-4000:]
        with process(
            [
                oracle_python,
                "-m",
                f"{module}.robot_client",
                f"--server_address=127.0.0.1:{port}",
                *ROBOT_FLAGS,
                CAMERA,
                "--policy_type=act",
                f"--pretrained_name_or_path={trained_policy}",
                "--policy_device=cpu",
                "--actions_per_chunk=10",
                f"--task={TASK}",
                "--fps=30",
            ],
            tmp_path,
            env,
            client_log,
        ) as client:
            wait_until(
                lambda: (
                    client.poll() is not None
                    or len(re.findall(r"Action chunk #\d+ generated", server_log.read_text()))
                    >= CHUNKS
                ),
                f"the policy server sends {CHUNKS} action chunks",
                timeout=START_S,
                details=lambda: client_log.read_text()[-4000:] + server_log.read_text()[-4000:],
            )
            assert client.poll() is None, client_log.read_text()[-4000:]
            # Ctrl-C: the client stops its loop and disconnects the robot (ramp home, summary).
            client.send_signal(signal.SIGINT)
            # lerobot's client sometimes hangs joining its action receiver after the robot
            # disconnected; the summary is the evidence wanted, the block then kills it.
            wait_until(
                lambda: client.poll() is not None or "openk summary:" in client_log.read_text(),
                "the robot client disconnects the follower",
                timeout=STOP_S,
                details=lambda: client_log.read_text()[-4000:],
            )
            # Let it finish the end ramp and exit; if it hangs, the block kills it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                client.wait(timeout=EXIT_S)
        server.send_signal(signal.SIGINT)
    output = client_log.read_text()
    report = summary(output)
    assert report["type"] == "openk-1-alpha_follower2"
    # Every joint got the policy's goals, which changed from chunk to chunk, and the follower
    # ended among them.
    assert_followed_the_policy(report, GOAL_SPAN_DEG, TRACK_DEG)
