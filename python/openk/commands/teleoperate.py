"""`openk teleoperate`: the follower driven from the leader, nothing recorded."""

from __future__ import annotations

import logging
import time
from typing import Any

from openk.config import TeleoperateConfig, to_dict
from openk.log import setup_logging
from openk.session import (
    BATCH_WAIT_S,
    STATUS_PERIOD_S,
    Display,
    Events,
    SessionFactory,
    check_ports,
    connect_session,
    end_quietly,
    sigterm_as_interrupt,
    vector_names,
)
from openk.terminal import KeyReader, StatusLine

log = logging.getLogger(__name__)


def teleoperate(
    cfg: TeleoperateConfig,
    *,
    debug: bool = False,
    session_factory: SessionFactory | None = None,
    ui: StatusLine | None = None,
    events: Events | None = None,
) -> None:
    ui = ui or StatusLine()
    events = events or Events()
    setup_logging(cfg.log_file, daily=cfg.daily_log_file_name, debug=debug)
    log.info("openk teleoperate config: %s", to_dict(cfg))
    check_ports(cfg.robot, "robot")
    check_ports(cfg.teleop, "teleop")
    session = (session_factory or connect_session)(cfg)
    keys = KeyReader(events.on_key)
    try:
        if keys.start():
            ui.message("teleoperating: Esc or Ctrl-C stops")
        start = time.monotonic()
        limit = cfg.teleop_time_s
        last = 0.0
        latest: Any = None
        last_line = ""
        display = Display(cfg.display_data, "openk_teleoperate", ui)
        shows_rows = cfg.display_cli or display.rr is not None
        if shows_rows:
            # Rows are only produced inside an episode; they are shown, never stored.
            session.start_episode()
        with sigterm_as_interrupt():
            while not events.stop.is_set():
                elapsed = time.monotonic() - start
                if limit is not None and elapsed >= limit:
                    break
                batch = session.read_batch(BATCH_WAIT_S)
                if batch is not None and batch.num_rows:
                    latest = batch
                    display.log_batch(batch)
                if time.monotonic() - last >= STATUS_PERIOD_S:
                    last = time.monotonic()
                    tele = session.telemetry()
                    line = (
                        f"teleop {elapsed:6.1f}s | {tele.achieved_hz:6.1f} Hz, "
                        f"late p99 {tele.lateness_p99_ns / 1e6:.2f} ms | "
                        f"bus errors {tele.bus_errors_total}"
                    )
                    if latest is not None:
                        line += " | " + _action_text(latest)
                    ui.update(line)
                    last_line = line
        if shows_rows:
            end_quietly(session)
        if last_line:
            ui.finish(last_line)
    except KeyboardInterrupt:
        ui.message("stopped (Ctrl-C)")
    finally:
        keys.stop()
        session.close()
    ui.message("teleoperation ended")


def _action_text(batch: Any) -> str:
    """`shoulder_pan.pos=12.3 ...` of the newest row (the reference's display_cli)."""
    idx = batch.schema.get_field_index("action")
    if idx < 0:
        return ""
    values = batch.column(idx)[batch.num_rows - 1].as_py() or []
    names = vector_names(batch.schema.field(idx)) or [str(i) for i in range(len(values))]
    return " ".join(f"{n}={v:.1f}" for n, v in zip(names, values, strict=False))
