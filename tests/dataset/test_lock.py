"""One writer per dataset (`layout.lock_dataset`): a second process is refused with the first
one's pid; the lock of a process killed with SIGKILL blocks nobody; readers take no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from openk.dataset import DatasetWriter, layout
from openk.errors import DatasetBusyError

REPO = Path(__file__).resolve().parents[2]

_HOLDER = """
import sys, time
from pathlib import Path
from openk.dataset import layout
layout.lock_dataset(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(600)
"""


def _hold_in_other_process(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "python")},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_until_the_holder_is_killed(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    holder = _hold_in_other_process(root)
    try:
        with pytest.raises(DatasetBusyError, match=rf"process {holder.pid}\b.*wait for it"):
            layout.lock_dataset(root)
        with pytest.raises(DatasetBusyError, match=str(holder.pid)):
            DatasetWriter.create("openk/test", 30, {}, root=root)
        assert not root.exists()  # nothing touched
        assert layout.dataset_writer(root) == f"process {holder.pid} (-c {root})"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    # killed -9: its lock file is left, holding its pid, but the OS dropped the lock
    assert str(holder.pid) in layout.lock_path(root).read_text()
    assert layout.dataset_writer(root) is None
    with layout.lock_dataset(root):
        assert layout.lock_path(root).read_text().startswith(f"{os.getpid()}\n")
    assert not layout.lock_path(root).exists()  # released: no file left beside the dataset


def test_one_process_may_nest_its_lock(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with layout.lock_dataset(root), layout.lock_dataset(root):
        assert layout.dataset_writer(root) is None  # its own lock is not another writer
        assert layout.lock_path(root).exists()
    assert not layout.lock_path(root).exists()


def test_lock_is_keyed_by_the_real_path_beside_the_root(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert layout.lock_path(tmp_path / "link") == tmp_path / ".real.openk-lock"
    holder = _hold_in_other_process(tmp_path / "real")
    try:
        with pytest.raises(DatasetBusyError, match=str(holder.pid)):
            layout.lock_dataset(tmp_path / "link")
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert layout.dataset_writer(tmp_path / "real") is None
