"""openk.hub against the loopback fake Hub, driven by the real huggingface_hub client."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from fakehub import READ_TOKEN, FakeHub
from hubdata import DATASET_FILES, snapshot
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from openk.errors import ConfigError, DatasetError, HubError
from openk.hub import (
    HubVisibilityWarning,
    RepoIdError,
    files_to_upload,
    pull_dataset,
    push_dataset,
    validate_repo_id,
)

REPO = "tester/openk_pick"


def pulled_files(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(root).items() if not k.startswith(".cache/")}


def test_files_to_upload_skips_staging_journal_temp_and_lock_files(dataset_tree: Path) -> None:
    assert files_to_upload(dataset_tree) == DATASET_FILES


def test_round_trip_is_byte_identical_and_tagged(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path, transfer: str, tmp_path: Path
) -> None:
    result = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)

    assert result.repo_id == REPO
    assert result.tag == "v3.0"
    assert result.commit_url.endswith(result.commit_oid)
    assert result.url == f"{fake_hub.endpoint}/datasets/{REPO}"
    repo = fake_hub.repo(REPO)
    assert repo.tags["v3.0"] == repo.branches["main"] == result.commit_oid
    remote = set(repo.commits[result.commit_oid].tree)
    assert remote == {*DATASET_FILES, "README.md", ".gitattributes"}

    pulled = pull_dataset(REPO, tmp_path / "pulled", endpoint=fake_hub.endpoint)
    local = snapshot(dataset_tree)
    got = pulled_files(pulled)
    for rel in DATASET_FILES:
        assert got[rel] == local[rel], rel
    assert "images" not in {rel.split("/")[0] for rel in got}

    assert fake_hub.unknown_routes() == []
    uses_lfs = bool(fake_hub.requests("POST", "/info/lfs/objects/batch"))
    uses_xet = bool(fake_hub.requests("GET", "/xet-write-token/"))
    assert (uses_xet, uses_lfs) == ((True, False) if transfer == "xet" else (False, True))


def test_xet_upload_downloads_through_plain_http_too(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    record = fake_hub.repo(REPO).commits[fake_hub.repo(REPO).tags["v3.0"]].tree
    video = "videos/observation.images.front/chunk-000/file-000.mp4"
    assert record[video].xet_hash, "the mp4 should have arrived through Xet"
    # A client without hf_xet gets the bytes over /resolve, rebuilt from the Xet CAS.
    assert fake_hub.file_bytes(REPO, video, "v3.0") == (dataset_tree / video).read_bytes()


def test_dataset_card_has_tags_license_configs_and_summary(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    push_dataset(
        dataset_tree, REPO, endpoint=fake_hub.endpoint, tags=["openk", "pick"], license="mit"
    )
    card = fake_hub.file_bytes(REPO, "README.md", "v3.0").decode()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["tags"] == ["LeRobot", "openk", "pick"]
    assert front["license"] == "mit"
    assert front["configs"] == [{"config_name": "default", "data_files": "data/*/*.parquet"}]
    assert "episodes: 2, frames: 60, fps: 30" in card
    assert "observation.images.front" in card


def test_private_repo_is_private_and_invisible_anonymously(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path, tmp_path: Path
) -> None:
    result = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, private=True)
    assert result.private is True
    assert fake_hub.repo(REPO).private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=fake_hub.endpoint, token=False).dataset_info(REPO)
    # The owner can pull it back.
    pulled = pull_dataset(REPO, tmp_path / "pulled", endpoint=fake_hub.endpoint)
    assert (pulled / "meta/info.json").read_bytes() == (
        dataset_tree / "meta/info.json"
    ).read_bytes()


def test_existing_public_repo_is_not_silently_made_private(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    fake_hub.create_repo_direct(REPO, private=False)
    with pytest.warns(HubVisibilityWarning, match="PUBLIC") as caught:
        result = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, private=True)
    assert result.private is False
    assert fake_hub.repo(REPO).private is False
    assert not fake_hub.requests("PUT", "/settings")

    # The command the warning suggests really makes the repo private.
    suggested = str(caught[0].message).split("`")[1]
    assert suggested.startswith("hf repos settings")
    hf = Path(sys.executable).with_name("hf")
    env = {**os.environ, **hub_env}
    subprocess.run([str(hf), *shlex.split(suggested)[1:]], env=env, check=True, timeout=120)
    assert fake_hub.repo(REPO).private is True


def test_public_push_to_new_repo_gives_no_warning(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", HubVisibilityWarning)
        # tags=None is what the CLI passes when no --tags were given.
        result = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, tags=None)
    assert result.private is False
    card = fake_hub.file_bytes(REPO, "README.md", "v3.0").decode()
    assert yaml.safe_load(card.split("---\n")[1])["tags"] == ["LeRobot"]


def test_repush_moves_the_tag_and_resends_only_changed_files(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path, transfer: str, tmp_path: Path
) -> None:
    first = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    xorbs_before = fake_hub.xorb_count()
    assert (xorbs_before > 0) == (transfer == "xet")
    puts_before = len(fake_hub.requests("PUT", "/_lfs/upload/"))
    # A resumed recording adds a new data file and rewrites info.json.
    new_file = dataset_tree / "data/chunk-000/file-001.parquet"
    new_file.write_bytes(b"\x00new episode" * 1000)
    info = dataset_tree / "meta/info.json"
    info.write_text(info.read_text().replace('"total_episodes": 2', '"total_episodes": 3'))

    second = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)

    repo = fake_hub.repo(REPO)
    assert second.commit_oid != first.commit_oid
    assert repo.tags == {"v3.0": second.commit_oid}
    assert fake_hub.file_bytes(REPO, "meta/info.json", "v3.0") == info.read_bytes()
    if transfer == "lfs":
        assert len(fake_hub.requests("PUT", "/_lfs/upload/")) == puts_before + 1
    else:
        assert fake_hub.xorb_count() <= xorbs_before + 1
    pulled = pull_dataset(REPO, tmp_path / "pulled", endpoint=fake_hub.endpoint)
    assert (pulled / "data/chunk-000/file-001.parquet").read_bytes() == new_file.read_bytes()


def test_pull_without_the_version_tag_names_the_fix(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path, tmp_path: Path
) -> None:
    push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, tag_version=False)
    with pytest.raises(HubError, match=r"v3\.0"):
        pull_dataset(REPO, tmp_path / "pulled", endpoint=fake_hub.endpoint)


@pytest.mark.parametrize(
    "bad",
    [
        "../etc",
        "user/..",
        "user/.",
        "a/b/c",
        "/abs",
        "/abs/x",
        "user/ds.git",
        ".hidden/x",
        "user/a..b",
        "user/a--b",
        "C:x",
        "user\\x",
        "user/ x",
        "user/x\n",
        "ds",
        "u/" + "x" * 97,
        "",
    ],
)
def test_bad_repo_ids_are_rejected_before_any_request(
    bad: str, fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    with pytest.raises(RepoIdError, match="namespace/name") as caught:
        push_dataset(dataset_tree, bad, endpoint=fake_hub.endpoint)
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, HubError)
    with pytest.raises(RepoIdError):
        pull_dataset(bad, endpoint=fake_hub.endpoint)
    assert fake_hub.request_log == []


@pytest.mark.parametrize("good", ["tester/openk_pick", "Org-1/ds.v2", "a/b", "u/" + "x" * 96])
def test_good_repo_ids_pass(good: str) -> None:
    assert validate_repo_id(good) == good


def test_read_only_token_is_refused_with_the_write_hint(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    before = snapshot(dataset_tree)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, token=READ_TOKEN)
    message = str(caught.value)
    assert "read-only" in message
    assert f"openk push {dataset_tree} --repo-id {REPO}" in message
    assert snapshot(dataset_tree) == before
    assert (REPO not in {k[1] for k in fake_hub.repos}) and READ_TOKEN not in message


def test_half_applied_commit_is_refused_with_the_recover_command(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    log = dataset_tree / ".openk" / "commit.json"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text('{"renames": []}')
    with pytest.raises(DatasetError, match=f"openk recover {dataset_tree}"):
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    assert fake_hub.request_log == []


def test_a_folder_without_info_json_is_not_a_dataset(
    fake_hub: FakeHub, hub_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetError, match="not a LeRobot dataset root"):
        push_dataset(tmp_path, REPO, endpoint=fake_hub.endpoint)
    assert fake_hub.request_log == []


def test_pull_into_the_cache_when_no_root_is_given(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    pulled = pull_dataset(REPO, endpoint=fake_hub.endpoint)
    assert pulled.is_relative_to(Path(hub_env["HF_HOME"]))
    info = "meta/info.json"
    assert (pulled / info).read_bytes() == (dataset_tree / info).read_bytes()


def test_pull_of_a_private_repo_without_token_says_not_found(
    fake_hub: FakeHub,
    hub_env: dict[str, str],
    dataset_tree: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, private=True)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="not found"):
        pull_dataset(REPO, tmp_path / "pulled", endpoint=fake_hub.endpoint)
    assert not any((tmp_path / "pulled").rglob("*.parquet"))


@pytest.mark.parametrize("exists", [False, True], ids=["new-repo", "existing-repo"])
def test_fine_grained_token_without_write_gets_the_403_hint(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path, exists: bool
) -> None:
    # whoami cannot tell a fine-grained token's rights: the server's 403 must still be explained.
    fake_hub.read_token_role = "fineGrained"
    if exists:
        fake_hub.create_repo_direct(REPO, private=False)
    before = snapshot(dataset_tree)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, token=READ_TOKEN)
    message = str(caught.value)
    assert "403" in message and "write access" in message, message
    assert message.endswith(f"Retry with: openk push {dataset_tree} --repo-id {REPO}")
    assert snapshot(dataset_tree) == before


def test_push_to_a_branch_tags_the_branch_and_leaves_main(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    result = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, branch="openk-work")
    repo = fake_hub.repo(REPO)
    assert repo.branches["openk-work"] == result.commit_oid == repo.tags["v3.0"]
    assert set(repo.commits[repo.branches["main"]].tree) == {".gitattributes"}
