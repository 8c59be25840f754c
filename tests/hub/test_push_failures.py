"""A push that fails keeps the dataset intact, says so, and prints the exact retry command."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from fakehub import WRITE_TOKEN, FakeHub
from hubdata import snapshot

from openk.errors import HubError
from openk.hub import push_dataset

REPO = "tester/openk_pick"


def assert_reported(error: HubError, root: Path, *, private: bool = False) -> str:
    message = str(error)
    retry = f"openk push {root} --repo-id {REPO}" + (" --private" if private else "")
    assert message.endswith(f"Retry with: {retry}"), message
    assert f"The local dataset at {root} is intact" in message
    assert WRITE_TOKEN not in message
    return message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_token_fails_before_any_request(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    before = snapshot(dataset_tree)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    message = assert_reported(caught.value, dataset_tree)
    assert "HF_TOKEN" in message and "hf auth login" in message
    assert fake_hub.request_log == []
    assert snapshot(dataset_tree) == before


def test_wrong_token_is_rejected_with_a_login_hint(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, token="hf_wrong_token_1234")
    message = assert_reported(caught.value, dataset_tree)
    assert "401" in message and "hf auth login" in message
    assert "hf_wrong_token_1234" not in message
    assert fake_hub.repos == {}


def test_network_failure_keeps_the_dataset(hub_env: dict[str, str], dataset_tree: Path) -> None:
    before = snapshot(dataset_tree)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=f"http://127.0.0.1:{free_port()}")
    message = assert_reported(caught.value, dataset_tree)
    assert "network error" in message
    assert snapshot(dataset_tree) == before


def test_dropped_connection_is_a_network_failure(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    fake_hub.add_fault("POST", "/api/repos/create", "drop", times=-1)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    assert "network error" in assert_reported(caught.value, dataset_tree)


def test_server_error_names_the_5xx_and_the_retry_then_retry_succeeds(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    before = snapshot(dataset_tree)
    fake_hub.add_fault("POST", "/api/repos/create", 500, times=-1)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, private=True)
    message = assert_reported(caught.value, dataset_tree, private=True)
    assert "server error (500)" in message
    assert snapshot(dataset_tree) == before

    fake_hub.clear_faults()
    result = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, private=True)
    assert fake_hub.repo(REPO).tags == {"v3.0": result.commit_oid}


def test_commit_503_without_xet_fails_cleanly_and_rerun_resumes(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # Without hf_xet the commit POST is not retried by huggingface_hub: the failure reaches us.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    fake_hub.add_fault("POST", "/commit/main", 503, times=1)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    assert "server error (503)" in assert_reported(caught.value, dataset_tree)
    assert fake_hub.repo(REPO).tags == {}
    puts = len(fake_hub.requests("PUT", "/_lfs/upload/"))
    assert puts == 4  # three parquet files and one mp4

    result = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    # The LFS objects that reached the Hub before the failure are not sent again.
    assert len(fake_hub.requests("PUT", "/_lfs/upload/")) == puts
    assert fake_hub.repo(REPO).tags == {"v3.0": result.commit_oid}


def test_transient_commit_503_with_xet_is_retried_by_the_client(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    fake_hub.add_fault("POST", "/commit/main", 503, times=1)
    result = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    assert fake_hub.faults[0].hits == 1
    assert fake_hub.repo(REPO).tags == {"v3.0": result.commit_oid}


def test_tag_failure_after_upload_reports_and_rerun_tags(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    fake_hub.add_fault("POST", "/tag/", 502, times=1)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    assert "tagging v3.0" in assert_reported(caught.value, dataset_tree)
    assert fake_hub.repo(REPO).tags == {}
    result = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    assert fake_hub.repo(REPO).tags == {"v3.0": result.commit_oid}


def test_token_never_appears_in_output_logs_or_files(
    fake_hub: FakeHub,
    hub_env: dict[str, str],
    dataset_tree: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openk", "huggingface_hub", "httpx2", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint, private=True)
    fake_hub.add_fault("POST", "/api/repos/create", 500, times=-1)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, "tester/other", endpoint=fake_hub.endpoint)
    out, err = capfd.readouterr()
    assert caplog.records, "debug logging should have captured something"
    texts = [out, err, caplog.text, str(caught.value), repr(caught.value)]
    texts += [str(caught.value.__cause__)]
    for text in texts:
        assert WRITE_TOKEN not in text
    token = WRITE_TOKEN.encode()
    written = [dataset_tree, fake_hub.root, Path(hub_env["HF_HOME"])]
    for folder in written:
        for path in folder.rglob("*"):
            if path.is_file():
                assert token not in path.read_bytes(), path


def test_permanent_commit_500_with_xet_fails_after_client_retries(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub.utils import _http

    # The client backs off about 23 s in total; record the waits instead of sleeping them.
    waits: list[float] = []
    monkeypatch.setattr(_http.time, "sleep", waits.append)
    before = snapshot(dataset_tree)
    fake_hub.add_fault("POST", "/commit/main", 500, times=-1)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    assert "uploading the dataset files: the Hub had a server error (500)" in assert_reported(
        caught.value, dataset_tree
    )
    assert fake_hub.faults[0].hits == 6
    assert sum(waits) >= 20
    assert snapshot(dataset_tree) == before


def test_a_file_lost_by_the_hub_is_detected_and_the_tag_not_moved(
    fake_hub: FakeHub, hub_env: dict[str, str], dataset_tree: Path
) -> None:
    lost = "videos/observation.images.front/chunk-000/file-000.mp4"
    fake_hub.lose_on_commit.add(lost)
    with pytest.raises(HubError) as caught:
        push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    message = assert_reported(caught.value, dataset_tree)
    assert f"missing or has the wrong size for {lost}" in message
    assert fake_hub.repo(REPO).tags == {}

    fake_hub.lose_on_commit.clear()
    result = push_dataset(dataset_tree, REPO, endpoint=fake_hub.endpoint)
    assert fake_hub.repo(REPO).tags == {"v3.0": result.commit_oid}
    assert fake_hub.file_bytes(REPO, lost, "v3.0") == (dataset_tree / lost).read_bytes()
