"""The small commands: find-port, find-cameras, info, and the dataset wrappers (verify, push,
recover). Kept out of cli.py so they can be called (and tested) without click.
"""

from __future__ import annotations

import glob
import importlib
import importlib.metadata
import os
import platform
import re
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from openk.errors import BusTimeoutError, DatasetError, OpenKError

# --- find-port --------------------------------------------------------------------------------


def default_port_patterns() -> list[str]:
    if sys.platform == "darwin":
        return ["/dev/cu.*", "/dev/tty.usb*"]
    return ["/dev/ttyUSB*", "/dev/ttyACM*", "/dev/ttyAMA*", "/dev/ttyS*", "/dev/ttyTHS*"]


def list_ports(patterns: Sequence[str] | None = None) -> list[str]:
    """Serial device paths present now (sorted)."""
    found: set[str] = set()
    for pattern in patterns or default_port_patterns():
        found.update(glob.glob(pattern))
    return sorted(found)


def _describe(port: str) -> str:
    """USB vendor/product of a tty when sysfs knows it (helps tell adapters apart)."""
    name = Path(port).name
    device = Path("/sys/class/tty") / name / "device"
    for up in (device, device / "..", device / "../.."):
        product = up / "product"
        if product.is_file():
            try:
                return product.read_text().strip()
            except OSError:
                return ""
    return ""


def find_port(
    *,
    list_only: bool = False,
    patterns: Sequence[str] | None = None,
    echo: Callable[[str], None] = click.echo,
    wait_enter: Callable[[], str] = input,
) -> str | None:
    before = list_ports(patterns)
    if list_only:
        if not before:
            echo("no serial ports found")
        for port in before:
            desc = _describe(port)
            echo(f"{port}  {desc}" if desc else port)
        return None
    echo("Ports before disconnecting: " + (", ".join(before) or "(none)"))
    echo("Remove the USB cable from your motor adapter and press Enter when done.")
    try:
        wait_enter()
    except EOFError:
        raise OpenKError(
            "find-port needs you to press Enter after unplugging; run it in a terminal, "
            "or use `openk find-port --list`"
        ) from None
    time.sleep(0.5)  # the kernel removes the device node shortly after the unplug
    after = list_ports(patterns)
    gone = sorted(set(before) - set(after))
    if len(gone) == 1:
        echo(f"The port of this adapter is '{gone[0]}'")
        echo("Reconnect the USB cable.")
        return gone[0]
    if not gone:
        raise OpenKError(
            "no port disappeared; unplug the adapter's USB cable (not its power) and run "
            "`openk find-port` again"
        )
    raise OpenKError(
        f"more than one port disappeared ({', '.join(gone)}); unplug only one adapter and retry"
    )


# --- find-cameras -----------------------------------------------------------------------------


# Baud rates an STS3215 can be set to (register 6), fastest first.
STS_BAUDS = (1_000_000, 500_000, 250_000, 128_000, 115_200, 76_800, 57_600, 38_400)


def scan(
    port: str,
    *,
    baud: int = 1_000_000,
    all_bauds: bool = False,
    echo: Callable[[str], None] = click.echo,
) -> dict[int, list[int]]:
    """Broadcast-PING a Feetech (STS/SCS) bus: the servo ids that answer, per baud rate.

    `port="sim"` scans a simulated 7-servo leader bus. The simulator answers at any baud, so
    `all_bauds` only means something on real hardware."""
    from openk._core import feetech

    sim = feetech.FeetechSim(ids=list(range(1, 8))) if port == "sim" else None
    target = sim.port if sim is not None else port
    found: dict[int, list[int]] = {}
    for rate in STS_BAUDS if all_bauds else (baud,):
        with feetech.FeetechBus(target, {}, baudrate=rate) as bus:
            found[rate] = bus.scan()
        ids = ", ".join(str(i) for i in found[rate]) or "no servo answered"
        echo(f"{port} at {rate} baud: {ids}")
    if not any(found.values()):
        tried = "every STS baud rate" if all_bauds else f"{baud} baud"
        more = "" if all_bauds else "; try --all-bauds if the servos were set to another rate"
        raise BusTimeoutError(
            f"no servo answered on {port} at {tried}: check the servos' power supply and the "
            f"adapter's cable and TX/RX wiring{more}"
        )
    return found


def scan_damiao(
    port: str, *, last_esc_id: int = 16, echo: Callable[[str], None] = click.echo
) -> list[tuple[int, int, str]]:
    """Ask ESC_IDs 1..last_esc_id on a DAMIAO USB-CAN adapter for their state (nothing moves):
    which motors answer and the MST_ID each answers from. `port="sim"`: the simulated arm."""
    from openk._core import damiao

    sim = damiao.DamiaoSim() if port == "sim" else None
    target = sim.port if sim is not None else port
    found = damiao.scan(target, 1, last_esc_id)
    for esc_id, mst_id, state in found:
        echo(f"{port}: ESC_ID 0x{esc_id:02x} answers from MST_ID 0x{mst_id:02x} ({state})")
    if not found:
        raise BusTimeoutError(
            f"no DAMIAO motor answered on {port} (ESC_ID 1-{last_esc_id}): check the motors' "
            "power, the CAN wiring (CANH/CANL) and its 120 ohm termination, and that this is "
            "the USB-CAN adapter's port (`openk find-port`)"
        )
    return found


def find_cameras(*, max_index: int = 10, echo: Callable[[str], None] = click.echo) -> list[str]:
    found: list[str] = []
    for dev in sorted(glob.glob("/dev/video*")):
        line = f"opencv  index_or_path: {dev}"
        name = Path("/sys/class/video4linux") / Path(dev).name / "name"
        if name.is_file():
            line += f"  ({name.read_text().strip()})"
        found.append(line)
    try:
        cv2: Any = importlib.import_module("cv2")
    except ImportError:
        cv2 = None
    if cv2 is not None and not found:
        for index in range(max_index):
            cap = cv2.VideoCapture(index)
            if cap.isOpened():
                w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
                h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
                found.append(f"opencv  index_or_path: {index}  ({w}x{h})")
            cap.release()
    for line in found:
        echo(line)
    if not found:
        echo("no physical cameras found")
    if cv2 is None:
        echo("note: OpenCV is not installed; `pip install 'openk[opencv]'` to record real cameras")
    echo("synthetic  always available: --robot.cameras='{front: {type: synthetic}}'")
    return found


# --- info -------------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def sched_fifo_permitted() -> tuple[bool, str]:
    """Try SCHED_FIFO on a throwaway thread (Linux applies it per thread)."""
    if not hasattr(os, "sched_setscheduler"):
        return False, "this OS has no SCHED_FIFO"
    result: list[tuple[bool, str]] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            result.append((True, "yes"))
        except PermissionError:
            result.append((False, "no (needs CAP_SYS_NICE or an rtprio limit ≥ 1)"))
        except OSError as err:
            result.append((False, f"no ({err.strerror})"))

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return result[0] if result else (False, "unknown")


def realtime_report() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    ok, text = sched_fifo_permitted()
    rows.append(("SCHED_FIFO permitted", text))
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_RTPRIO)

        def show(v: int) -> str:
            return "unlimited" if v == resource.RLIM_INFINITY else str(v)

        rows.append(("rtprio limit (soft/hard)", f"{show(soft)}/{show(hard)}"))
    except (AttributeError, ValueError, OSError):
        rows.append(("rtprio limit", "unknown"))
    kernel = platform.uname().version
    rows.append(("PREEMPT_RT kernel", "yes" if "PREEMPT_RT" in kernel else "no"))
    rows.append(("CPUs", str(os.cpu_count())))
    if not ok:
        rows.append(
            (
                "hint",
                "allow realtime: add `@<group> - rtprio 95` to /etc/security/limits.conf "
                "(then log in again), or run with --realtime=off",
            )
        )
    timers = sorted(glob.glob("/sys/bus/usb-serial/devices/*/latency_timer"))
    for timer in timers:
        dev = Path(timer).parent.name
        try:
            ms = int(Path(timer).read_text().strip())
        except (OSError, ValueError):
            continue
        rows.append((f"latency_timer {dev}", f"{ms} ms"))
        if ms > 1:
            rows.append(
                ("hint", f"echo 1 | sudo tee {timer}  # FTDI default 16 ms caps the loop rate")
            )
    if not timers:
        rows.append(("serial latency_timer", "no USB-serial (FTDI) adapters present"))
    return rows


def info(echo: Callable[[str], None] = click.echo) -> None:
    try:
        core_module = importlib.import_module("openk._core")
        core = getattr(core_module, "__version__", "present")
    except ImportError as err:
        core = f"missing ({err}); run scripts/bootstrap.sh"
    rows: list[tuple[str, str]] = [
        ("openk", _version("openk")),
        ("openk._core", str(core)),
        ("python", sys.version.split()[0] + f" ({sys.executable})"),
        ("platform", platform.platform()),
    ]
    for dist in ("numpy", "pyarrow", "av", "huggingface_hub", "hf-xet", "click", "pyyaml"):
        rows.append((dist, _version(dist)))
    for dist in ("opencv-python-headless", "opencv-python", "rerun-sdk"):
        version = _version(dist)
        if version != "not installed":
            rows.append((dist, version))
    rows.extend(realtime_report())
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        echo(f"{key:<{width}}  {value}")


# --- dataset wrappers -------------------------------------------------------------------------


def _dataset_module() -> Any:
    try:
        return importlib.import_module("openk.dataset")
    except ImportError as err:
        raise DatasetError(
            f"openk.dataset is not available ({err}); reinstall openk (scripts/bootstrap.sh)"
        ) from None


def _existing_dataset(root: Path, echo: Callable[[str], None]) -> Any:
    """`openk.dataset`, once the dataset at `root` is known to exist (an edit a crash
    interrupted is finished or undone first, and said)."""
    ds = _dataset_module()
    from openk.dataset.edit import finish_interrupted_edit

    did = finish_interrupted_edit(root)
    if did:
        echo(did)
    if not ds.meta.has_dataset(root):
        raise DatasetError(f"no dataset at {root} ({ds.meta.INFO_PATH} missing); check the path")
    return ds


def verify(root: Path, echo: Callable[[str], None] = click.echo) -> None:
    """Finishes an edit a crash interrupted, then checks the dataset. One that another process
    is writing (a recording, an edit) is not checked: its files are still being written."""
    ds = _existing_dataset(root, echo)
    report = ds.verify(root)
    if report.ok:
        echo(str(report))
        return
    from openk.dataset.layout import busy_error, dataset_writer

    writer = dataset_writer(root)
    if writer is not None:  # its journal and temporary files belong to a running write
        raise busy_error(root, writer, "it was not checked")
    for problem in report.problems:
        echo(f"problem: {problem}")
    raise DatasetError(
        f"{root}: {len(report.problems)} problem(s) found (listed above); "
        f"`openk recover {root}` saves or drops an interrupted episode"
    )


def push(
    root: Path,
    repo_id: str,
    *,
    private: bool = False,
    tags: list[str] | None = None,
    echo: Callable[[str], None] = click.echo,
) -> None:
    try:
        hub = importlib.import_module("openk.hub")
    except ImportError as err:
        raise OpenKError(f"openk.hub is not available ({err}); reinstall openk") from None
    result = hub.push_dataset(root, repo_id, private=private, tags=tags or ())
    url = getattr(result, "repo_url", None) or repo_id
    echo(f"pushed {root} to {url}")


def recover(
    root: Path,
    *,
    repo_id: str | None = None,
    discard: bool = False,
    echo: Callable[[str], None] = click.echo,
) -> None:
    from openk.dataset.layout import lock_dataset

    # held throughout: the journal of a recording still running is no interrupted episode
    with lock_dataset(root):
        _recover(root, repo_id, discard, echo)


def _recover(root: Path, repo_id: str | None, discard: bool, echo: Callable[[str], None]) -> None:
    ds = _existing_dataset(root, echo)
    pending = ds.pending_journal(root)
    if not pending:
        echo(f"{root}: no interrupted episode to recover")
        return
    # The repo id only labels the writer here; the folder is given.
    label = repo_id or "local/" + (re.sub(r"[^A-Za-z0-9._-]", "_", root.resolve().name) or "ds")
    if not discard:
        for entry in pending:
            verb = "keeping" if entry.length > 0 else "dropping"
            echo(f"{root}: {verb} the interrupted episode: {entry.describe()}")
    summaries = ds.recover(label, root, keep=not discard, announced=pending)
    if discard:
        echo(f"{root}: discarded {len(pending)} interrupted episode(s)")
    else:
        rows = sum(s.length for s in summaries)
        echo(f"{root}: recovered {len(summaries)} episode(s) ({rows} rows)")
