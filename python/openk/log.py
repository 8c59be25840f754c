"""Logging for the commands: everything to a log file, only warnings to the terminal.

The terminal belongs to the status line while recording, so INFO goes to the file only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def daily_log_path(log_file: Path, day: time.struct_time | None = None) -> Path:
    """`logs/openk_record.log` → `logs/openk_record_20260213.log` (the reference's naming)."""
    stamp = time.strftime("%Y%m%d", day or time.localtime())
    return log_file.with_name(f"{log_file.stem}_{stamp}{log_file.suffix}")


def setup_logging(
    log_file: Path | None, *, daily: bool = False, debug: bool = False
) -> Path | None:
    """Configure the root logger; returns the log file actually used (parent created)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG if debug else logging.INFO)

    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if debug else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(console)

    if log_file is None:
        return None
    path = daily_log_path(log_file) if daily else log_file
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setLevel(logging.DEBUG if debug else logging.INFO)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    root.addHandler(file_handler)
    return path
