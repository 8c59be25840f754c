"""Entry point of a camera encoder child process (see encoder_process.py).

A module of its own so that `python -m` does not re-import a module the package already loaded.
"""

from __future__ import annotations

import sys

from openk.dataset.encoder_process import _child_main

if __name__ == "__main__":
    _child_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
