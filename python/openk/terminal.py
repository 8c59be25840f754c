"""The recording terminal: a live status line and the →/←/Esc keys.

Keys are read from the controlling terminal (termios cbreak on stdin in a thread), so they work
in a plain console and over SSH without a display — unlike an X keyboard hook. Ctrl-C still
raises KeyboardInterrupt because cbreak keeps signal generation on.
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

# A lone Esc and the first byte of an arrow key's escape sequence are the same byte; an Esc
# with nothing after it within this window is the Esc key itself.
ESC_TIMEOUT_S = 0.05


class Key(enum.Enum):
    RIGHT = "right"
    LEFT = "left"
    ESC = "esc"
    SPACE = "space"


_SEQUENCES: dict[bytes, Key] = {
    b"\x1b[C": Key.RIGHT,
    b"\x1bOC": Key.RIGHT,  # application cursor mode
    b"\x1b[D": Key.LEFT,
    b"\x1bOD": Key.LEFT,
}


class KeyParser:
    """Turns terminal bytes into keys; unknown sequences (↑, F1, ...) are ignored."""

    def __init__(self) -> None:
        self._pending = b""
        self._pending_since = 0.0

    def feed(self, data: bytes, now: float) -> list[Key]:
        keys: list[Key] = []
        buf = self._pending + data
        self._pending = b""
        i = 0
        while i < len(buf):
            byte = buf[i : i + 1]
            if byte != b"\x1b":
                if byte == b" ":
                    keys.append(Key.SPACE)
                i += 1
                continue
            rest = buf[i:]
            if len(rest) == 1:
                self._pending, self._pending_since = rest, now
                break
            if rest[1:2] not in (b"[", b"O"):
                # Esc followed by an ordinary byte: the user pressed Esc, then something else.
                keys.append(Key.ESC)
                i += 1
                continue
            if len(rest) == 2:
                self._pending, self._pending_since = rest, now
                break
            seq_end = 2
            # CSI parameters (digits, ';') end at a final byte in @..~.
            while seq_end < len(rest) and rest[seq_end : seq_end + 1] in b"0123456789;":
                seq_end += 1
            if seq_end >= len(rest):
                self._pending, self._pending_since = rest, now
                break
            seq = rest[: seq_end + 1]
            key = _SEQUENCES.get(seq)
            if key is not None:
                keys.append(key)
            i += seq_end + 1
        return keys

    def flush(self, now: float) -> list[Key]:
        """A pending lone Esc becomes the Esc key once the timeout passes."""
        if self._pending == b"\x1b" and now - self._pending_since >= ESC_TIMEOUT_S:
            self._pending = b""
            return [Key.ESC]
        if self._pending and now - self._pending_since >= 10 * ESC_TIMEOUT_S:
            self._pending = b""  # a truncated sequence; drop it
        return []


class KeyReader:
    """Reads keys from a terminal file descriptor in a daemon thread.

    Does nothing (and says so through `active`) when stdin is not a terminal.
    """

    def __init__(self, on_key: Callable[[Key], None], fd: int | None = None) -> None:
        self._on_key = on_key
        self._fd = sys.stdin.fileno() if fd is None and _has_stdin() else fd
        self._saved: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.active = False

    def start(self) -> bool:
        if self._fd is None or not os.isatty(self._fd):
            return False
        import termios
        import tty

        try:
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        except termios.error:
            return False
        self.active = True
        self._thread = threading.Thread(target=self._run, name="openk-keys", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        parser = KeyParser()
        assert self._fd is not None
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], ESC_TIMEOUT_S / 2)
            except (OSError, ValueError):
                return
            now = time.monotonic()
            keys: list[Key] = []
            if ready:
                try:
                    data = os.read(self._fd, 64)
                except OSError:
                    return
                if not data:
                    return
                keys.extend(parser.feed(data, now))
            keys.extend(parser.flush(now))
            for key in keys:
                self._on_key(key)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._saved is not None and self._fd is not None:
            import termios

            with contextlib.suppress(termios.error):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None
        self.active = False

    def __enter__(self) -> KeyReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _has_stdin() -> bool:
    try:
        sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


@dataclass
class EpisodeStatus:
    """What the status line shows for the episode being recorded."""

    episode: int  # 1-based among this run's episodes
    num_episodes: int
    elapsed_s: float
    duration_s: float
    control_hz: float = 0.0
    lateness_p99_ns: int = 0
    rows: int = 0
    camera_repeats: int | None = None  # None: not known until the episode is saved
    encoder_backlog: int = 0
    bus_errors: int = 0
    phase: str = "recording"

    def render(self, bar_width: int = 0) -> str:
        """One line; `bar_width` > 0 adds a progress bar (for terminals)."""
        remaining = max(0.0, self.duration_s - self.elapsed_s)
        bar = ""
        if bar_width > 0 and self.duration_s > 0:
            done = min(bar_width, int(bar_width * self.elapsed_s / self.duration_s))
            bar = "[" + "#" * done + "." * (bar_width - done) + "] "
        return (
            f"{self.phase} episode {self.episode}/{self.num_episodes} {bar}"
            f"{self.elapsed_s:5.1f}/{self.duration_s:.0f}s ({remaining:4.1f}s left) | "
            f"{self.control_hz:6.1f} Hz, late p99 {self.lateness_p99_ns / 1e6:.2f} ms | "
            f"rows {self.rows} ({self.rows / max(self.elapsed_s, 1e-3):.1f}/s) | "
            + ("" if self.camera_repeats is None else f"cam repeats {self.camera_repeats} | ")
            + f"enc backlog {self.encoder_backlog} | bus errors {self.bus_errors}"
        )


class StatusLine:
    """One refreshing line on a terminal; plain lines every `plain_interval_s` otherwise."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        tty: bool | None = None,
        plain_interval_s: float = 5.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.plain_interval_s = plain_interval_s
        self._last_plain = -1e9
        self._shown = False

    def update(self, text: str, *, force: bool = False) -> None:
        if self.tty:
            width = shutil.get_terminal_size((120, 24)).columns
            self.stream.write("\r" + text[: max(10, width - 1)] + "\x1b[K")
            self.stream.flush()
            self._shown = True
            return
        now = time.monotonic()
        if force or now - self._last_plain >= self.plain_interval_s:
            self._last_plain = now
            self.stream.write(text + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        """A normal line of output that does not get overwritten."""
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K\n")
            self._shown = False
            self.stream.flush()
        else:
            self.update(text, force=True)


class LiveBlock:
    """A few lines redrawn in place on a terminal (a live table); elsewhere `close` prints the
    last version once, so a log or a pipe gets one copy instead of hundreds."""

    def __init__(self, stream: IO[str] | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._lines: list[str] = []
        self._drawn = 0

    def update(self, lines: Sequence[str]) -> None:
        self._lines = list(lines)
        if not self.tty:
            return
        width = shutil.get_terminal_size((120, 24)).columns
        # Back to the first line drawn last time, rewrite every line, clear what was below.
        parts = [f"\x1b[{self._drawn}A"] if self._drawn else []
        parts += ["\r" + line[: max(10, width - 1)] + "\x1b[K\n" for line in self._lines]
        parts.append("\x1b[J")
        self.stream.write("".join(parts))
        self.stream.flush()
        self._drawn = len(self._lines)

    def detach(self) -> None:
        """Keep what is on screen; the next update draws a new block below it. Needed after
        the terminal echoed a line of input, which moved the cursor under the block."""
        self._drawn = 0

    def close(self) -> None:
        if not self.tty and self._lines:
            self.stream.write("".join(line + "\n" for line in self._lines))
            self.stream.flush()
        self._lines = []
        self._drawn = 0
