"""What a run, a fit or a scoring needs besides the data: the encoder(s), the detector, the threshold rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frozenasd.cache import default_cache_dir
from frozenasd.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.errors import ModelError, SettingsError
from frozenasd.frames import resolve_pooling
from frozenasd.metrics import DEFAULT_PERCENTILE, check_threshold_choice
from frozenasd.views import Branch

__all__ = ["RunSettings"]


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

    def __post_init__(self) -> None:
        self.pooling = resolve_pooling(self.detector, self.pooling)
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

            return ONNXFeatureExtractor(
                resolve_model(branch.model),
                batch_size=self.batch_size,
                num_threads=self.num_threads,
                pooling=branch.pooling,
                normalise=branch.normalise,
            )
        if self.model_path is None:
            raise ModelError("no encoder given: name a model, or the branches of a fusion")
        return ONNXFeatureExtractor(
            self.model_path,
            batch_size=self.batch_size,
            num_threads=self.num_threads,
            target_frames=self.target_frames,
            output=self.output,
            pooling=self.pooling,
            normalise=self.normalise,
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
