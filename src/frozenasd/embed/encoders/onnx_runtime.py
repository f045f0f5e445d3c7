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

from frozenasd.embed.encoders.device import CPU, check_device, open_session
from frozenasd.embed.encoders.metadata import decode_metadata
from frozenasd.embed.encoders.pooling import (
    FRAMES,
    NORMALISATIONS,
    canonical_pooling,
    normalise_waveform,
    pad_rows,
    parse_pooling,
    pool_frames,
)
from frozenasd.embed.frontends import Frontend, get_frontend
from frozenasd.errors import ModelError

BATCH_VALUES = 1024 * 128  # input values of one 10-second EAT clip: the unit of the batch budget
# On the CPU a call holds at most two 10-second EAT clips' values: past that the encoder's intermediate
# tensors leave the CPU's caches and every clip takes longer (EAT-base, 2 cores: batches of 8 took
# 2-3 % (fp32) and 1-6 % (int8) longer per clip than batches of 2, on AVX-512 and AVX2 kernels;
# benchmarks/batch_size.py). Small examples still go batch_size at a time.
CPU_CALL_VALUES = 2 * BATCH_VALUES
PATCH = 16  # EAT's patch size in fbank frames and mel bins
DEFAULT_FRONTEND = "eat_fbank"  # for files without metadata: the seed's EAT interface


class ONNXFeatureExtractor(TransformerMixin, BaseEstimator):
    """A scikit-learn transformer that embeds waveforms with an ONNX encoder.

    ``transform(X)`` takes a sequence of 1-D waveforms sampled at ``sample_rate`` and returns an array
    ``(n_clips, dim)``. Each clip goes through the frontend the model's metadata names (see
    :mod:`frozenasd.embed.frontends`; the EAT log-mel fbank for a file without metadata), which turns it into
    one or more model-input examples (EAT: the whole clip; YAMNet: 0.96 s patches; aiSFX: 100-frame
    blocks). Examples of equal shape share a batch (padding would change EAT's features: it has no
    padding mask); the chosen output's vectors of the whole clip (the tokens of every example, or one
    vector per example) are pooled into one embedding (see :mod:`frozenasd.embed.encoders.pooling`).

    Parameters
    ----------
    model_path: the ``.onnx`` file; its input must fit its frontend (for EAT: ``(batch, 3, 128, time)``
        or ``(batch, 1, time, 128)``).
    output: the output to use; ``None`` takes ``emb`` when present, else the first output.
    pooling: the statistic over the clip's vectors: ``"mean"``, ``"max"``, ``"meanstd"`` (mean and
        standard deviation) or ``"quantiles"`` (median, 90th percentile, maximum); ``"bands-<stat>"``
        (EAT) takes it over time only and keeps the frequency bands, ``(bands · dim)`` values per
        statistic (8 · 768 for EAT-base; ``"bands"`` = ``"bands-mean"``); ``"none"`` requires an
        output that is already ``(batch, dim)`` and averages the clip's examples. Tokens before the
        patch tokens (the CLS token of a block output, per the metadata's ``token_layout``) are left
        out. ``"frames"`` pools nothing: the clip's frame vectors flattened, ``n_frames · frame_dim_``
        values (EAT: one frame per time step of patch tokens, all bands; clips of other lengths give
        other widths).
    normalise: ``"none"``; ``"rms"`` scales each waveform to an RMS of 0.1 and ``"peak"`` to a largest
        absolute sample of 1, before the frontend (a silent clip is left as it is).
    batch_size: examples per ONNX Runtime call, at most. On the CPU no call holds more input values
        than two 10-second EAT clips (``CPU_CALL_VALUES``; EAT's 10-s clips go two at a time, a longer
        clip alone); on CUDA examples larger than a 10-second EAT clip go in proportionally smaller
        batches (a 2-minute clip alone), so memory stays bounded.
    num_threads: ONNX Runtime intra-op threads; ``None`` uses every core.
    target_frames: EAT only. ``None`` embeds the whole clip (padded to a multiple of 16 frames, capped
        at the model's maximum); an integer pads or trims every clip to that many frames (1024 = 10 s).
    sample_rate: rate of the waveforms passed to ``transform``; they are resampled when the
        frontend wants another rate.
    device: ``"auto"`` (CUDA when ``onnxruntime-gpu`` and a GPU are there, else the CPU), ``"cpu"`` or
        ``"cuda"`` (the CPU, with one line saying why, when CUDA cannot be used); see
        :mod:`frozenasd.embed.encoders.device`. ``provider_`` is the ONNX Runtime provider used.
    """

    def __init__(
        self,
        model_path: str | os.PathLike = "eat_base_export.onnx",
        *,
        output: str | None = None,
        pooling: str = "mean",
        normalise: str = "none",
        batch_size: int = 8,
        num_threads: int | None = None,
        target_frames: int | None = None,
        sample_rate: int = 16000,
        device: str = "auto",
    ) -> None:
        self.model_path = model_path
        self.output = output
        self.pooling = pooling
        self.normalise = normalise
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.target_frames = target_frames
        self.sample_rate = sample_rate
        self.device = device

    # ----------------------------------------------------------------- session
    def _open(self) -> None:
        """Open the session and check the model's interface; sets the fitted attributes."""
        import onnxruntime as ort

        check_device(self.device)
        path = Path(self.model_path)
        if not path.is_file():
            raise ModelError(
                f"{path}: ONNX model file not found (export one with `frozenasd export CHECKPOINT`, "
                "`python example_model_onnx_conversion.py` or `frozenasd download eat-base -o FILE.onnx`, "
                "or name a backbone listed by `frozenasd backbones`)"
            )
        statistic, keep_bands = parse_pooling(self.pooling)
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.num_threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        try:
            session, provider = open_session(path, options, self.device)
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
        if rank == 2 and keep_bands:
            raise ModelError(f"{path}: output {name!r} is (batch, dim): it has no tokens to pool by band")
        if statistic == FRAMES and rank == 3 and frontend.name == "eat_fbank":
            keep_bands = True  # one frame = one time step of EAT's patch tokens, every band
        elif keep_bands and frontend.name != "eat_fbank":
            raise ModelError(
                f"{path}: pooling={self.pooling!r} needs EAT's patch grid; this model uses {frontend.name!r}"
            )
        prefix = ((description.get("token_layout") or {}).get(name) or {}).get("prefix_tokens", 0)
        dim = outputs[name].shape[-1]
        frame_dim = None
        if isinstance(dim, int):
            frame_dim = dim * (params["num_mel_bins"] // PATCH if keep_bands else 1)
        elif statistic == FRAMES:
            raise ModelError(
                f"{path}: output {name!r} has no fixed last dimension ({dim!r}); pooling='frames' needs one"
            )

        self.session_ = session
        self.provider_ = provider
        self.input_name_ = inputs[0].name
        self.layout_ = layout
        self.output_name_ = name
        self.output_rank_ = rank
        self.prefix_tokens_ = int(prefix)
        self.frontend_ = {"name": frontend.name, **params}
        self.metadata_ = description
        self.statistic_ = statistic
        self.keep_bands_ = keep_bands
        self.pooling_ = canonical_pooling(self.pooling)
        # the vectors a clip is pooled over: their size and, where regular, the seconds between them
        self.frame_dim_ = frame_dim
        mixed = rank == 3 and frontend.name == "eat_fbank" and not keep_bands  # tokens of every band
        self.frame_hop_ = None if mixed else frontend.frame_hop_seconds(params, tokens=rank == 3)

    def fit(self, X: Any = None, y: Any = None) -> ONNXFeatureExtractor:
        """Open the model; the encoder is frozen, so nothing is learned from ``X``."""
        self._open()
        return self

    def _check_open(self) -> None:
        if not hasattr(self, "session_"):
            self._open()

    def _check_frontend(self) -> None:
        """The frontend alone is needed: an extractor unpickled without its session computes features."""
        if not hasattr(self, "frontend_"):
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
        self._check_frontend()
        rate = self.frontend_["sample_rate"]
        given = self.sample_rate if sample_rate is None else sample_rate
        wave = waveform
        if given != rate:
            import soxr

            wave = np.asarray(waveform, dtype=np.float32)
            if wave.ndim != 1 or wave.size == 0:
                raise ValueError(f"waveform must be 1-D and non-empty, got shape {wave.shape}")
            wave = soxr.resample(wave, given, rate, quality="HQ").astype(np.float32)
        wave = normalise_waveform(wave, self.normalise)
        return self._frontend().features(wave, self.frontend_, target_frames=self.target_frames)

    def longest_samples(self) -> int | None:
        """The most samples (at the frontend's rate) of a clip that are embedded; None: every sample.

        With ``target_frames`` the length is the user's choice; without, an encoder with a longest
        input (EAT's position table) embeds only the start of a longer clip.
        """
        self._check_frontend()
        if self.target_frames is not None:
            return None
        return self._frontend().longest_samples(self.frontend_)

    def shortest_samples(self) -> int:
        """The fewest samples (at the frontend's rate) of a clip that is embedded: one 25 ms frame."""
        self._check_frontend()
        return self._frontend().shortest_samples(self.frontend_)

    # ----------------------------------------------------------------- encoder
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run the session on a stack of examples; return their vectors ``(B, n, dim)`` to pool.

        ``n`` is the patch tokens (time steps of ``bands · dim`` when the bands are kept) of a token
        output, 1 for an output that is already one vector per example.
        """
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
        if out.ndim == 2:
            return out[:, None].astype(np.float32, copy=False)
        patches = out[:, self.prefix_tokens_ :]
        if self.keep_bands_:
            bands = self.frontend_["num_mel_bins"] // PATCH
            if patches.shape[1] % bands:
                raise ModelError(
                    f"{self.model_path}: output {self.output_name_!r} has {patches.shape[1]} patch "
                    f"tokens, not a whole number of {bands}-band time steps"
                )
            # time-major tokens: (B, time · band, dim) → (B, time, band · dim)
            patches = patches.reshape(len(out), -1, bands * out.shape[2])
        return patches.astype(np.float32, copy=False)

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
        vectors: list[list[np.ndarray]] = [[] for _ in features]
        for shape, refs in groups.items():
            size = max(1, min(self.batch_size, self._call_values() // math.prod(shape)))
            for start in range(0, len(refs), size):
                chunk = refs[start : start + size]
                out = self._run(np.stack([examples[c][k] for c, k in chunk]))
                for (c, _), frames in zip(chunk, out, strict=True):
                    vectors[c].append(frames)
        # ``frames`` pooling: clips of other lengths give rows of other widths, NaN-padded to the widest
        return pad_rows([pool_frames(np.concatenate(v), self.statistic_) for v in vectors])

    def _call_values(self) -> int:
        """The most input values one call may hold (see ``batch_size``)."""
        if self.provider_ == CPU:
            return CPU_CALL_VALUES
        return self.batch_size * BATCH_VALUES

    def transform(self, X: Iterable[np.ndarray]) -> np.ndarray:
        """Embed each waveform of ``X``; returns ``(n_clips, dim)`` float32."""
        return self.embed_features([self.features(w) for w in X])

    def __sklearn_tags__(self):  # the input is a list of variable-length waveforms, not a 2-D array
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags
