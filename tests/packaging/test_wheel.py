"""The published artifact: `maturin build` makes one abi3 wheel that installs and imports in a
fresh venv, with the stub and py.typed marker inside."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_abi3_wheel_installs_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "maturin", "build", "--release", "--out", str(dist)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    wheels = list(dist.glob("openk-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    # One wheel for every CPython >= 3.10 on this platform.
    assert "-cp310-abi3-" in wheel.name, wheel.name

    names = zipfile.ZipFile(wheel).namelist()
    assert "openk/py.typed" in names
    for stub in ("__init__", "feetech", "damiao"):
        assert f"openk/_core/{stub}.pyi" in names, names
    assert any(n.startswith("openk/_core.") and n.endswith(".so") for n in names), names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", str(wheel)], check=True, capture_output=True
    )
    probe = (
        "import openk, openk._core as c, time;"
        "a = time.monotonic_ns(); n = openk.now_ns(); b = time.monotonic_ns();"
        "assert a <= n <= b, (a, n, b);"
        "assert issubclass(openk.ProtocolError, openk.OpenKError);"
        "from openk._core.feetech import FeetechBus; from openk._core.damiao import DamiaoBus;"
        "assert FeetechBus.__module__ == 'openk._core.feetech', FeetechBus.__module__;"
        "print(c.__version__)"
    )
    out = subprocess.run(
        [str(py), "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.stdout.strip() == _cargo_version()
    # Console scripts are installed and run.
    help_out = subprocess.run(
        [str(env_dir / "bin" / "openk"), "--help"], check=True, capture_output=True, text=True
    )
    assert "record" in help_out.stdout


def _cargo_version() -> str:
    for line in (REPO_ROOT / "Cargo.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no workspace version in Cargo.toml")
