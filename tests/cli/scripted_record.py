"""`openk record` with the scripted loop session in place of the native one (test helper).

Run as `python -m tests.cli.scripted_record ARGS...` style: `python scripted_record.py ARGS`.
Everything else — config parsing, the dataset writer, cameras, terminal keys, status line — is
the real thing, so a terminal test can drive it before (and besides) the simulators.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import ScriptedSession

import openk.cli as cli
import openk.commands.record as rec
from openk.config import RecordConfig, parse_config


def main() -> None:
    def go() -> None:
        cfg = parse_config(RecordConfig, sys.argv[1:])
        rec.record(cfg, session_factory=lambda c: ScriptedSession(paced=True, rows_per_read=1))

    cli.run_guarded(go, debug=False)


if __name__ == "__main__":
    main()
