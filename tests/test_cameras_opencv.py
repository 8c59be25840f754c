"""The OpenCV camera without a webcam: a video file whose frames show their own number stands
in for the camera (OpenCV's FFMPEG backend), so order, shape, colour order, rotation, capture
stamps and the errors a user meets are checked on real decoded frames."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from openk.cameras import CaptureThread, OpenCVCamera, read_synthetic_number, synthetic_frame
from openk.errors import ConfigError, PortError

from .helpers import wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT, FRAMES = 160, 120, 24
# Background colour of synthetic_frame(tint=0), in RGB.
BACKGROUND_RGB = (64, 96, 160)


def write_numbered_video(path: Path, frames: int, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """An h264 mp4 (lossless: crf 0, no chroma subsampling) whose frame n shows the number n."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.options = {"crf": "0"}
        for n in range(frames):
            image = av.VideoFrame.from_ndarray(synthetic_frame(n, height, width), format="rgb24")
            out.mux(stream.encode(image))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_numbered_video(tmp_path_factory.mktemp("opencv") / "numbers.mp4", FRAMES)


def first_frame(source: Path, **kwargs: object) -> np.ndarray:
    camera = OpenCVCamera("front", source, **kwargs)  # type: ignore[arg-type]
    camera.connect()
    try:
        return camera.read()[0]
    finally:
        camera.disconnect()


def test_a_video_file_plays_in_order_then_ends_with_a_clear_error(video: Path) -> None:
    camera = OpenCVCamera("front", str(video), width=WIDTH, height=HEIGHT, fps=120)
    camera.connect()
    try:
        frames, stamps = zip(*(camera.read() for _ in range(FRAMES)), strict=True)
        with pytest.raises(PortError) as ended:
            camera.read()
    finally:
        camera.disconnect()
    assert all(f.shape == (HEIGHT, WIDTH, 3) and f.dtype == np.uint8 for f in frames)
    assert [read_synthetic_number(f) for f in frames] == list(range(FRAMES))
    assert all(a < b for a, b in itertools.pairwise(stamps)), stamps
    message = str(ended.value)
    assert str(video) in message and f"ended after {FRAMES} frames" in message, message
    assert "longer video" in message, message


def test_color_mode_rgb_and_bgr_give_the_channels_in_that_order(video: Path) -> None:
    rgb = first_frame(video, width=WIDTH, height=HEIGHT, color_mode="rgb")
    bgr = first_frame(video, width=WIDTH, height=HEIGHT, color_mode="bgr")
    corner = rgb[2, 2].astype(int)
    assert np.abs(corner - BACKGROUND_RGB).max() <= 3, corner
    assert np.array_equal(bgr, rgb[..., ::-1])


@pytest.mark.parametrize(("rotation", "turns"), [(90, -1), (180, 2), (-90, 1)])
def test_rotation_turns_the_frame_like_lerobot(video: Path, rotation: int, turns: int) -> None:
    plain = first_frame(video, width=WIDTH, height=HEIGHT)
    # As in lerobot, width/height are the size after rotation: 90 and -90 swap them.
    width, height = (HEIGHT, WIDTH) if rotation in (90, -90) else (WIDTH, HEIGHT)
    turned = first_frame(video, width=width, height=height, rotation=rotation)
    assert turned.shape == (height, width, 3)
    assert np.array_equal(turned, np.rot90(plain, turns))  # np.rot90: k > 0 is anticlockwise


def test_warmup_drops_the_first_frames(video: Path) -> None:
    frame = first_frame(video, width=WIDTH, height=HEIGHT, fps=120, warmup_s=0.01)
    assert read_synthetic_number(frame) >= 1


def test_capture_thread_feeds_every_frame_with_increasing_monotonic_stamps(video: Path) -> None:
    got: list[tuple[str, int, int]] = []
    lock = threading.Lock()

    def sink(key: str, frame: np.ndarray, stamp: int) -> None:
        with lock:
            got.append((key, read_synthetic_number(frame), stamp))

    camera = OpenCVCamera("wrist", video, width=WIDTH, height=HEIGHT, fps=120)
    before = time.monotonic_ns()
    thread = CaptureThread(camera, sink).start()
    wait_until(lambda: thread.error is not None, "the capture thread reached the file's end")
    thread.stop()
    after = time.monotonic_ns()
    assert isinstance(thread.error, PortError), thread.error  # the file ended
    assert thread.frames == FRAMES
    assert [key for key, _, _ in got] == ["wrist"] * FRAMES
    assert [number for _, number, _ in got] == list(range(FRAMES))
    stamps = [stamp for _, _, stamp in got]
    assert before < stamps[0] and stamps[-1] < after
    assert all(a < b for a, b in itertools.pairwise(stamps)), stamps


def test_a_missing_device_names_it_and_how_to_find_cameras(
    capfd: pytest.CaptureFixture[str],
) -> None:
    camera = OpenCVCamera("front", "/dev/video99")
    with pytest.raises(PortError) as err:
        camera.connect()
    message = str(err.value)
    assert "'front'" in message and "/dev/video99" in message, message
    assert "openk find-cameras" in message, message
    # OpenCV's own warnings do not pile up on the user's terminal next to that message.
    assert "WARN" not in capfd.readouterr().err


def test_a_missing_video_file_names_it_and_what_to_set(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_video.mp4"
    with pytest.raises(PortError) as err:
        OpenCVCamera("front", missing).connect()
    message = str(err.value)
    assert str(missing) in message and "no such video file" in message, message
    assert "index_or_path" in message, message


def test_a_size_mismatch_says_which_width_and_height_to_set(video: Path) -> None:
    with pytest.raises(ConfigError) as err:
        OpenCVCamera("front", video, width=320, height=240).connect()
    message = str(err.value)
    assert f"delivers {WIDTH}x{HEIGHT}, not 320x240" in message, message
    assert f"set width: {WIDTH}, height: {HEIGHT}" in message, message
    # Rotated by 90 the frames come out turned, so the size to set is turned too.
    with pytest.raises(ConfigError) as turned:
        OpenCVCamera("front", video, width=WIDTH, height=HEIGHT, rotation=90).connect()
    assert f"set width: {HEIGHT}, height: {WIDTH}" in str(turned.value), turned.value


@pytest.mark.parametrize(
    ("option", "expected"),
    [({"color_mode": "gray"}, "rgb or bgr"), ({"rotation": 45}, "0, 90, 180, -90")],
)
def test_unsupported_color_mode_or_rotation_lists_the_valid_values(
    video: Path, option: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        OpenCVCamera("front", video, **option)  # type: ignore[arg-type]
    assert "'front'" in str(err.value) and expected in str(err.value), err.value


def run_record(tmp_path: Path, camera: str) -> subprocess.CompletedProcess[str]:
    """`openk record` on simulated arms with one camera, this tree's sources first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT / "python"), env.get("PYTHONPATH", "")) if p
    )
    args = [
        "record",
        "--robot.type=openk-1-alpha_follower",
        "--robot.port=sim",
        "--teleop.type=openk_leader",
        "--teleop.port=sim",
        f"--robot.cameras={{front: {camera}}}",
        f"--robot.calibration_dir={tmp_path / 'calibration'}",
        f"--teleop.calibration_dir={tmp_path / 'calibration'}",
        "--dataset.repo_id=tester/opencv_file",
        "--dataset.single_task=Watch the numbers",
        f"--dataset.root={tmp_path / 'ds'}",
        "--dataset.num_episodes=1",
        "--dataset.episode_time_s=2",
        "--dataset.push_to_hub=false",
        "--vcodec=h264",
        "--realtime=off",
    ]
    return subprocess.run(
        [sys.executable, "-m", "openk.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
        check=False,
    )


def test_openk_record_with_an_opencv_camera_on_a_video_file(tmp_path: Path) -> None:
    from openk.dataset.reader import DatasetReader

    # 20 s of video at 30 fps: more than the 2 s episode can use, however slow the machine.
    source = write_numbered_video(tmp_path / "front.mp4", 600)
    camera = f"{{type: opencv, index_or_path: {source}, width: {WIDTH}, height: {HEIGHT}}}"
    proc = run_record(tmp_path, camera)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    reader = DatasetReader(tmp_path / "ds")
    assert reader.camera_keys() == ["observation.images.front"]
    (episode,) = reader.list_episodes()
    frames = reader.camera_frames(0, "front")
    assert frames.shape == (episode["length"], HEIGHT, WIDTH, 3) and episode["length"] > 0
    numbers = [read_synthetic_number(f) for f in frames]
    # The file's frames, in the order it plays; the default 1 s warm-up dropped its start.
    assert numbers == sorted(numbers) and numbers[0] >= 1 and numbers[-1] > numbers[0], numbers


def test_openk_record_with_a_missing_video_file_fails_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "gone.mp4"
    camera = f"{{type: opencv, index_or_path: {missing}, width: {WIDTH}, height: {HEIGHT}}}"
    proc = run_record(tmp_path, camera)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(missing) in lines[0] and "index_or_path" in lines[0], lines[0]
