"""What identifies the encoder a model was fitted with: facts saved at fit, checked at load.

A view's encoder is known by its file's sha256 (and, for the messages, the file's name) and the
output embedded; a fusion saves these per branch, with the branch's model name, pooling,
normalisation and detector.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.encoders.pooling import NORMALISATIONS, POOLINGS
from frozenasd.errors import ModelError
from frozenasd.hashing import file_sha256
from frozenasd.views import Branch


def encoder_facts(extractor: ONNXFeatureExtractor) -> dict[str, Any]:
    """What identifies the encoder a view was fitted with: its file's hash and name, its output."""
    return {
        "encoder_sha256": file_sha256(extractor.model_path),
        "encoder_file": Path(extractor.model_path).name,
        "output": extractor.output_name_,
    }


def check_encoder(fitted: object, encoder: str | os.PathLike, facts: dict, where: str = "") -> None:
    """``encoder`` must be the file the model was fitted with (by its sha256)."""
    if file_sha256(encoder) != facts.get("encoder_sha256"):
        raise ModelError(
            f"{encoder}: {where}not the encoder {fitted} was fitted with "
            f"({facts.get('encoder_file')}, sha256 {str(facts.get('encoder_sha256'))[:12]}…)"
        )


_BRANCH_FIELDS = ("model", "pooling", "normalise", "detector")


def saved_branches(fitted: object, info: dict) -> list[tuple[Branch, dict]]:
    """The branches a fusion was fitted with, checked, each with its saved encoder facts."""
    from frozenasd.detectors.pipeline import DETECTORS
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
