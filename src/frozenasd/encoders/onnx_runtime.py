"""ONNX Runtime encoder: waveforms → the model's frontend → ONNX session → one embedding per clip."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from frozenasd.encoders.metadata import decode_metadata
from frozenasd.errors import ModelError
from frozenasd.frontends import Frontend, get_frontend

POOLINGS = ("mean", "bands", "none")
BATCH_VALUES = 1024 * 128  # input values of one 10-second EAT clip: the unit of the batch budget
PATCH = 16  # EAT's patch size in fbank frames and mel bins
DEFAULT_FRONTEND = "eat_fbank"  # for files without metadata: the seed's EAT interface


class ONNXFeatureExtractor(TransformerMixin, BaseEstimator):
    """A scikit-learn transformer that embeds waveforms with an ONNX encoder.

    ``transform(X)`` takes a sequence of 1-D waveforms sampled at ``sample_rate`` and returns an array
    ``(n_clips, dim)``. Each clip goes through the frontend the model's metadata names (see
    :mod:`frozenasd.frontends`; the EAT log-mel fbank for a file without metadata), which turns it into
    one or more model-input examples (EAT: the whole clip; YAMNet: 0.96 s patches; aiSFX: 100-frame
    blocks). Examples of equal shape share a batch (padding would change EAT's features: it has no
    padding mask); the chosen output is averaged over its tokens, then over the clip's examples.

    Parameters
    ----------
    model_path: the ``.onnx`` file; its input must fit its frontend (for EAT: ``(batch, 3, 128, time)``
        or ``(batch, 1, time, 128)``).
    output: the output to use; ``None`` takes ``emb`` when present, else the first output.
    pooling: ``"mean"`` averages the patch tokens of a ``(batch, tokens, dim)`` output; ``"bands"``
        (EAT) averages them over time only and keeps the frequency bands, ``(bands · dim)`` values
        (8 · 768 for EAT-base); ``"none"`` requires an output that is already ``(batch, dim)``. Tokens
        before the patch tokens (the CLS token of a block output, per the metadata's
        ``token_layout``) are left out of both.
    batch_size: examples per ONNX Runtime call; examples larger than a 10-second EAT clip go in
        proportionally smaller batches (a 2-minute clip alone), so memory stays bounded.
    num_threads: ONNX Runtime intra-op threads; ``None`` uses every core.
    target_frames: EAT only. ``None`` embeds the whole clip (padded to a multiple of 16 frames, capped
        at the model's maximum); an integer pads or trims every clip to that many frames (1024 = 10 s).
    sample_rate: rate of the waveforms passed to ``transform``; they are resampled when the
        frontend wants another rate.
    """

    def __init__(
        self,
        model_path: str | os.PathLike = "eat_base_export.onnx",
        *,
        output: str | None = None,
        pooling: str = "mean",
        batch_size: int = 8,
        num_threads: int | None = None,
        target_frames: int | None = None,
        sample_rate: int = 16000,
    ) -> None:
        self.model_path = model_path
        self.output = output
        self.pooling = pooling
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.target_frames = target_frames
        self.sample_rate = sample_rate

    # ----------------------------------------------------------------- session
    def _open(self) -> None:
        """Open the session and check the model's interface; sets the fitted attributes."""
        import onnxruntime as ort

        path = Path(self.model_path)
        if not path.is_file():
            raise ModelError(
                f"{path}: ONNX model file not found (export one with `frozenasd export CHECKPOINT`, "
                "`python example_model_onnx_conversion.py` or `frozenasd download eat-base -o FILE.onnx`, "
                "or name a backbone listed by `frozenasd backbones`)"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.num_threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from exc

        try:
            description = decode_metadata(session.get_modelmeta().custom_metadata_map)
        except ValueError as exc:
            raise ModelError(f"{path}: {exc}") from exc
        description = description or {}
        given = description.get("frontend") or {}
        if not isinstance(given, dict):
            raise ModelError(f"{path}: metadata 'frontend' must be an object, got {given!r}")
        frontend = get_frontend(given.get("name", DEFAULT_FRONTEND), path)
        params = frontend.resolve(given, path)
        if self.target_frames is not None and not frontend.accepts_target_frames:
            raise ModelError(
                f"{path}: target_frames applies to the eat_fbank frontend only; this model uses "
                f"{frontend.name!r} (leave target_frames unset)"
            )

        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected one input, the model has {len(inputs)}")
        declared = (description.get("input") or {}).get("layout")
        layout = frontend.input_layout(params, inputs[0].shape, inputs[0].name, declared, path)

        outputs = {o.name: o for o in session.get_outputs()}
        name = self.output or ("emb" if "emb" in outputs else next(iter(outputs)))
        if name not in outputs:
            raise ModelError(f"{path}: no output named {name!r}; it has {sorted(outputs)}")
        rank = len(outputs[name].shape)
        if rank not in (2, 3):
            raise ModelError(
                f"{path}: output {name!r} has rank {rank}; expected (batch, tokens, dim) or (batch, dim)"
            )
        if rank == 3 and self.pooling == "none":
            raise ModelError(f"{path}: output {name!r} is (batch, tokens, dim); choose pooling='mean'")
        if rank == 2 and self.pooling == "bands":
            raise ModelError(f"{path}: output {name!r} is (batch, dim): it has no tokens to pool by band")
        if self.pooling == "bands" and frontend.name != "eat_fbank":
            raise ModelError(
                f"{path}: pooling='bands' needs EAT's patch grid; this model uses {frontend.name!r}"
            )
        prefix = ((description.get("token_layout") or {}).get(name) or {}).get("prefix_tokens", 0)

        self.session_ = session
        self.input_name_ = inputs[0].name
        self.layout_ = layout
        self.output_name_ = name
        self.output_rank_ = rank
        self.prefix_tokens_ = int(prefix)
        self.frontend_ = {"name": frontend.name, **params}
        self.metadata_ = description

    def fit(self, X: Any = None, y: Any = None) -> ONNXFeatureExtractor:
        """Open the model; the encoder is frozen, so nothing is learned from ``X``."""
        self._open()
        return self

    def _check_open(self) -> None:
        if not hasattr(self, "session_"):
            self._open()

    def _frontend(self) -> Frontend:
        return get_frontend(self.frontend_["name"])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("session_", None)  # sessions do not pickle; reopened on first use
        return state

    # ----------------------------------------------------------------- frontend
    def features(self, waveform: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """The model input of one clip (EAT: fbank ``(frames, mel)``; others: a stack of examples).

        ``sample_rate`` is the waveform's rate (default: the extractor's ``sample_rate``); the clip is
        resampled to the frontend's rate when they differ. Raises ValueError on bad audio.
        """
        self._check_open()
        rate = self.frontend_["sample_rate"]
        given = self.sample_rate if sample_rate is None else sample_rate
        wave = waveform
        if given != rate:
            import soxr

            wave = np.asarray(waveform, dtype=np.float32)
            if wave.ndim != 1 or wave.size == 0:
                raise ValueError(f"waveform must be 1-D and non-empty, got shape {wave.shape}")
            wave = soxr.resample(wave, given, rate, quality="HQ").astype(np.float32)
        return self._frontend().features(wave, self.frontend_, target_frames=self.target_frames)

    def longest_samples(self) -> int | None:
        """The most samples (at the frontend's rate) of a clip that are embedded; None: every sample.

        With ``target_frames`` the length is the user's choice; without, an encoder with a longest
        input (EAT's position table) embeds only the start of a longer clip.
        """
        self._check_open()
        if self.target_frames is not None:
            return None
        return self._frontend().longest_samples(self.frontend_)

    def shortest_samples(self) -> int:
        """The fewest samples (at the frontend's rate) of a clip that is embedded: one 25 ms frame."""
        self._check_open()
        return self._frontend().shortest_samples(self.frontend_)

    # ----------------------------------------------------------------- encoder
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run the session on a stack of examples; return ``(B, dim)`` embeddings."""
        x = self._frontend().model_input(batch, self.layout_)
        try:
            out = self.session_.run([self.output_name_], {self.input_name_: x})[0]
        except MemoryError:
            raise
        except Exception as exc:  # ONNX Runtime's errors derive from Exception only
            raise ModelError(
                f"{self.model_path}: the encoder failed on {len(batch)} example(s) of shape "
                f"{list(batch.shape[1:])}: {exc}"
            ) from exc
        if out.ndim == 3:
            patches = out[:, self.prefix_tokens_ :]
            if self.pooling == "bands":
                bands = self.frontend_["num_mel_bins"] // PATCH
                if patches.shape[1] % bands:
                    raise ModelError(
                        f"{self.model_path}: output {self.output_name_!r} has {patches.shape[1]} patch "
                        f"tokens, not a whole number of {bands}-band time steps"
                    )
                # time-major tokens: (B, time, band, dim) → mean over time → (B, band · dim)
                out = patches.reshape(len(out), -1, bands, out.shape[2]).mean(axis=1).reshape(len(out), -1)
            else:
                out = patches.mean(axis=1)
        return out.astype(np.float32, copy=False)

    def embed_features(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """Embed already computed frontend features (one entry per clip); returns ``(n_clips, dim)``."""
        self._check_open()
        if len(features) == 0:
            raise ValueError("no clips to embed")
        frontend = self._frontend()
        examples = [frontend.examples(np.asarray(f, dtype=np.float32)) for f in features]
        groups: dict[tuple[int, ...], list[tuple[int, int]]] = defaultdict(list)
        for clip, stack in enumerate(examples):
            if len(stack) == 0:
                raise ValueError(f"clip {clip} has no model-input examples")
            for k in range(len(stack)):
                groups[stack.shape[1:]].append((clip, k))
        sums: np.ndarray | None = None
        for shape, refs in groups.items():
            # Long examples go in smaller batches: no batch holds more values than batch_size 10-s clips.
            size = max(1, min(self.batch_size, self.batch_size * BATCH_VALUES // math.prod(shape)))
            for start in range(0, len(refs), size):
                chunk = refs[start : start + size]
                emb = self._run(np.stack([examples[c][k] for c, k in chunk]))
                if sums is None:
                    sums = np.zeros((len(features), emb.shape[1]), dtype=np.float64)
                np.add.at(sums, [c for c, _ in chunk], emb)
        assert sums is not None
        counts = np.array([len(stack) for stack in examples], dtype=np.float64)
        return (sums / counts[:, None]).astype(np.float32)

    def transform(self, X: Iterable[np.ndarray]) -> np.ndarray:
        """Embed each waveform of ``X``; returns ``(n_clips, dim)`` float32."""
        return self.embed_features([self.features(w) for w in X])

    def __sklearn_tags__(self):  # the input is a list of variable-length waveforms, not a 2-D array
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags
