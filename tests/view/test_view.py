"""`openk view`: the server (files, traversal, origin check) and the page in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dataset"))

from ds_synth import features, record_episode

from openk.dataset import DatasetWriter, verify
from openk.dataset.images import decode_png
from openk.dataset.reader import open_dataset

from ..helpers import wait_until

FPS = 30
CAMS = {"front": (48, 64), "wrist": (48, 64)}
LENGTHS = [24, 18, 21]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("OPENK_TEST_ARTIFACTS", REPO / "outputs" / "test-artifacts"))


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("view") / "master"
    writer = DatasetWriter.create("openk/test", FPS, features(CAMS), root=root)
    with writer:
        for i, n in enumerate(LENGTHS):
            record_episode(writer, n, FPS, CAMS, task=f"task {i % 2}")
            writer.save_episode(
                {
                    "openk_loop": {
                        "target_hz": 200.0,
                        "achieved_hz": 150.0 if i == 1 else 199.9,
                        "ticks": 1000,
                        "overruns": 0,
                        "lateness_p99_ns": 80_000,
                    }
                }
            )
    return root


IMAGE_LENGTHS = [12, 9]


@pytest.fixture(scope="module")
def image_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset recorded with video off: the cameras are PNG bytes in the parquet."""
    root = tmp_path_factory.mktemp("view-images") / "master"
    writer = DatasetWriter.create("openk/test", FPS, features(CAMS, video=False), root=root)
    with writer:
        for n in IMAGE_LENGTHS:
            record_episode(writer, n, FPS, CAMS, task="pick")
            writer.save_episode()
    info = json.loads((root / "meta" / "info.json").read_text())
    assert {info["features"][f"observation.images.{c}"]["dtype"] for c in CAMS} == {"image"}
    assert not (root / "videos").exists()
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    import uvicorn

    from openk.viewer import make_app

    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(make_app(root), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_until(lambda: srv.started, "the view server started", interval=0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def image_server(image_master: Path) -> Iterator[str]:
    with serve(image_master) as base:
        yield base


@pytest.fixture
def server(master: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "ds"
    shutil.copytree(master, root)
    (tmp_path / "secret.txt").write_text("not for the browser")
    with serve(root) as base:
        yield base, root


def _get(url: str, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _post(url: str, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_serves_only_the_dataset_files(server: tuple[str, Path]) -> None:
    base, _ = server
    status, body = _get(base + "/files/videos/observation.images.front/chunk-000/file-000.mp4")
    assert status == 200 and body[4:8] == b"ftyp"
    status, _ = _get(
        base + "/files/videos/observation.images.front/chunk-000/file-000.mp4", Range="bytes=0-99"
    )
    assert status == 206  # the browser seeks videos with range requests
    for attempt in (
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/..%2fsecret.txt",
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
        "/files/meta/../../secret.txt",
        "/files/meta",
    ):
        status, body = _get(base + attempt)
        assert status == 404, attempt
        assert b"not for the browser" not in body and b"root:" not in body
    status, body = _get(base + "/static/plotly.min.js")
    assert status == 200 and b"plotly" in body[:2000].lower()
    info = json.loads(_get(base + "/api/dataset")[1])
    assert [e["length"] for e in info["episodes"]] == LENGTHS
    assert [f["flag"] for f in info["episodes"][1]["flags"]] == ["loop rate"]
    assert "loop rate" in info["thresholds"]


def test_image_camera_frames_are_served_from_the_parquet(
    image_server: str, image_master: Path
) -> None:
    base = image_server
    info = json.loads(_get(base + "/api/dataset")[1])
    assert info["cameras"] == [f"observation.images.{c}" for c in CAMS]
    ep = json.loads(_get(base + "/api/episode/1")[1])
    assert ep["videos"] == {}
    assert set(ep["images"]) == set(info["cameras"])
    assert len(ep["series"]["action"]["values"]) == 7
    reader = open_dataset(image_master)
    for key, image in ep["images"].items():
        stored = reader.camera_frames(1, key)
        assert len(stored) == IMAGE_LENGTHS[1]
        for i in (0, 5, IMAGE_LENGTHS[1] - 1):
            req = urllib.request.Request(base + image["url"] + str(i))
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.headers["content-type"] == "image/png"
                got = decode_png(r.read())
            assert np.array_equal(got, stored[i]), (key, i)
        assert not np.array_equal(stored[0], stored[5])  # the index picks a distinct frame
    url = ep["images"]["observation.images.front"]["url"]
    for path, status, says in (
        ("/api/episode/1/image/observation.images.side/0", 404, "not an image camera"),
        ("/api/episode/1/image/action/0", 404, "not an image camera"),
        (url + str(IMAGE_LENGTHS[1]), 404, "frames 0..8"),
        (url + "10", 404, "not in episode 1"),  # a frame of episode 0, not of episode 1
        (url + "-1", 404, "frame -1"),
        (url + "x", 400, "must be numbers"),
        ("/api/episode/2/image/observation.images.front/0", 404, "episode 2 does not exist"),
    ):
        got_status, body = _get(base + path)
        assert got_status == status, path
        assert says in json.loads(body)["error"], (path, body)


def test_delete_needs_same_origin_and_confirmation(server: tuple[str, Path]) -> None:
    base, root = server
    body = {"episodes": [1], "confirm": True}
    assert _post(base + "/api/delete", body, Origin="http://evil.example")[0] == 403
    assert _post(base + "/api/delete", body)[0] == 403  # no Origin at all
    status, out = _post(base + "/api/delete", body, Origin=base, Host="evil.example")
    assert status == 403
    assert _post(base + "/api/delete", {"episodes": [1]}, Origin=base)[0] == 400
    assert open_dataset(root).total_episodes == 3
    status, out = _post(base + "/api/delete", body, Origin=base)
    assert status == 200, out
    assert open_dataset(root).total_episodes == 2
    assert verify(root).ok


def _chrome() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1500,1000",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-dev-shm-usage",
    ):
        opts.add_argument(arg)
    driver_path = shutil.which("chromedriver")
    assert driver_path, "chromedriver is missing: run scripts/bootstrap.sh --test"
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def _wait(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as err:  # the page may still be loading
            last = err
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def test_page_in_headless_chromium(server: tuple[str, Path]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    base, root = server
    driver = _chrome()
    try:
        driver.get(base + "/")
        _wait("the page", lambda: driver.execute_script("return document.body.dataset.ready"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#episodes tbody tr")
        assert len(rows) == 3
        assert "loop rate: 150.0 Hz of 200" in rows[1].text
        # both cameras load and decode (AV1)
        _wait(
            "videos ready",
            lambda: driver.execute_script(
                "return [...document.querySelectorAll('#videos video')]"
                ".every(v => v.readyState >= 2) && document.querySelectorAll('#videos video')"
                ".length === 2"
            ),
        )
        # seek to a time: video and plot cursor follow
        driver.execute_script("openkView.seek(0.4)")
        _wait(
            "video at 0.4 s",
            lambda: abs(driver.execute_script("return openkView.videoTime()") - 0.4) < 0.02,
        )
        assert abs(driver.execute_script("return openkView.cursorOnPlot()") - 0.4) < 0.02
        # play: the cursor follows the playing video
        driver.execute_script("openkView.seek(0)")
        driver.find_element(By.ID, "play").click()
        _wait("playback", lambda: driver.execute_script("return openkView.videoTime()") > 0.3)
        _wait(
            "cursor following",
            lambda: (
                abs(
                    driver.execute_script("return openkView.cursorOnPlot() - openkView.videoTime()")
                )
                < 0.1
                and driver.execute_script("return openkView.cursorOnPlot()") > 0.3
            ),
        )
        driver.execute_script("document.querySelectorAll('#videos video').forEach(v => v.pause())")
        # a click on the plot seeks the video
        driver.execute_script("openkView.seek(0)")
        plot = driver.find_element(By.CSS_SELECTOR, ".plot .nsewdrag")
        ActionChains(driver).move_to_element_with_offset(
            plot, plot.size["width"] // 4, 0
        ).click().perform()
        _wait("seek by click", lambda: driver.execute_script("return openkView.videoTime()") > 0.1)
        # open episode 2, mark episode 1 and read the exact command
        driver.find_element(By.CSS_SELECTOR, "#ep-row-2 a").click()
        _wait("episode 2", lambda: "Episode 2" in driver.find_element(By.ID, "episode-title").text)
        driver.find_element(By.ID, "mark-1").click()
        want = f"openk edit delete {root.resolve()} --episodes 1"
        _wait("command", lambda: driver.find_element(By.ID, "command").text == want)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "openk_view.png"))
        # run it, after the explicit confirmation
        driver.find_element(By.ID, "run-delete").click()
        assert open_dataset(root).total_episodes == 3  # nothing before confirming
        driver.find_element(By.ID, "confirm-delete").click()
        _wait(
            "the edit",
            lambda: "2 episode(s)" in driver.find_element(By.ID, "delete-output").text,
            timeout=120,
        )
        _wait(
            "reloaded list",
            lambda: len(driver.find_elements(By.CSS_SELECTOR, "#episodes tbody tr")) == 2,
        )
    finally:
        driver.quit()
    assert open_dataset(root).total_episodes == 2
    assert verify(root).ok


def test_cli_serves_until_stopped(master: Path) -> None:
    import signal
    import subprocess

    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openk.cli",
            "view",
            str(master),
            "--port",
            str(port),
            "--no-browser",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "python")},
    )
    try:
        status = _wait(
            "the server",
            lambda: (
                _get(f"http://127.0.0.1:{port}/api/dataset")[0] if proc.poll() is None else "exited"
            ),
            timeout=60,
        )
        assert status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert f"at http://127.0.0.1:{port}/" in out, err


def test_lerobot_dataset_is_reviewable(tmp_path: Path) -> None:
    root = tmp_path / "ref"
    shutil.copytree(REPO / "tests" / "data" / "dataset" / "lerobot_reference", root)
    with serve(root) as base:
        info = json.loads(_get(base + "/api/dataset")[1])
        assert [e["length"] for e in info["episodes"]] == [60, 60]
        ep = json.loads(_get(base + "/api/episode/1")[1])
        assert ep["telemetry"] is None  # lerobot records none
        assert len(ep["series"]["action"]["values"]) == 7
        video = ep["videos"]["observation.images.cam_main"]
        assert (video["from"], video["to"]) == (2.0, 4.0)
        assert _get(base + video["url"])[0] == 200
        assert _get(base + "/api/episode/2")[0] == 404


# The pixels an image camera's <img> shows, read back through a canvas (PNG is lossless).
IMG_PIXELS = """
const img = [...document.querySelectorAll('#videos img')].find(i => i.dataset.key === arguments[0]);
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const ctx = c.getContext('2d');
ctx.drawImage(img, 0, 0);
const d = ctx.getImageData(0, 0, c.width, c.height).data;
const rgb = [];
for (let k = 0; k < d.length; k += 4) rgb.push(d[k], d[k + 1], d[k + 2]);
return [c.height, c.width, rgb];
"""


def test_image_cameras_follow_the_cursor_in_headless_chromium(
    image_server: str, image_master: Path
) -> None:
    from selenium.webdriver.common.by import By

    base = image_server
    reader = open_dataset(image_master)
    key = "observation.images.wrist"
    stored = reader.camera_frames(0, key)
    driver = _chrome()

    def shown(k: str = key) -> Any:
        return driver.execute_script("return openkView.imageFrame(arguments[0])", k)

    def pixels() -> np.ndarray:
        h, w, rgb = driver.execute_script(IMG_PIXELS, key)
        return np.array(rgb, dtype=np.uint8).reshape(h, w, 3)

    try:
        driver.get(base + "/")
        _wait("the page", lambda: driver.execute_script("return document.body.dataset.ready"))
        assert driver.execute_script("return document.querySelectorAll('#videos img').length") == 2
        wait_until(lambda: shown() == 0, "the first frame is shown")
        assert np.array_equal(pixels(), stored[0])
        # the cursor moves: every image camera swaps to the frame at that time
        driver.execute_script("openkView.seek(0.2)")
        wait_until(lambda: shown() == 6, "frame 6 (0.2 s at 30 fps) is shown")
        wait_until(lambda: shown("observation.images.front") == 6, "the other camera follows")
        assert np.array_equal(pixels(), stored[6])
        assert abs(driver.execute_script("return openkView.cursorOnPlot()") - 0.2) < 1e-6
        # play without videos: the page clock moves the cursor to the last frame, then stops
        driver.find_element(By.ID, "play").click()
        wait_until(lambda: not driver.execute_script("return openkView.playing()"), "playback ends")
        last = IMAGE_LENGTHS[0] - 1
        wait_until(lambda: shown() == last, "the last frame is shown")
        assert np.array_equal(pixels(), stored[last])
        assert abs(driver.execute_script("return openkView.cursor()") - last / FPS) < 1e-6
        # another episode shows its own frames
        driver.find_element(By.CSS_SELECTOR, "#ep-row-1 a").click()
        wait_until(
            lambda: "Episode 1" in driver.find_element(By.ID, "episode-title").text, "episode 1"
        )
        wait_until(lambda: shown() == 0, "episode 1's first frame is shown")
        assert driver.find_element(By.ID, "clock").text == "0.000 s"
        assert np.array_equal(pixels(), reader.camera_frames(1, key)[0])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "openk_view_images.png"))
    finally:
        driver.quit()
