"""Frontends: one waveform → the model-input examples of one clip, chosen by the name in a model's metadata.

An ONNX encoder names its frontend in its ``frozenasd`` metadata (``frontend.name``) together with the
frontend's parameters. Each frontend here is the numpy definition of one model family's input:

- ``eat_fbank`` (:mod:`~frozenasd.embed.frontends.eat`): EAT's Kaldi log-mel fbank, one ``(T, 128)`` example
  per clip.
- ``yamnet_logmel`` (:mod:`~frozenasd.embed.frontends.yamnet`): YAMNet's log-mel patches
  ``(n_patches, 96, 64)``, 0.96 s every 0.48 s at 16 kHz.
- ``aisfx_mel`` (:mod:`~frozenasd.embed.frontends.aisfx`): aiSFX's normalised log-mel blocks
  ``(n_blocks, 100, 96)``, 100 frames every 50 at 44.1 kHz.
- ``logmel`` (:mod:`~frozenasd.embed.frontends.logmel`): EAT's fbank frames without padding and three level
  statistics per frame, one ``(T, 131)`` example per clip (the ``logmel`` view, no model).

The interface, its parameter and input-shape checks and the input layouts (``BTF``, ``B1TF``, ``B3FT``)
are in :mod:`frozenasd.embed.frontends.base`. Frontends import nothing from :mod:`frozenasd.embed.encoders`.
"""

from __future__ import annotations

from frozenasd.embed.frontends.aisfx import AisfxMel, aisfx_blocks, aisfx_mel_bank, aisfx_mel_spectrogram
from frozenasd.embed.frontends.base import LAYOUT_B1TF, LAYOUT_B3FT, LAYOUT_BTF, Frontend
from frozenasd.embed.frontends.eat import EAT_FRONTEND, EATFbank
from frozenasd.embed.frontends.logmel import LogMel, frame_levels
from frozenasd.embed.frontends.yamnet import YAMNetLogMel, yamnet_log_mel, yamnet_mel_weights, yamnet_pad
from frozenasd.errors import ModelError

__all__ = [
    "EAT_FRONTEND",
    "FRONTENDS",
    "LAYOUT_B1TF",
    "LAYOUT_B3FT",
    "LAYOUT_BTF",
    "AisfxMel",
    "EATFbank",
    "Frontend",
    "LogMel",
    "YAMNetLogMel",
    "aisfx_blocks",
    "aisfx_mel_bank",
    "aisfx_mel_spectrogram",
    "frame_levels",
    "get_frontend",
    "yamnet_log_mel",
    "yamnet_mel_weights",
    "yamnet_pad",
]

FRONTENDS: dict[str, Frontend] = {f.name: f for f in (EATFbank(), YAMNetLogMel(), AisfxMel(), LogMel())}


def get_frontend(name: object, source: object = "model") -> Frontend:
    """The frontend registered as ``name``; ModelError naming ``source`` and the known names otherwise."""
    frontend = FRONTENDS.get(name) if isinstance(name, str) else None
    if frontend is None:
        raise ModelError(
            f"{source}: unknown frontend {name!r}; known frontends: {', '.join(sorted(FRONTENDS))}"
        )
    return frontend
