"""The offline demo: synthetic machine sounds → a packaged pre-trained encoder → the DCASE table.

Nothing is downloaded: the sounds come from :mod:`frozenasd.data.synth`, the encoder from a package
installed with the project (by default the fusion of views ``frozenasd run`` uses: log-mel and
aiSFX). The data is written once and reused while its settings stay the same.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from frozenasd.data.synth import MACHINES, synthesize
from frozenasd.errors import FrozenASDError
from frozenasd.settings import RunSettings
from frozenasd.workflows.run import run

DATA_MARKER = ".frozenasd-demo.json"


@dataclass(frozen=True)
class DemoData:
    """The demo data set's settings (a DCASE-like test set, a smaller source training set)."""

    machines: tuple[str, ...] = MACHINES
    seed: int = 0
    n_train_source: int = 290
    n_train_target: int = 10
    n_test_per_cell: int = 50
    duration_s: float = 10.0


QUICK = DemoData(n_train_source=40, n_train_target=4, n_test_per_cell=10, duration_s=4.0)


def ensure_data(folder: Path, spec: DemoData, progress: bool = True) -> Path:
    """Write the demo data unless ``folder`` already holds exactly this data set."""
    marker = folder / DATA_MARKER
    wanted = asdict(spec) | {"machines": list(spec.machines)}
    if marker.is_file():
        if json.loads(marker.read_text()) == wanted:
            return folder
        shutil.rmtree(folder)  # demo data of other settings, written by this function
    synthesize(
        folder,
        spec.machines,
        seed=spec.seed,
        n_train_source=spec.n_train_source,
        n_train_target=spec.n_train_target,
        n_test_per_cell=spec.n_test_per_cell,
        duration_s=spec.duration_s,
        progress=progress,
    )
    marker.write_text(json.dumps(wanted, indent=2) + "\n")
    return folder


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, its per-machine metrics (or errors), how long each stage took
    and the text of its ``summary.md``."""

    out: Path
    results: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    summary: str = ""


def run_demo(
    out: str | os.PathLike = "demo",
    *,
    backbone: str | None = None,
    detector: str | None = None,
    preset: str | None = None,
    data: DemoData | None = None,
    machines: Sequence[str] | None = None,
    num_threads: int | None = None,
    progress: bool = True,
    device: str = "auto",
) -> DemoResult:
    """Synthesise (once), prepare the models (once), run every demo machine; outputs in ``out/results``.

    ``backbone`` runs one view with ``detector`` (default kmeansNN, the seed's); without it the demo
    runs ``preset``, by default the one ``frozenasd run`` uses (``views.default_preset``). ``device``:
    where the encoders run (``auto``, ``cpu``, ``cuda``; see :mod:`frozenasd.embed.encoders.device`).
    """
    from frozenasd.backbones import prepare
    from frozenasd.views import default_preset
    from frozenasd.views import preset as named_preset

    if backbone is None and detector is not None:
        raise FrozenASDError("a detector (--detector) shapes one model's view: give the model (--model)")
    if backbone is not None and preset is not None:
        raise FrozenASDError(
            "give a model (--model, one view) or a preset (--preset, a fusion of views), not both"
        )

    out = Path(out)
    spec = data or DemoData()
    if machines:
        spec = DemoData(**(asdict(spec) | {"machines": tuple(machines)}))
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    data_dir = ensure_data(out / "data", spec, progress)
    seconds["data"] = time.perf_counter() - start
    start = time.perf_counter()
    if backbone is not None:
        settings = RunSettings(
            model_path=Path(prepare(backbone)),
            detector=detector or "kmeansNN",
            num_threads=num_threads,
            progress=progress,
            device=device,
        )
    else:
        if preset is None:
            preset, note = default_preset()
            if note:
                print(f"note: {note}", file=sys.stderr)
        chosen = named_preset(preset)
        for name in dict.fromkeys(b.model for b in chosen.branches):
            prepare(name)
        settings = RunSettings(
            branches=chosen.branches,
            fusion_rule=chosen.rule,
            preset=preset,
            num_threads=num_threads,
            progress=progress,
            device=device,
        )
    seconds["models"] = time.perf_counter() - start
    start = time.perf_counter()
    outcome = run(data_dir, list(spec.machines), out / "results", settings)
    seconds["run"] = time.perf_counter() - start
    return DemoResult(out / "results", outcome.metrics, seconds, outcome.summary)
