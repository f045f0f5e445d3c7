"""Official DCASE Task 2 data sets: the registry of Zenodo archives and a safe, resumable downloader."""

from __future__ import annotations

from frozenasd.data.datasets.download import STATE_DIR, download_dataset
from frozenasd.data.datasets.registry import (
    DATASETS,
    Archive,
    DatasetSpec,
    format_datasets_table,
    get_dataset,
)
from frozenasd.data.datasets.zenodo import BASE_URL_ENV, DEFAULT_BASE_URL

__all__ = [
    "BASE_URL_ENV",
    "DATASETS",
    "DEFAULT_BASE_URL",
    "STATE_DIR",
    "Archive",
    "DatasetSpec",
    "download_dataset",
    "format_datasets_table",
    "get_dataset",
]
