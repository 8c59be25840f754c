"""`openk calibrate`: the calibration dialog (middle pose → homing, sweep → ranges, save).

`openk.session` runs the same dialog on connect when `--always_calibrate=true`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

from openk.config import CalibrateConfig, DeviceConfig, to_dict
from openk.devices import Role, is_sim_port, load_core, radian_joints, raw_per_turn
from openk.errors import BusTimeoutError, CalibrationError
from openk.log import setup_logging
from openk.session import check_ports
from openk.terminal import LiveBlock, StatusLine

log = logging.getLogger(__name__)


# A joint counts as swept once it moved this far. Encoders flicker by a step or two on an arm
# nobody touches, which the native check (max > min) would take for a range.
MIN_SWEEP_DEG = 10.0


def _min_sweep(radians: bool) -> float:
    return raw_per_turn(radians) * MIN_SWEEP_DEG / 360.0


def unswept_joints(rows: Sequence[tuple[str, float, float, float]], radians: set[str]) -> list[str]:
    """The joints of `Calibrator.sample()` rows (joint, min, position, max) that moved less than
    MIN_SWEEP_DEG."""
    return [name for name, lo, _pos, hi in rows if hi - lo < _min_sweep(name in radians)]


def _cell(value: float, digits: int) -> str:
    text = f"{value:>10.{digits}f}"
    # A joint resting at zero reads -0.000 half of the time; show it unsigned.
    return text.replace("-", " ") if float(text) == 0 else text


def range_table(rows: Sequence[tuple[str, float, float, float]], radians: set[str]) -> list[str]:
    """The live table of the sweep: one line per joint, raw units, whether it moved enough."""
    lines = [f"{'joint':<16}{'min':>10}{'position':>10}{'max':>10}  unit  swept"]
    short = set(unswept_joints(rows, radians))
    for name, lo, pos, hi in rows:
        digits, unit = (3, "rad") if name in radians else (0, "step")
        cells = "".join(_cell(v, digits) for v in (lo, pos, hi))
        state = "move it" if name in short else "ok"
        lines.append(f"{name:<16}{cells}  {unit:<4}  {state}")
    return lines


def _read_line(fd: int) -> bool:
    """Consume one line from `fd`, byte by byte so nothing is buffered past it (select() must
    see what is left); False at the end of input."""
    while True:
        byte = os.read(fd, 1)
        if not byte:
            return False
        if byte == b"\n":
            return True


def _wait_enter_or(stop_after_s: float | None, on_tick: Callable[[], None], fd: int) -> bool:
    """Call `on_tick` until Enter is pressed on `fd` (True) or, for scripted runs, until
    `stop_after_s` passed; False then, and at the end of input."""
    import select

    start = time.monotonic()
    while True:
        on_tick()
        if stop_after_s is not None:
            if time.monotonic() - start >= stop_after_s:
                return False
            time.sleep(0.05)
            continue
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            return _read_line(fd)


def run_calibration(
    dev: DeviceConfig,
    role: Role,
    *,
    scripted: bool,
    ui: StatusLine,
    sweep_s: float = 3.0,
    stdin_fd: int = 0,
) -> str:
    """The reference's calibration dialog: middle pose → homing, sweep → ranges, save.

    `scripted` takes no input (the simulator's hand moves the joints) and sweeps `sweep_s`.
    Enter with a joint that has not moved far enough saves nothing and keeps sampling.
    """
    core = load_core()
    who = f"{role} {dev.type} (id {dev.id})"
    radians = radian_joints(str(dev.type), role)
    calibrator = core.Calibrator(dev.to_core(), role)
    table = LiveBlock(ui.stream, tty=ui.tty)
    try:
        ui.message(f"calibrating {who} on {dev.port}")
        if not scripted:
            ui.message("Move every joint to the middle of its range, then press Enter.")
            if not _read_line(stdin_fd):
                raise CalibrationError(
                    f"{who}: the input ended before Enter was pressed at the middle pose; "
                    "run openk calibrate in a terminal (or with --scripted=true on a sim port)"
                )
        # A simulator forgets a DAMIAO zero when this process ends: zeroing it would make the
        # next command see a re-zeroed motor and refuse the file. Real motors keep it.
        calibrator.set_homing(zero_damiao=not is_sim_port(dev.port))
        ui.message(
            "Move every joint through its whole range; press Enter when every row says ok."
            if not scripted
            else f"sampling ranges for {sweep_s:g} s"
        )

        rows: list[tuple[str, float, float, float]] = []
        misses = 0

        def show() -> None:
            nonlocal misses, rows
            try:
                rows = calibrator.sample()
            except BusTimeoutError:
                # One late answer does not spoil a sweep; a motor that stays silent does.
                misses += 1
                if misses >= 5:
                    raise
                return
            misses = 0
            table.update(range_table(rows, radians))

        while True:
            pressed = _wait_enter_or(sweep_s if scripted else None, show, stdin_fd)
            # The terminal echoed Enter under the table: draw the next one below it.
            table.detach()
            short = unswept_joints(rows, radians)
            if not short:
                break
            names = ", ".join(short)
            if not pressed:
                table.close()
                when = (
                    f"while it samples ({sweep_s:g} s; on sim ports the simulator moves a "
                    "leader's joints only)"
                    if scripted
                    else "before pressing Enter"
                )
                raise CalibrationError(
                    f"{who}: {names} did not move {MIN_SWEEP_DEG:g}° or more; nothing was "
                    "saved. Run openk calibrate again and sweep every joint through its whole "
                    f"range {when}"
                )
            ui.message(
                f"Not saved: {names} did not move {MIN_SWEEP_DEG:g}° or more. Sweep "
                f"{'it' if len(short) == 1 else 'them'} through the whole range, then press "
                "Enter again (Ctrl-C quits without saving)."
            )
        table.close()
        log.info("%s: ranges %s", who, {name: (lo, hi) for name, lo, _pos, hi in rows})
        path = calibrator.save()
        ui.finish(f"calibration saved to {path}")
        return str(path)
    except KeyboardInterrupt:
        ui.finish(f"calibration of {who} not saved (interrupted)")
        raise
    finally:
        calibrator.close()


def calibrate(cfg: CalibrateConfig, *, debug: bool = False, ui: StatusLine | None = None) -> str:
    ui = ui or StatusLine()
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    log.info("openk calibrate config: %s", to_dict(cfg))
    check_ports(cfg.robot, "robot")
    check_ports(cfg.teleop, "teleop")
    if cfg.robot is not None:
        return run_calibration(cfg.robot, "robot", scripted=cfg.scripted, ui=ui)
    assert cfg.teleop is not None
    return run_calibration(cfg.teleop, "teleop", scripted=cfg.scripted, ui=ui)
