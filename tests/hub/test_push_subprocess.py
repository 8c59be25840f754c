"""The faithful setup: a fresh process configured only by HF_* environment variables.

huggingface_hub reads HF_ENDPOINT and HF_HUB_DISABLE_XET when it is imported, so these runs
prove openk.hub works with no endpoint argument, as `openk push` will call it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakehub import WRITE_TOKEN, FakeHub
from hubdata import DATASET_FILES, snapshot

REPO = "tester/openk_pick"
PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"

PUSH = """
import json, sys
from openk.hub import push_dataset
result = push_dataset(sys.argv[1], sys.argv[2], private=True)
print(json.dumps({"commit": result.commit_oid, "tag": result.tag, "private": result.private}))
"""

PULL = """
import json, sys
from openk.hub import pull_dataset
print(json.dumps({"root": str(pull_dataset(sys.argv[1], sys.argv[2]))}))
"""


def run(code: str, env: dict[str, str], *args: str) -> tuple[dict[str, object], str]:
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))},
        **env,
        "PYTHONPATH": str(PYTHON_DIR),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return json.loads(proc.stdout.strip().splitlines()[-1]), output


@pytest.mark.parametrize("push_xet", [True, False], ids=["push-xet", "push-lfs"])
@pytest.mark.parametrize("pull_xet", [True, False], ids=["pull-xet", "pull-http"])
def test_push_and_pull_configured_by_environment_only(
    fake_hub: FakeHub,
    hub_env: dict[str, str],
    dataset_tree: Path,
    tmp_path: Path,
    push_xet: bool,
    pull_xet: bool,
) -> None:
    push_env = {**hub_env, "HF_HOME": str(tmp_path / "push_home")}
    if not push_xet:
        push_env["HF_HUB_DISABLE_XET"] = "1"
    pushed, push_output = run(PUSH, push_env, str(dataset_tree), REPO)
    assert pushed["tag"] == "v3.0" and pushed["private"] is True
    assert fake_hub.repo(REPO).tags == {"v3.0": pushed["commit"]}

    pull_env = {**hub_env, "HF_HOME": str(tmp_path / "pull_home")}
    if not pull_xet:
        pull_env["HF_HUB_DISABLE_XET"] = "1"
    pulled, pull_output = run(PULL, pull_env, REPO, str(tmp_path / "pulled"))
    got = snapshot(Path(str(pulled["root"])))
    local = snapshot(dataset_tree)
    for rel in DATASET_FILES:
        assert got[rel] == local[rel], rel

    # Only a Xet upload read by a Xet client skips /resolve; without hf_xet the fake Hub
    # rebuilds Xet-stored files and serves plain bytes.
    resolved = {path.rsplit("/", 1)[-1] for _, path, _ in fake_hub.requests("GET", "/resolve/")}
    assert ("file-000.mp4" in resolved) == (not (push_xet and pull_xet))
    assert fake_hub.unknown_routes() == []
    assert WRITE_TOKEN not in push_output + pull_output


def test_standalone_fake_hub_takes_a_push_from_another_process(
    dataset_tree: Path, tmp_path: Path
) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("fakehub.py")),
            "--root",
            str(tmp_path / "s"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        exports = server.stdout.readline().split()[1:]
        env = dict(item.split("=", 1) for item in exports)
        env["HF_HOME"] = str(tmp_path / "home")
        assert env["HF_ENDPOINT"].startswith("http://127.0.0.1:")
        pushed, _ = run(PUSH, env, str(dataset_tree), REPO)
        assert pushed["tag"] == "v3.0"
        pulled, _ = run(PULL, env, REPO, str(tmp_path / "pulled"))
        info = "meta/info.json"
        assert (Path(str(pulled["root"])) / info).read_bytes() == (dataset_tree / info).read_bytes()
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
