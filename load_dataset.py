"""Load a DCASE Task 2 dataset folder into memory: ``data[machine]["train"|"test"]``.

The seed's script, kept for ``from load_dataset import load_data`` at the repository root; the code
lives in :mod:`frozenasd.compat` (``from frozenasd.compat import load_data`` works from any folder).
Run ``python load_dataset.py [root]`` to print the clip counts per machine and split.
"""

from __future__ import annotations

import sys

from frozenasd.compat import SPLITS, Dataset, load_data, logger
from frozenasd.compat import count_clips as main

__all__ = ["SPLITS", "Dataset", "load_data", "logger", "main"]

if __name__ == "__main__":
    sys.exit(main())
