"""The seed's Python names, importable from the installed package (from any folder).

- ``load_data(root)``: a DCASE Task 2 dataset folder in memory, ``data[machine]["train"|"test"]`` =
  ``[(path, waveform | None), ...]`` (the repository's root ``load_dataset.py`` re-exports it, with
  ``SPLITS``, ``Dataset`` and ``count_clips`` as its ``main``);
- ``compute_and_save_metrics`` (the root ``metrics.py``'s): scores.csv, metrics.txt and roc.png of
  one machine's scores;
- ``get_deep_feat_cls_eat_all_model``: the seed's scikit-learn Pipeline over waveforms.

New code may prefer :class:`frozenasd.ScoringModel`, which fits and scores files, folders or
waveforms with any backbone and saves the result.
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np

from frozenasd.data.audio import load_audio
from frozenasd.data.dcase import discover_machines, list_clips
from frozenasd.detectors.pipeline import get_deep_feat_cls_eat_all_model
from frozenasd.errors import AudioError, LayoutError
from frozenasd.outputs.files import compute_and_save_metrics

__all__ = [
    "SPLITS",
    "Dataset",
    "compute_and_save_metrics",
    "count_clips",
    "get_deep_feat_cls_eat_all_model",
    "load_data",
]

logger = logging.getLogger("load_dataset")  # the seed script's name, so existing logging setups apply

SPLITS = ("train", "test")

Dataset = dict[str, dict[str, list[tuple[str, "np.ndarray | None"]]]]


def _load_split(
    root: str | os.PathLike[str], machine: str, split: str
) -> list[tuple[str, np.ndarray | None]]:
    try:
        clips = list_clips(root, machine, split)
    except LayoutError:
        return []  # a machine may have only one of the two folders (e.g. an evaluation train set)
    items: list[tuple[str, np.ndarray | None]] = []
    for clip in clips:
        try:
            waveform: np.ndarray | None = load_audio(clip.path)
        except AudioError as exc:
            # The message already names the file; one broken clip must not sink the whole load.
            logger.warning("unreadable clip, waveform set to None: %s", exc)
            waveform = None
        items.append((str(clip.path), waveform))
    return items


def load_data(root: str | os.PathLike[str]) -> Dataset:
    """Every clip under ``root`` as ``data[machine][split] = [(path, waveform | None), ...]``.

    Waveforms are 16 kHz mono float32 with the DC offset removed; a clip that cannot be read gets
    ``None`` and a warning (logged to stderr when logging is not configured). Raises LayoutError when
    ``root`` is not a DCASE dataset folder.
    """
    return {
        machine: {split: _load_split(root, machine, split) for split in SPLITS}
        for machine in discover_machines(root)
    }


def count_clips(argv: list[str] | None = None) -> int:
    """``python load_dataset.py [root]``: print the clips per machine and split (default root: ./dataset)."""
    args = sys.argv[1:] if argv is None else argv
    root = args[0] if args else "./dataset"
    try:
        data = load_data(root)
    except LayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for machine, splits in data.items():
        for split, items in splits.items():
            broken = sum(waveform is None for _, waveform in items)
            suffix = f" ({broken} unreadable)" if broken else ""
            print(f"{machine}\t{split}\t{len(items)} clips{suffix}")
    return 0
