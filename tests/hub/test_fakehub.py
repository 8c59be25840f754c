"""The fake Hub's own contract, checked with the real huggingface_hub client and hf_xet.

If a huggingface_hub or hf_xet upgrade changes the wire contract, these fail first.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import hf_xet
import pytest
from fakehub import READ_TOKEN, WRITE_TOKEN, FakeHub, read_shard_files
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

REPO = "tester/contract"


@pytest.fixture
def api(fake_hub: FakeHub, hub_env: dict[str, str]) -> HfApi:
    return HfApi(endpoint=fake_hub.endpoint, token=WRITE_TOKEN)


def http(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A bare stdlib request (no huggingface_hub logic in between)."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def status_of(exc: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    return int(exc.value.response.status_code)


def test_auth_no_token_401_read_token_403(fake_hub: FakeHub, api: HfApi) -> None:
    anonymous = HfApi(endpoint=fake_hub.endpoint, token=False)
    reader = HfApi(endpoint=fake_hub.endpoint, token=READ_TOKEN)
    assert http(f"{fake_hub.endpoint}/api/whoami-v2")[0] == 401
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError) as read_only:
        reader.create_repo(REPO, repo_type="dataset")
    assert status_of(read_only) == 403
    api.create_repo(REPO, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as read_only_commit:
        reader.upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, repo_type="dataset"
        )
    assert status_of(read_only_commit) == 403
    # Public repos are readable without a token.
    assert anonymous.dataset_info(REPO).id == REPO


def test_private_repo_is_not_found_for_anonymous_callers(fake_hub: FakeHub, api: HfApi) -> None:
    api.create_repo(REPO, repo_type="dataset", private=True)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=fake_hub.endpoint, token=False).dataset_info(REPO)
    assert api.dataset_info(REPO).private is True
    api.update_repo_settings(REPO, repo_type="dataset", private=False)
    assert HfApi(endpoint=fake_hub.endpoint, token=False).dataset_info(REPO).private is False


def test_tree_paths_info_refs_and_entry_errors(
    fake_hub: FakeHub, api: HfApi, dataset_tree: Path
) -> None:
    api.create_repo(REPO, repo_type="dataset")
    wanted = ["meta/info.json", "meta/episodes/chunk-000/file-000.parquet"]
    api.upload_folder(
        repo_id=REPO, repo_type="dataset", folder_path=dataset_tree, allow_patterns=wanted
    )
    files = sorted(api.list_repo_files(REPO, repo_type="dataset"))
    assert files == sorted([".gitattributes", *wanted])
    top = {e.path for e in api.list_repo_tree(REPO, repo_type="dataset")}
    assert top == {".gitattributes", "meta"}
    infos = api.get_paths_info(REPO, ["meta/info.json", "meta", "absent"], repo_type="dataset")
    assert {i.path for i in infos} == {"meta/info.json", "meta"}
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree(REPO, path_in_repo="absent", repo_type="dataset"))
    api.create_branch(REPO, branch="work", repo_type="dataset")
    api.create_tag(REPO, tag="v3.0", repo_type="dataset")
    refs = api.list_repo_refs(REPO, repo_type="dataset")
    assert {b.name for b in refs.branches} == {"main", "work"}
    assert [t.name for t in refs.tags] == ["v3.0"]
    with pytest.raises(HfHubHTTPError) as again:
        api.create_tag(REPO, tag="v3.0", repo_type="dataset")
    assert status_of(again) == 409
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(REPO, tag="v9.9", repo_type="dataset")


def test_stale_parent_commit_is_412(fake_hub: FakeHub, api: HfApi) -> None:
    api.create_repo(REPO, repo_type="dataset")
    first = api.dataset_info(REPO).sha
    add = CommitOperationAdd(path_in_repo="a.txt", path_or_fileobj=b"a")
    api.create_commit(REPO, [add], commit_message="a", repo_type="dataset", parent_commit=first)
    add_b = CommitOperationAdd(path_in_repo="b.txt", path_or_fileobj=b"b")
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(
            REPO, [add_b], commit_message="b", repo_type="dataset", parent_commit=first
        )
    assert status_of(stale) == 412


def test_range_download_and_resolve_headers(fake_hub: FakeHub, api: HfApi) -> None:
    api.create_repo(REPO, repo_type="dataset")
    data = bytes(range(256)) * 40
    api.upload_file(
        path_or_fileobj=data, path_in_repo="blob.bin", repo_id=REPO, repo_type="dataset"
    )
    url = f"{fake_hub.endpoint}/datasets/{REPO}/resolve/main/blob.bin"
    status, headers, body = http(url, "HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(data))
    assert headers["X-Repo-Commit"] == api.dataset_info(REPO).sha
    status, headers, body = http(url, headers={"Range": "bytes=100-199"})
    assert (status, body) == (206, data[100:200])
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    status, headers, _ = http(f"{fake_hub.endpoint}/datasets/{REPO}/resolve/main/nope")
    assert status == 404
    assert headers["X-Error-Code"] == "EntryNotFound"


def test_xet_shards_name_the_sha256_and_hash_hf_xet_computes(
    fake_hub: FakeHub, api: HfApi, hub_env: dict[str, str], tmp_path: Path
) -> None:
    """Contract with hf_xet's local:// CAS; if it breaks, fall back to HF_HUB_DISABLE_XET=1."""
    payload = tmp_path / "payload.parquet"
    payload.write_bytes(hashlib.sha256(b"seed").digest() * 20_000)
    api.create_repo(REPO, repo_type="dataset")
    api.upload_file(
        path_or_fileobj=payload, path_in_repo="p.parquet", repo_id=REPO, repo_type="dataset"
    )
    found = [
        entry
        for shard in fake_hub.cas_dir.rglob("*.mdb")
        for entry in read_shard_files(shard.read_bytes())
    ]
    sha256 = hashlib.sha256(payload.read_bytes()).hexdigest()
    expected = hf_xet.hash_files([str(payload)])[0].hash
    assert (sha256, expected, payload.stat().st_size) in found


def test_unknown_routes_are_logged(fake_hub: FakeHub) -> None:
    assert http(f"{fake_hub.endpoint}/api/not-a-route")[0] == 404
    assert fake_hub.unknown_routes() == [("GET", "/api/not-a-route", 599)]


def test_dropped_xet_token_request_is_retried(
    fake_hub: FakeHub, api: HfApi, dataset_tree: Path
) -> None:
    api.create_repo(REPO, repo_type="dataset")
    fake_hub.add_fault("GET", "/xet-write-token/", "drop", times=1)
    api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=dataset_tree / "data")
    assert fake_hub.faults[0].hits == 1
    assert "chunk-000/file-000.parquet" in api.list_repo_files(REPO, repo_type="dataset")
