"""Writes one episode, then hits a file size limit (RLIMIT_FSIZE, as a full disk would) while
recording the next; prints the error it got as JSON."""

from __future__ import annotations

import json
import resource
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ds_synth import features, record_episode

from openk.dataset import DatasetWriter
from openk.errors import DatasetError

FPS = 30
CAMS = {"front": (48, 64)}


def main() -> None:
    root = Path(sys.argv[1])
    writer = DatasetWriter.create("openk/test", FPS, features(CAMS), root=root, single_task="t")
    record_episode(writer, 20, FPS, CAMS)
    writer.save_episode(wait=True)
    biggest = max(p.stat().st_size for p in root.rglob("*") if p.is_file())
    # writes past the limit now fail with EFBIG instead of killing the process
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 512, resource.RLIM_INFINITY))
    outcome = {"error": None, "type": None}
    try:
        record_episode(writer, 200, FPS, CAMS)
        writer.save_episode(wait=True)
    except DatasetError as exc:
        outcome = {"error": str(exc), "type": type(exc).__name__}
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
