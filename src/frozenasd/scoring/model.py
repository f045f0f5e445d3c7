"""A scoring model: fitted once on a machine's normal sounds, saved, loaded, and used to score.

A :class:`ScoringModel` is the fitted scoring pipeline (scaler → detector → scaler), its decision
threshold and the identity of its encoder(s): for a single view the model file, its sha256, the output,
pooling, waveform normalisation and ``target_frames``; for a fusion of views its branches, each with
its encoder's facts. It is saved as the ``.npz`` format of :mod:`frozenasd.detectors.persistence`
(plain arrays and JSON, no pickle) and loads files written by earlier versions. Loading checks every
encoder against the hash it was fitted with and opens its ONNX session once; the model then scores
any number of calls (files, folders or waveforms) without opening or hashing anything again.

The decision threshold applies to the pipeline's output (training range → [0, 1]): a clip is
anomalous when its score is above it. It is the gamma threshold of the cross-fitted training scores
at a percentile (default 90, as DCASE's baseline) or a fixed score; the detectors' own ``offset_``
is not used, so that the saved threshold is the one a file's user sees and can choose.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.cores import one_blas_thread
from frozenasd.data.dcase import Clip
from frozenasd.data.inputs import Inputs, check_machine_name, input_clips
from frozenasd.detectors.frames import frame_detector, pipeline_frame_scores, width_problem
from frozenasd.detectors.persistence import load_scoring_pipeline, pipeline_info, save_scoring_pipeline
from frozenasd.embed import Executor, Views
from frozenasd.embed.encoders.pooling import NORMALISATIONS, POOLINGS
from frozenasd.errors import ModelError
from frozenasd.scoring.fitting import fit_on_normals
from frozenasd.scoring.identity import check_encoder, encoder_facts, saved_branches
from frozenasd.settings import RunSettings, model_settings
from frozenasd.versions import versions

__all__ = ["ScoringModel", "Scored", "model_settings"]


@dataclass
class Scored:
    """Scores of the usable clips (``decisions``: 1 = above the threshold) and the skipped clips."""

    paths: list[Path]
    scores: np.ndarray
    decisions: np.ndarray
    threshold: float
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    frames: list[np.ndarray] | None = None  # per clip its frames' scores (a frame detector's)
    frame_hop: float | None = None  # seconds between frame starts; None: unknown


class ScoringModel:
    """A fitted scoring pipeline, its decision threshold and its encoders, opened and ready to score.

    Build one with :meth:`fit` (or :meth:`fit_clips`) or :meth:`load`; ``info`` holds what the file
    saves (the machine, the encoder identity, the detector, the threshold and how it was chosen, the
    training facts and the library versions).
    """

    def __init__(self, pipeline: Any, info: dict[str, Any], views: Views, source: object = None) -> None:
        self.pipeline = pipeline
        self.info = info
        self.threshold = _finite_threshold(info.get("threshold"), source or "the model")
        self.source = source or "the fitted model"
        # Scoring reads no cache: a file's embeddings are computed, whatever a run stored for it.
        self._views = views.without_cache()

    # ---------------------------------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        inputs: Inputs,
        model: str | os.PathLike | None = None,
        *,
        sample_rate: int | None = None,
        machine: str = "recordings",
        **settings: Any,
    ) -> ScoringModel:
        """Fit on normal recordings: audio files, folders (searched recursively) or waveforms.

        ``model``: a backbone name (``logmel``, ``aisfx``, ``yamnet``, ``eat-base``) or an ONNX file,
        one view; without it a fusion of views (``preset=``, ``branches=``; default: ``frozenasd
        fit``'s preset). ``sample_rate``: the waveforms'. The other keywords are those of
        :func:`model_settings` (``detector``, ``pooling``, ``threshold_percentile`` or ``threshold``,
        ``cache_dir`` …; embeddings are cached only with a ``cache_dir``). Domains are read from
        DCASE-style file names when every name gives one; otherwise all clips are one domain.
        """
        check_machine_name(machine)
        run_settings = model_settings(model, **settings)
        clips = input_clips(inputs, sample_rate, machine, "train")
        where = "the waveforms given" if sample_rate is not None else "the recordings given"
        return cls.fit_clips(clips, run_settings, where, by_name=True)

    @classmethod
    def fit_clips(
        cls,
        clips: list[Clip],
        settings: RunSettings,
        where: object,
        *,
        by_name: bool = False,
        executor: Executor | None = None,
    ) -> ScoringModel:
        """Embed ``clips`` (of one machine), fit the detector and choose the threshold.

        ``by_name``: the clips' domains count only if every clip names one. Too few usable clips, or a
        detector that cannot be fitted to them, raise FrozenASDError naming ``where``. ``executor``
        embeds the clips, for the fit and for the model's later scoring (default: in this process).
        """
        machine = clips[0].machine if clips else "recordings"
        views = Views.open(settings, executor)
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
                    **encoder_facts(views.extractors[view]),
                }
                for branch, view in zip(settings.branches, views.branch_views, strict=True)
            ]
            info["fusion_rule"] = settings.fusion_rule
            info["preset"] = settings.preset
        else:
            extractor = views.extractors[0]
            info |= {
                "model": str(settings.model_path),
                **encoder_facts(extractor),
                "pooling": extractor.pooling,
                "normalise": extractor.normalise,
                "target_frames": extractor.target_frames,
            }
        info |= {
            "detector": settings.detector_name,
            "threshold": threshold,
            "threshold_rule": settings.threshold_rule,
            "n_train": len(train.clips),
            "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "skipped": [str(c.path) for c, _ in train.skipped],
            "providers": [e.provider_ for e in views.extractors],  # where each view's encoder ran
            "versions": versions(),
        }
        return cls(pipe, info, views)

    # ------------------------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike) -> dict[str, Any]:
        """Write the model to ``path`` (``.npz``, no pickle); returns the info saved with it."""
        save_scoring_pipeline(self.pipeline, path, self.info)
        return self.info

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: str | os.PathLike | None = None,
        *,
        batch_size: int = 8,
        num_threads: int | None = None,
        executor: Executor | None = None,
        device: str = "auto",
    ) -> ScoringModel:
        """The model saved at ``path``, its encoders checked (by sha256) and opened (on ``device``).

        A single view's encoder is the file the model names, or ``model`` (a file or a backbone name)
        when that file has moved; it must be the one it was fitted with. A fusion finds each branch's
        model by the name it saved (a backbone name or a file) and takes no ``model``. ``executor``
        embeds the clips scored (default: in this process).
        """
        info = pipeline_info(path)
        pipe = load_scoring_pipeline(path)
        _finite_threshold(info.get("threshold"), path)
        common = {
            "batch_size": batch_size,
            "num_threads": num_threads,
            "progress": False,
            "cache_dir": None,
            "device": device,
        }
        if info.get("branches") is not None:
            if model is not None:
                raise ModelError(
                    f"{path}: a fusion of views; its branches name their models, so give no --model"
                )
            saved = saved_branches(path, info)
            settings = RunSettings(
                branches=tuple(b for b, _ in saved), fusion_rule=str(info.get("fusion_rule")), **common
            )
            views = Views.open(settings, executor)
            for (branch, facts), view in zip(saved, views.branch_views, strict=True):
                check_encoder(path, views.extractors[view].model_path, facts, f"branch {branch.spec()}: ")
            return cls(pipe, info, views, source=path)
        if model is None:
            model = info.get("model")
            if not isinstance(model, str) or not Path(model).is_file():
                raise ModelError(
                    f"{path}: the encoder it was fitted with ({info.get('encoder_file')}) is not at "
                    f"{model!r} here; name it with --model"
                )
        else:
            from frozenasd.backbones import resolve_model

            model = resolve_model(model)
        check_encoder(path, model, info)
        pooling, normalise = info.get("pooling", "mean"), info.get("normalise", "none")
        if pooling not in POOLINGS or normalise not in NORMALISATIONS:
            raise ModelError(
                f"{path}: the saved embedding settings are unknown here: pooling {pooling!r} (known: "
                f"{', '.join(POOLINGS)}), normalise {normalise!r} (known: {', '.join(NORMALISATIONS)})"
            )
        # the detector is fitted already; its name only lets a frame detector's frames pooling pass
        frame_bank = frame_detector(pipe) is not None
        settings = RunSettings(
            model_path=Path(model),
            detector=str(info.get("detector")) if frame_bank else "kmeansNN",
            target_frames=info.get("target_frames"),
            output=info.get("output"),
            pooling=pooling,
            normalise=normalise,
            **common,
        )
        return cls(pipe, info, Views.open(settings, executor), source=path)

    # ------------------------------------------------------------------------------------ score
    def score(
        self,
        inputs: Inputs,
        *,
        sample_rate: int | None = None,
        frames: bool | None = None,
        progress: bool = False,
    ) -> Scored:
        """Score recordings: audio files, folders (searched recursively) or waveforms (``sample_rate``).

        A clip that cannot be used is skipped, with the reason. ``frames``: also each clip's
        per-frame scores (``None``: when the detector gives them; ``True`` for another detector is
        an error).
        """
        clips = input_clips(inputs, sample_rate, self.machine, "score")
        return self.score_clips(clips, frames=frames, progress=progress)

    def score_clips(self, clips: list[Clip], *, frames: bool | None = None, progress: bool = False) -> Scored:
        """Score clip records (see :meth:`score`)."""
        with one_blas_thread():  # BLAS threads left spinning would slow the next call's encoder
            return self._score_clips(clips, frames, progress)

    def _score_clips(self, clips: list[Clip], frames: bool | None, progress: bool) -> Scored:
        has_frames = frame_detector(self.pipeline) is not None
        if frames and not has_frames:
            raise ModelError(
                f"{self.source}: its detector ({self.detector}) gives no per-frame scores; fit with "
                "--detector framebank or framebank-topk for them"
            )
        frames = has_frames if frames is None else frames
        embedded, _ = self._views.embed(clips, progress=progress, desc="score")
        width = embedded.embeddings.shape[1]
        expected = width_problem(self.pipeline, width) if embedded.clips else None
        if expected:
            fused = self.info.get("branches") is not None
            source = "its branches' encoders" if fused else str(self._views.extractors[0].model_path)
            raise ModelError(
                f"{source}: gives {width}-dimensional embeddings, but {self.source} was "
                f"fitted on {expected}; its encoder hash does not match its content"
            )
        scores = self.pipeline.transform(embedded.embeddings)[:, 0] if embedded.clips else np.empty(0)
        per_frame = None
        if frames:
            per_frame = pipeline_frame_scores(self.pipeline, embedded.embeddings) if embedded.clips else []
        single = len(self._views.extractors) == 1 and self.info.get("branches") is None
        return Scored(
            paths=[c.path for c in embedded.clips],
            scores=scores,
            decisions=(scores > self.threshold).astype(int),
            threshold=self.threshold,
            skipped=[(c.path, reason) for c, reason in embedded.skipped],
            frames=per_frame,
            frame_hop=getattr(self._views.extractors[0], "frame_hop_", None) if single else None,
        )

    # ------------------------------------------------------------------------------ description
    @property
    def machine(self) -> str:
        """The name the model was fitted under (a machine type, or ``recordings``)."""
        return str(self.info.get("machine", ""))

    @property
    def detector(self) -> str:
        """The detector as reports name it (``fusion-<rule>(…)`` for a fusion)."""
        return str(self.info.get("detector", type(self.pipeline[-2]).__name__))

    @property
    def encoder(self) -> dict[str, Any]:
        """What identifies the encoder(s): a single view's model file, sha256 and embedding
        settings, or a fusion's rule and branches."""
        if self.info.get("branches") is not None:
            return {k: self.info.get(k) for k in ("branches", "fusion_rule", "preset")}
        keys = ("model", "encoder_file", "encoder_sha256", "output", "pooling", "normalise", "target_frames")
        return {k: self.info.get(k) for k in keys}

    def __repr__(self) -> str:
        return f"ScoringModel({self.detector} on {self.machine}, threshold {self.threshold:.6g})"


def _finite_threshold(threshold: object, where: object) -> float:
    """The saved threshold as a float; ModelError when it is not a finite number."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ModelError(f"{where}: the saved threshold {threshold!r} is not a finite number")
    return float(threshold)
