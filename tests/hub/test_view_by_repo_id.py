"""`openk view <repo_id>`: a dataset on the Hub (here the fake Hub) or under $HF_LEROBOT_HOME is
reviewable by repo id alone, videos included."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fakehub import FakeHub
from hubdata import LENGTHS, write_openk_dataset

from openk.hub import push_dataset

from ..helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
REPO_ID = "tester/openk_made"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:  # not listening yet
        return 0, b""


@contextmanager
def view(repo_id: str, env: dict[str, str]) -> Iterator[str]:
    """`openk view <repo_id>` in a child process; yields its URL once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    args = ["view", repo_id, "--port", str(port), "--no-browser"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "openk.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": str(REPO / "python")},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is not None or _get(base + "/api/dataset")[0] == 200,
            "openk view answers",
            interval=0.1,
        )
        assert proc.poll() is None, proc.communicate(timeout=30)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def _assert_reviewable(base: str) -> None:
    info = json.loads(_get(base + "/api/dataset")[1])
    assert [e["length"] for e in info["episodes"]] == list(LENGTHS)
    ep = json.loads(_get(base + "/api/episode/1")[1])
    assert ep["series"]["action"]["values"][1] == list(range(LENGTHS[1]))
    status, body = _get(base + ep["videos"]["observation.images.front"]["url"])
    assert status == 200 and body[4:8] == b"ftyp"


def test_view_downloads_a_hub_dataset_by_repo_id(
    fake_hub: FakeHub, hub_env: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "openk_made"
    write_openk_dataset(root)
    push_dataset(root, REPO_ID, endpoint=fake_hub.endpoint)
    home = tmp_path / "lerobot_home"
    with view(REPO_ID, {**hub_env, "HF_LEROBOT_HOME": str(home)}) as base:
        _assert_reviewable(base)
    assert fake_hub.unknown_routes() == []
    # downloaded as plain files into the lerobot home, where the next run finds it
    video = home / REPO_ID / "videos/observation.images.front/chunk-000/file-000.mp4"
    assert video.is_file() and not video.is_symlink()


def test_view_finds_a_repo_id_under_the_lerobot_home(
    fake_hub: FakeHub, hub_env: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "lerobot_home"
    write_openk_dataset(home / REPO_ID)  # not on the Hub: only the local copy can answer
    with view(REPO_ID, {**hub_env, "HF_LEROBOT_HOME": str(home)}) as base:
        _assert_reviewable(base)
    assert fake_hub.request_log == []
