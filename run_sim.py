#!/usr/bin/env python3
"""Engram's command-line entry. ``python run_sim.py --help`` lists the commands."""

import sys
from pathlib import Path

# The project's rooms are top-level packages whose names (``kernels``, ``traces``) are also taken on
# PyPI; put this checkout first so that it is always ours that is imported.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engram.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
