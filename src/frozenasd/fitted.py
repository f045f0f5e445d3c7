"""A model fitted once on a machine's normal clips, saved, and used later to score new recordings.

The file is the scoring pipeline (scaler → detector → scaler) saved as plain arrays (no pickle),
with what scoring needs to stay faithful: the encoder file's sha256, the embedding settings, the
decision threshold and the training facts. Scoring refuses an encoder other than the one it was
fitted with.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.dcase import Clip, is_audio_file, list_clips
from frozenasd.detector_io import load_scoring_pipeline, pipeline_info, save_scoring_pipeline
from frozenasd.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.encoders.pooling import NORMALISATIONS, POOLINGS
from frozenasd.errors import LayoutError, ModelError
from frozenasd.frames import frame_detector, pipeline_frame_scores, width_problem
from frozenasd.hashing import file_sha256
from frozenasd.run import RunSettings, Views, fit_on_normals, versions
from frozenasd.views import Branch


def fit_machine(
    data_root: str | os.PathLike, machine: str, settings: RunSettings, path: str | os.PathLike
) -> dict:
    """Fit on ``<data_root>/<machine>/train`` and save to ``path``; returns the saved info."""
    clips = list_clips(Path(data_root), machine, "train")
    return _fit_clips(clips, machine, settings, path, Path(data_root) / machine / "train", by_name=False)


def fit_files(
    files: Sequence[str | os.PathLike],
    settings: RunSettings,
    path: str | os.PathLike,
    machine: str = "recordings",
) -> dict:
    """Fit on normal recordings given as files (any names, any layout) and save to ``path``.

    Domains are read from DCASE-style names when every name gives one; otherwise all clips are one domain.
    """
    if not machine or machine in (".", "..") or any(c in machine for c in "/\\"):
        raise LayoutError(f"machine name {machine!r}: use a plain name (no path separators)")
    clips = [Clip.from_path(f, machine, "train") for f in _once(files)]
    return _fit_clips(clips, machine, settings, path, "the recordings given", by_name=True)


def _fit_clips(
    clips: list[Clip],
    machine: str,
    settings: RunSettings,
    path: str | os.PathLike,
    where: object,
    *,
    by_name: bool,
) -> dict:
    """Embed ``clips``, fit the detector, save; ``by_name``: domains only if every clip names one."""
    views = Views.open(settings)
    train, bounds = views.embed(clips, progress=settings.progress, desc=f"{machine} train")
    domains = [c.domain for c in train.clips]
    if by_name and any(d is None for d in domains):
        domains = [None] * len(domains)
    pipe, threshold = fit_on_normals(train, settings, where, domains, bounds)
    info: dict[str, Any] = {"machine": machine}
    if settings.branches:
        info["branches"] = [
            {
                "model": branch.model,
                "pooling": branch.pooling,
                "normalise": branch.normalise,
                "detector": branch.detector,
                **_encoder_facts(views.extractors[view]),
            }
            for branch, view in zip(settings.branches, views.branch_views, strict=True)
        ]
        info["fusion_rule"] = settings.fusion_rule
        info["preset"] = settings.preset
    else:
        extractor = views.extractors[0]
        info |= {
            "model": str(settings.model_path),
            **_encoder_facts(extractor),
            "pooling": extractor.pooling,
            "normalise": extractor.normalise,
            "target_frames": extractor.target_frames,
        }
    info |= {
        "detector": settings.detector_name,
        "threshold": threshold,
        "n_train": len(train.clips),
        "skipped": [str(c.path) for c, _ in train.skipped],
        "versions": versions(),
    }
    save_scoring_pipeline(pipe, path, info)
    return info


def _encoder_facts(extractor: ONNXFeatureExtractor) -> dict[str, Any]:
    """What identifies the encoder a view was fitted with: its file's hash and name, its output."""
    return {
        "encoder_sha256": file_sha256(extractor.model_path),
        "encoder_file": Path(extractor.model_path).name,
        "output": extractor.output_name_,
    }


@dataclass
class Scored:
    """Scores of the usable clips (``decisions``: 1 = above the threshold) and the skipped clips."""

    paths: list[Path]
    scores: np.ndarray
    decisions: np.ndarray
    threshold: float
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    frames: list[np.ndarray] | None = None  # per clip its frames' scores (score_files(frames=True))
    frame_hop: float | None = None  # seconds between frame starts; None: unknown


def _once(files: Iterable[str | os.PathLike]) -> list[Path]:
    """The files in order, each once (a file named twice, or also found in a folder, counts once)."""
    seen: set[Path] = set()
    unique: list[Path] = []
    for f in map(Path, files):
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def audio_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """The audio files named, and those found (recursively, sorted) in the folders named.

    A file named is taken whatever its extension (it is reported if it cannot be read); in a folder,
    only files with an audio extension (``dcase.AUDIO_EXTENSIONS``) that are not hidden are. Each file
    appears once, however often it is named or found.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if is_audio_file(p))
        elif item.exists():
            found.append(item)
        else:
            raise LayoutError(f"{item}: no such file or folder")
    return _once(found)


def score_files(
    fitted: str | os.PathLike,
    encoder: str | os.PathLike | None,
    files: Sequence[str | os.PathLike],
    *,
    batch_size: int = 8,
    num_threads: int | None = None,
    progress: bool = False,
    frames: bool = False,
) -> Scored:
    """Score audio files with a saved model.

    A single-view model scores with ``encoder``, which must be the file it was fitted with (``None``:
    the file it names); a fusion finds each branch's model by the name it saved (a backbone name or a
    file) and checks each against the hash it saved.

    ``frames``: also each clip's per-frame scores (a frame detector's; an error for other detectors).
    """
    info = pipeline_info(fitted)
    pipe = load_scoring_pipeline(fitted)
    if frames and frame_detector(pipe) is None:
        raise ModelError(
            f"{fitted}: its detector ({info.get('detector', type(pipe[-2]).__name__)}) gives no per-frame "
            "scores; fit with --detector framebank or framebank-topk for them"
        )
    threshold = info.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ModelError(f"{fitted}: the saved threshold {threshold!r} is not a finite number")
    common = {"batch_size": batch_size, "num_threads": num_threads, "progress": progress, "cache_dir": None}
    if info.get("branches") is not None:
        if encoder is not None:
            raise ModelError(
                f"{fitted}: a fusion of views; its branches name their models, so give no --model"
            )
        saved = _saved_branches(fitted, info)
        settings = RunSettings(
            branches=tuple(b for b, _ in saved), fusion_rule=str(info.get("fusion_rule")), **common
        )
        views = Views.open(settings)
        for (branch, facts), view in zip(saved, views.branch_views, strict=True):
            _check_encoder(fitted, views.extractors[view].model_path, facts, f"branch {branch.spec()}: ")
    else:
        if encoder is None:
            encoder = info.get("model")
            if not isinstance(encoder, str) or not Path(encoder).is_file():
                raise ModelError(
                    f"{fitted}: the encoder it was fitted with ({info.get('encoder_file')}) is not at "
                    f"{encoder!r} here; name it with --model"
                )
        _check_encoder(fitted, encoder, info)
        pooling, normalise = info.get("pooling", "mean"), info.get("normalise", "none")
        if pooling not in POOLINGS or normalise not in NORMALISATIONS:
            raise ModelError(
                f"{fitted}: the saved embedding settings are unknown here: pooling {pooling!r} (known: "
                f"{', '.join(POOLINGS)}), normalise {normalise!r} (known: {', '.join(NORMALISATIONS)})"
            )
        settings = RunSettings(
            model_path=Path(encoder),
            target_frames=info.get("target_frames"),
            output=info.get("output"),
            pooling=pooling,
            normalise=normalise,
            **common,
        )
        views = Views.open(settings)
    clips = [Clip.from_path(p, info.get("machine", ""), "score") for p in files]
    embedded, _ = views.embed(clips, progress=progress, desc="score")
    threshold = float(threshold)
    expected = width_problem(pipe, embedded.embeddings.shape[1]) if embedded.clips else None
    if expected:
        source = "its branches' encoders" if settings.branches else str(settings.model_path)
        raise ModelError(
            f"{source}: gives {embedded.embeddings.shape[1]}-dimensional embeddings, but {fitted} was "
            f"fitted on {expected}; its encoder hash does not match its content"
        )
    scores = pipe.transform(embedded.embeddings)[:, 0] if embedded.clips else np.empty(0)
    per_frame = None
    if frames:
        per_frame = pipeline_frame_scores(pipe, embedded.embeddings) if embedded.clips else []
    return Scored(
        paths=[c.path for c in embedded.clips],
        scores=scores,
        decisions=(scores > threshold).astype(int),
        threshold=threshold,
        skipped=[(c.path, reason) for c, reason in embedded.skipped],
        frames=per_frame,
        frame_hop=None if settings.branches else getattr(views.extractors[0], "frame_hop_", None),
    )


def _check_encoder(fitted: object, encoder: str | os.PathLike, facts: dict, where: str = "") -> None:
    """``encoder`` must be the file the model was fitted with (by its sha256)."""
    if file_sha256(encoder) != facts.get("encoder_sha256"):
        raise ModelError(
            f"{encoder}: {where}not the encoder {fitted} was fitted with "
            f"({facts.get('encoder_file')}, sha256 {str(facts.get('encoder_sha256'))[:12]}…)"
        )


def _saved_branches(fitted: object, info: dict) -> list[tuple[Branch, dict]]:
    """The branches a fusion was fitted with, checked, each with its saved encoder facts."""
    from frozenasd.pipeline import DETECTORS
    from frozenasd.views import FUSION_RULES

    entries = info.get("branches")
    if not isinstance(entries, list) or not entries or info.get("fusion_rule") not in FUSION_RULES:
        raise ModelError(f"{fitted}: the saved fusion has no branches or an unknown rule")
    out = []
    for k, entry in enumerate(entries):
        fields = [entry.get(key) if isinstance(entry, dict) else None for key in _BRANCH_FIELDS]
        model, pooling, normalise, detector = fields
        if (
            not all(isinstance(f, str) for f in fields)
            or pooling not in POOLINGS
            or normalise not in NORMALISATIONS
            or detector not in DETECTORS
        ):
            shown = repr(entry)[:200]
            raise ModelError(f"{fitted}: fusion branch {k + 1} is not one this version knows: {shown}")
        out.append((Branch(model, pooling, detector, normalise), entry))
    return out


_BRANCH_FIELDS = ("model", "pooling", "normalise", "detector")
