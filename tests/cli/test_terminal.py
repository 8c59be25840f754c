"""Keys and the status line, without a terminal."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from openk.log import daily_log_path
from openk.terminal import ESC_TIMEOUT_S, EpisodeStatus, Key, KeyParser, KeyReader, StatusLine

from ..helpers import wait_until


def test_arrow_keys_arrive_as_escape_sequences() -> None:
    parser = KeyParser()
    assert parser.feed(b"\x1b[C\x1b[D\x1bOC", 0.0) == [Key.RIGHT, Key.LEFT, Key.RIGHT]
    assert parser.flush(1.0) == []


def test_a_sequence_split_across_reads_is_one_key() -> None:
    parser = KeyParser()
    assert parser.feed(b"\x1b", 0.0) == []
    assert parser.feed(b"[", 0.01) == []
    assert parser.feed(b"D", 0.02) == [Key.LEFT]
    assert parser.flush(1.0) == []


def test_a_lone_esc_is_esc_after_the_timeout_only() -> None:
    parser = KeyParser()
    assert parser.feed(b"\x1b", 0.0) == []
    assert parser.flush(ESC_TIMEOUT_S / 2) == []
    assert parser.flush(ESC_TIMEOUT_S) == [Key.ESC]


def test_other_keys_are_ignored() -> None:
    parser = KeyParser()
    assert parser.feed(b"abc\x1b[A\x1b[1;5C", 0.0) == []  # letters, ↑, ctrl-→
    assert parser.feed(b"\x1bx", 0.0) == [Key.ESC]  # Esc then a letter


def test_key_reader_reads_a_real_terminal() -> None:
    leader, follower = os.openpty()
    seen: list[Key] = []
    reader = KeyReader(seen.append, fd=follower)
    try:
        assert reader.start()
        os.write(leader, b"\x1b[C")
        os.write(leader, b"\x1b[D")
        os.write(leader, b"\x1b")
        wait_until(lambda: len(seen) >= 3, "the reader saw three keys")
    finally:
        reader.stop()
        os.close(leader)
        os.close(follower)
    assert seen == [Key.RIGHT, Key.LEFT, Key.ESC]


def test_key_reader_is_inactive_without_a_terminal(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w+") as f:
        reader = KeyReader(lambda key: None, fd=f.fileno())
        assert reader.start() is False


def test_status_line_is_plain_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    line = StatusLine(out, tty=False, plain_interval_s=3600)
    status = EpisodeStatus(
        episode=1, num_episodes=2, elapsed_s=1.0, duration_s=10, rows=30, camera_repeats=0
    )
    line.update(status.render())
    line.update(status.render())  # within the interval: not repeated
    line.finish("episode 1 saved")
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.count("episode 1/2") == 1 and text.endswith("episode 1 saved\n")
    for part in ("rows 30", "Hz", "late p99", "cam repeats", "enc backlog", "bus errors"):
        assert part in text


def test_status_line_refreshes_in_place_on_a_tty() -> None:
    out = io.StringIO()
    line = StatusLine(out, tty=True)
    line.update("one")
    line.update("two")
    line.message("saved")
    assert out.getvalue() == "\rone\x1b[K\rtwo\x1b[K\r\x1b[Ksaved\n"


def test_daily_log_file_name() -> None:
    day = time.strptime("2026-02-13", "%Y-%m-%d")
    assert daily_log_path(Path("logs/openk_record.log"), day) == Path(
        "logs/openk_record_20260213.log"
    )
