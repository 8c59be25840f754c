"""`openk record` with the scripted loop session in place of the native one (test helper).

Run as `python -m tests.cli.scripted_record ARGS...` style: `python scripted_record.py ARGS`.
Everything else — config parsing, the dataset writer, cameras, terminal keys, status line — is
the real thing, so a terminal test can drive it before (and besides) the simulators.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import ScriptedSession

import openk.cli as cli
import openk.commands.record as rec
from openk.config import RecordConfig, parse_config
from openk.session import Events
from openk.terminal import Key

# Test-only: episode 1 ends (as if → was pressed) after this many rows, whatever
# --dataset.episode_time_s says, so a test can make episode 2 last long.
FIRST_EPISODE_ROWS = "OPENK_TEST_FIRST_EPISODE_ROWS"


def main() -> None:
    def go() -> None:
        cfg = parse_config(RecordConfig, sys.argv[1:])
        events = Events()
        keys = {}
        if FIRST_EPISODE_ROWS in os.environ:
            keys[(1, int(os.environ[FIRST_EPISODE_ROWS]))] = Key.RIGHT
        rec.record(
            cfg,
            session_factory=lambda c: ScriptedSession(
                on_key=events.on_key, keys=keys, paced=True, rows_per_read=1
            ),
            events=events,
        )

    cli.run_guarded(go, debug=False)


if __name__ == "__main__":
    main()
