"""What a run, a fit or a scoring needs besides the data: the encoder(s), the detector, the threshold rule."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frozenasd.detectors.frames import resolve_pooling
from frozenasd.detectors.threshold import DEFAULT_PERCENTILE, check_threshold_choice
from frozenasd.embed.cache import default_cache_dir
from frozenasd.embed.encoders.device import check_device
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.errors import ModelError, SettingsError
from frozenasd.views import Branch

__all__ = ["RunSettings", "model_settings"]


@dataclass
class RunSettings:
    """What a run needs besides the data: the encoder, the detector and how to run them.

    A single view is ``model_path`` with ``pooling``, ``normalise`` and ``detector``; with
    ``branches`` the run fuses several views instead (``fusion_rule``; ``preset`` records the name
    they came from) and those four are unused.
    """

    model_path: Path | None = None
    detector: str = "kmeansNN"
    n_components: int = 2
    random_state: int = 0
    batch_size: int = 8
    num_threads: int | None = None
    target_frames: int | None = None
    output: str | None = None
    pooling: str | None = None  # None: the detector's (frames for the frame detectors, else mean)
    normalise: str = "none"
    progress: bool = True
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    branches: tuple[Branch, ...] = ()
    fusion_rule: str = "max"
    preset: str | None = None
    threshold_percentile: float | None = None  # None: DEFAULT_PERCENTILE of the gamma fit
    threshold: float | None = None  # a fixed decision threshold (a score), instead of the gamma fit
    device: str = "auto"  # where the encoders run: auto, cpu or cuda (frozenasd.embed.encoders.device)

    def __post_init__(self) -> None:
        self.pooling = resolve_pooling(self.detector, self.pooling)
        try:
            check_device(self.device)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
        try:
            check_threshold_choice(self.threshold_percentile, self.threshold)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc

    @property
    def threshold_rule(self) -> dict[str, float]:
        """How the decision threshold is chosen: ``{"percentile": P}`` or ``{"fixed": value}``."""
        if self.threshold is not None:
            return {"fixed": float(self.threshold)}
        percentile = DEFAULT_PERCENTILE if self.threshold_percentile is None else self.threshold_percentile
        return {"percentile": float(percentile)}

    def extractor(self, branch: Branch | None = None) -> ONNXFeatureExtractor:
        """The single view's extractor, or ``branch``'s (its model resolved and prepared on first use)."""
        if branch is not None:
            from frozenasd.backbones import resolve_model

            model = resolve_model(branch.model)
            view = {"pooling": branch.pooling, "normalise": branch.normalise}
        elif self.model_path is None:
            raise ModelError("no encoder given: name a model, or the branches of a fusion")
        else:
            model = self.model_path
            view = {
                "pooling": self.pooling,
                "normalise": self.normalise,
                "output": self.output,
                "target_frames": self.target_frames,
            }
        return ONNXFeatureExtractor(
            model, batch_size=self.batch_size, num_threads=self.num_threads, device=self.device, **view
        )

    @property
    def detector_name(self) -> str:
        """The detector as reports name it: one name, or ``fusion-<rule>(branch + …)``."""
        if not self.branches:
            return self.detector
        return f"fusion-{self.fusion_rule}({' + '.join(b.spec() for b in self.branches)})"

    def as_dict(self) -> dict[str, Any]:
        """The settings for a run's record; a fusion's leaves out the single view's unused fields."""
        out = {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}
        out["branches"] = [b.spec() for b in self.branches]
        del out["threshold_percentile"], out["threshold"]
        rule = self.threshold_rule  # the one in use: a fixed threshold, or the percentile (default 90)
        out["threshold" if "fixed" in rule else "threshold_percentile"] = next(iter(rule.values()))
        unused = ("model_path", "detector", "pooling", "normalise", "output", "target_frames")
        if self.branches:
            out = {k: v for k, v in out.items() if k not in unused}
        else:
            out = {k: v for k, v in out.items() if k not in ("branches", "fusion_rule", "preset")}
        return out


def model_settings(
    model: str | os.PathLike | None = None,
    *,
    preset: str | None = None,
    branches: str | tuple[Branch, ...] | None = None,
    fusion_rule: str | None = None,
    detector: str | None = None,
    pooling: str | None = None,
    normalise: str | None = None,
    target_frames: int | None = None,
    output: str | None = None,
    threshold_percentile: float | None = None,
    threshold: float | None = None,
    n_components: int = 2,
    random_state: int = 0,
    batch_size: int = 8,
    num_threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    device: str = "auto",
    spelling: Mapping[str, str] | None = None,
    note: Callable[[str], None] | None = None,
) -> RunSettings:
    """The settings of a single view (``model``: a backbone name or an ONNX file) or of a fusion.

    Without ``model``, the fusion is ``branches`` (``Branch`` tuples, or ``MODEL:POOLING:DETECTOR``
    joined by ``+``) or the ``preset`` (default: ``frozenasd fit``'s, robust, or spectral when aiSFX
    is missing). ``detector``, ``pooling``, ``normalise``, ``target_frames`` and ``output`` shape a
    single view only. ``cache_dir``: ``None`` caches nowhere. SettingsError when options clash, naming
    them as ``spelling`` says (the command line's ``--fuse`` for ``branches``, say). ``note`` is told
    when the default preset had to fall back. ``device``: where the encoders run (auto, cpu, cuda).
    """
    from frozenasd.backbones import resolve_model
    from frozenasd.views import default_preset, parse_fusion
    from frozenasd.views import preset as named_preset

    spelled = spelling or {}

    def name_of(parameter: str) -> str:
        return spelled.get(parameter, parameter)

    if preset and branches:
        raise SettingsError(f"give {name_of('preset')} or {name_of('branches')}, not both")
    common: dict[str, Any] = {
        "threshold_percentile": threshold_percentile,
        "threshold": threshold,
        "n_components": n_components,
        "random_state": random_state,
        "batch_size": batch_size,
        "num_threads": num_threads,
        "cache_dir": None if cache_dir is None else Path(cache_dir),
        "progress": progress,
        "device": device,
    }
    if model is not None:
        if preset or branches or fusion_rule:
            fusion = ", ".join(name_of(k) for k in ("preset", "branches", "fusion_rule"))
            raise SettingsError(
                f"{name_of('model')} names a single view; a fusion ({fusion}) names its models in its "
                "branches: give one or the other"
            )
        return RunSettings(
            model_path=resolve_model(model),
            detector=detector or "kmeansNN",
            pooling=pooling,
            normalise=normalise or "none",
            target_frames=target_frames,
            output=output,
            **common,
        )
    single = {"detector": detector, "pooling": pooling, "normalise": normalise,
              "target_frames": target_frames, "output": output}  # fmt: skip
    given = [name_of(name) for name, value in single.items() if value is not None]
    if given:
        raise SettingsError(
            f"{', '.join(given)} shape a single view: give {name_of('model')} too, or write them into "
            f"the branches of {name_of('branches')}"
        )
    try:
        if branches:
            chosen = parse_fusion(branches) if isinstance(branches, str) else tuple(branches)
            return RunSettings(branches=chosen, fusion_rule=fusion_rule or "max", **common)
    except ValueError as exc:
        raise SettingsError(f"{name_of('branches')}: {exc}") from exc
    name = preset
    if name is None:
        name, fallback = default_preset()
        if fallback and note:
            note(fallback)
    try:
        found = named_preset(name)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    return RunSettings(branches=found.branches, fusion_rule=fusion_rule or found.rule, preset=name, **common)
