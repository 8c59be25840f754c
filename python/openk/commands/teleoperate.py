"""`openk teleoperate`: the follower driven from the leader, nothing recorded."""

from __future__ import annotations

import logging
from typing import Any

from openk.config import TeleoperateConfig
from openk.session import (
    Display,
    Events,
    SessionFactory,
    end_quietly,
    open_leader_session,
    read_until_stopped,
    teardown,
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
    session = open_leader_session(
        cfg, "teleoperate", debug=debug, session_factory=session_factory, logger=log
    )
    if cfg.dataset:
        # Warning level: on stderr, and in the log file.
        log.warning(
            "the config file's `dataset` section is not used by openk teleoperate "
            "(it records nothing)"
        )
    keys = KeyReader(events.on_key)
    try:
        if keys.start():
            ui.message("teleoperating: Esc or Ctrl-C stops")
        limit = cfg.teleop_time_s
        latest: Any = None
        display = Display(cfg.display_data, "openk_teleoperate", ui)
        shows_rows = cfg.display_cli or display.rr is not None
        if shows_rows:
            # Rows are only produced inside an episode; they are shown, never stored.
            session.start_episode()

        def on_batch(batch: Any) -> None:
            nonlocal latest
            latest = batch
            display.log_batch(batch)

        def status(elapsed: float) -> str:
            tele = session.telemetry()
            line = (
                f"teleop {elapsed:6.1f}s | {tele.achieved_hz:6.1f} Hz, "
                f"late p99 {tele.lateness_p99_ns / 1e6:.2f} ms | "
                f"bus errors {tele.bus_errors_total}"
            )
            if latest is not None:
                line += " | " + _action_text(latest)
            return line

        last_line = read_until_stopped(
            session,
            events,
            ui,
            on_batch=on_batch,
            status=status,
            until=lambda elapsed: limit is not None and elapsed >= limit,
        )
        if shows_rows:
            end_quietly(session)
        if last_line:
            ui.finish(last_line)
    except KeyboardInterrupt:
        ui.message("stopped (Ctrl-C)")
    finally:
        teardown(keys.stop, session.close)  # a Ctrl-C in keys.stop still returns the arm home
    ui.message("teleoperation ended")


def _action_text(batch: Any) -> str:
    """`shoulder_pan.pos=12.3 ...` of the newest row (the reference's display_cli)."""
    idx = batch.schema.get_field_index("action")
    if idx < 0:
        return ""
    values = batch.column(idx)[batch.num_rows - 1].as_py() or []
    names = vector_names(batch.schema.field(idx)) or [str(i) for i in range(len(values))]
    return " ".join(f"{n}={v:.1f}" for n, v in zip(names, values, strict=False))
