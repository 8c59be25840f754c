"""`openk record` on the simulated arm whose follower port disappears mid-episode (test helper).

Run as `python unplug_record.py ARGS...`: everything is the real thing (native session on the
simulators, cameras, writer, CLI error handling); only the session is wrapped so that, once
episode 2 has `OPENK_TEST_UNPLUG_AFTER_ROWS` rows, the follower's simulated DAMIAO port is
unplugged (its pty closed), as a USB cable pulled out mid-recording.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import openk.cli as cli
import openk.commands.record as rec
from openk.config import RecordConfig, parse_config
from openk.session import connect_session

UNPLUG_AFTER_ROWS = "OPENK_TEST_UNPLUG_AFTER_ROWS"


class UnpluggingSession:
    def __init__(self, inner: Any, after_rows: int) -> None:
        self.inner = inner
        self.after_rows = after_rows
        self.episodes = 0
        self.rows = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def start_episode(self) -> None:
        self.episodes += 1
        self.rows = 0
        self.inner.start_episode()

    def read_batch(self, timeout_s: float) -> Any:
        batch = self.inner.read_batch(timeout_s)
        if batch is not None and self.episodes == 2:
            self.rows += batch.num_rows
            if self.rows >= self.after_rows:
                self.inner.core.simulate_unplug("robot", "damiao")
                self.after_rows = 1 << 62  # once
        return batch


def main() -> None:
    def go() -> None:
        cfg = parse_config(RecordConfig, sys.argv[1:])
        after = int(os.environ[UNPLUG_AFTER_ROWS])
        rec.record(cfg, session_factory=lambda c: UnpluggingSession(connect_session(c), after))

    cli.run_guarded(go, debug=False)


if __name__ == "__main__":
    main()
