"""Export an EAT checkpoint to a self-describing ONNX file, and check it against PyTorch.

The graph keeps the seed's interface: input ``input`` of shape ``(batch, 3, 128, time)`` float32 (the
one mel channel replicated three times; channel 0 is used), outputs ``emb`` ``(batch, patches, dim)``
(the patch tokens), ``cls`` ``(batch, dim)`` (the CLS token) and, on request, ``layer_<i>``
``(batch, 1 + patches, dim)``: the output of block ``i`` (0-based), CLS first. Batch and time are dynamic.

``emb`` and ``cls`` are always the tokens after the *last block the graph keeps*. An export may keep
fewer blocks than the checkpoint holds (``depth``; each EAT-base block is about 1/12 of the time), and
an export with ``layers`` and no ``depth`` stops after the deepest block asked for, so ``emb`` is then
the patch tokens of block ``max(layers)`` and no later block is ever run; ``depth`` = the checkpoint's
depth keeps every block (the final output as well as the block outputs). The metadata's
``model.depth`` is the blocks kept, ``model.source_depth`` the checkpoint's.

Exported with the TorchScript-based exporter at opset 17 or later: LayerNorm becomes the
``LayerNormalization`` op and GELU the erf pattern that ONNX Runtime fuses into ``BiasGelu``. The
attention core of each block (heads, scaled scores, softmax, weighted sum) is one ONNX Runtime
``com.microsoft.MultiHeadAttention`` node after the q, k and v projections: its CPU kernel works
blockwise, never writing the ``(B, heads, N, N)`` scores or the per-head transposes. For EAT-base that
is about 5 % faster than the MatMul/Softmax/MatMul form at 10 s (the projections and the MLP, ~90 % of
the FLOPs, already run at the machine's matrix-multiply rate), and at 40 s, where the scores grow with
N², about 20 % faster with a fifth of the working memory. The op needs ONNX Runtime (any CPU);
``fused_attention=False`` writes standard ONNX operators only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from frozenasd import __version__
from frozenasd.backbones.eat_export.checkpoint import load_eat_checkpoint
from frozenasd.backbones.eat_export.model import Attention, EATConfig, EATEncoder, multi_head_attention
from frozenasd.embed.encoders.metadata import write_metadata
from frozenasd.embed.frontends import EAT_FRONTEND, LAYOUT_B3FT
from frozenasd.errors import ModelError

log = logging.getLogger(__name__)

MIN_OPSET = 17
VERIFY_TOLERANCE = 1e-3
VERIFY_FRAMES = (1024, 512)
VERIFY_BATCH = 2


class SeedInterface(nn.Module):
    """``(B, 3, 128, T)`` in; ``emb``, ``cls`` and the requested block outputs out."""

    def __init__(self, encoder: EATEncoder, layers: Sequence[int] = ()) -> None:
        super().__init__()
        self.encoder = encoder
        self.layers = tuple(layers)

    @property
    def output_names(self) -> list[str]:
        return ["emb", "cls"] + [f"layer_{i}" for i in self.layers]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mel = x[:, 0].transpose(1, 2).unsqueeze(1)  # (B, 128, T) -> (B, 1, T, 128)
        tokens, picked = self.encoder.forward_layers(mel, self.layers)
        return (tokens[:, 1:], tokens[:, 0], *picked)


class FusedAttention(torch.autograd.Function):
    """:func:`multi_head_attention` in PyTorch; one ``com.microsoft.MultiHeadAttention`` node in ONNX."""

    @staticmethod
    def forward(
        ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, head_dim: int
    ) -> torch.Tensor:
        return multi_head_attention(q, k, v, num_heads, head_dim)

    @staticmethod
    def symbolic(g: Any, q: Any, k: Any, v: Any, num_heads: int, head_dim: int) -> Any:
        # the op's default scale is 1/sqrt(head_dim), the one multi_head_attention divides by
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=num_heads)
        out.setType(q.type())
        return out


class _ExportedAttention(nn.Module):
    """An :class:`Attention` whose core exports as :class:`FusedAttention`."""

    def __init__(self, attention: Attention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attention
        return a.proj(FusedAttention.apply(*a.project(x), a.num_heads, a.head_dim))


@contextlib.contextmanager
def _fused_attention(encoder: EATEncoder, enabled: bool = True) -> Iterator[None]:
    """Within the block, every block's attention exports as :class:`FusedAttention`."""
    originals = [block.attn for block in encoder.blocks]
    try:
        if enabled:
            for block, attention in zip(encoder.blocks, originals, strict=True):
                block.attn = _ExportedAttention(attention)
        yield
    finally:
        for block, attention in zip(encoder.blocks, originals, strict=True):
            block.attn = attention


def _check_layers(layers: Iterable[int], depth: int) -> tuple[int, ...]:
    chosen = sorted(set(layers))
    bad = [i for i in chosen if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < depth]
    if bad:
        raise ModelError(f"layers must be block indices between 0 and {depth - 1}, got {bad}")
    return tuple(chosen)


def export_depth(layers: Sequence[int], depth: int | None, full: int) -> int:
    """The blocks an export keeps: ``depth``, else one past the deepest of ``layers``, else ``full``.

    Raises :class:`ModelError` for a depth outside ``1..full`` or below a requested layer.
    """
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= full:
            raise ModelError(f"depth must be a number of blocks between 1 and {full}, got {depth!r}")
        _check_layers(layers, depth)
        return depth
    chosen = _check_layers(layers, full)
    return chosen[-1] + 1 if chosen else full


def describe(
    config: EATConfig,
    info: dict[str, Any],
    layers: Sequence[int],
    opset: int,
    source_depth: int | None = None,
) -> dict[str, Any]:
    """The ``frozenasd`` metadata document of an export (see :mod:`frozenasd.embed.encoders.metadata`).

    ``config`` is the exported (possibly truncated) encoder's; ``source_depth`` the checkpoint's depth.
    """
    last = f"after block {config.depth - 1}"
    outputs = {"emb": f"patch tokens {last} (batch, patches, dim)", "cls": f"CLS token {last} (batch, dim)"}
    for i in layers:
        outputs[f"layer_{i}"] = f"output of block {i} (batch, 1 + patches, dim), CLS first"
    return {
        "model": {
            "name": info["model_name"],
            "family": "eat",
            "size": config.size_name,
            "embed_dim": config.embed_dim,
            "depth": config.depth,
            "source_depth": config.depth if source_depth is None else source_depth,
            "num_heads": config.num_heads,
            "table_rows": config.max_positions,
            "source_file": info["source_file"],
            "source_sha256": info["source_sha256"],
            "source_layout": info["layout"],
            "use_ema": bool(info["use_ema"]),
        },
        "frontend": {**EAT_FRONTEND, "max_frames": config.max_frames},
        "input": {"name": "input", "layout": LAYOUT_B3FT},
        "outputs": outputs,
        "token_layout": {name: {"prefix_tokens": int(name != "emb")} for name in outputs if name != "cls"},
        "export": {"opset": opset, "torch": torch.__version__, "frozenasd": __version__},
    }


def _finalize(proto: onnx.ModelProto, description: dict[str, Any]) -> None:
    """Attach the metadata and producer fields to the exported graph (in place)."""
    write_metadata(proto, description)
    proto.producer_name = "frozenasd"
    proto.producer_version = __version__
    proto.doc_string = f"EAT encoder {description['model']['name']} exported by frozenasd"


def _trace(wrapper: SeedInterface, opset: int, fused_attention: bool = True) -> onnx.ModelProto:
    config = wrapper.encoder.config
    frames = 32 if config.max_frames >= 32 else config.patch_size
    dummy = torch.zeros(2, 3, config.num_mel_bins, frames)
    names = wrapper.output_names
    axes = {"input": {0: "batch", 3: "time"}, "emb": {0: "batch", 1: "patches"}, "cls": {0: "batch"}}
    axes.update({name: {0: "batch", 1: "tokens"} for name in names[2:]})
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), _fused_attention(wrapper.encoder, fused_attention):
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        try:
            torch.onnx.export(
                wrapper,
                (dummy,),
                buffer,
                input_names=["input"],
                output_names=names,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:  # e.g. an opset this torch cannot write
            raise ModelError(f"ONNX export at opset {opset} failed: {exc}") from exc
    data = buffer.getvalue()
    buffer.close()  # keep one serialized copy alive, not two (hundreds of MB for EAT-base)
    proto = onnx.load_model_from_string(data)
    del data
    for out in proto.graph.output:  # the exporter leaves the (fixed) width symbolic
        width = out.type.tensor_type.shape.dim[-1]
        width.Clear()
        width.dim_value = config.embed_dim
    return proto


def verify_export(
    path: str | Path,
    wrapper: SeedInterface,
    *,
    frames: Sequence[int] = VERIFY_FRAMES,
    batch: int = VERIFY_BATCH,
    tolerance: float = VERIFY_TOLERANCE,
) -> float:
    """Run ONNX Runtime and PyTorch on the same random inputs; the largest |difference| over outputs.

    Lengths beyond the model's table are clipped to it. Raises :class:`ModelError` above ``tolerance``.
    """
    import onnxruntime as ort

    config = wrapper.encoder.config
    lengths = sorted({min(t, config.max_frames) for t in frames}, reverse=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for t in lengths:
        mel = torch.randn(batch, 1, config.num_mel_bins, t, generator=generator)
        x = mel.expand(-1, 3, -1, -1).contiguous()
        with torch.no_grad():
            expected = [e.numpy() for e in wrapper(x)]
        got = session.run(wrapper.output_names, {"input": x.numpy()})
        for name, e, g in zip(wrapper.output_names, expected, got, strict=True):
            if e.shape != g.shape:
                raise ModelError(f"{path}: output {name} has shape {g.shape} in ONNX, {e.shape} in PyTorch")
            diff = float(np.max(np.abs(e - g)))
            log.debug("verify %s: T=%d %s max|onnx - torch| = %.3g", Path(path).name, t, name, diff)
            worst = max(worst, diff)
    if not worst <= tolerance:
        raise ModelError(
            f"{path}: ONNX Runtime output differs from PyTorch by {worst:.3g} (> {tolerance:g}) "
            f"at lengths {lengths}; the export is wrong"
        )
    return worst


def _check_input(config: EATConfig, batch: int = 2, frames: int = 512) -> dict[str, np.ndarray]:
    """A fixed random seed-interface input for comparing an int8 graph with its fp32 one."""
    t = min(frames, config.max_frames)
    mel = np.random.default_rng(0).standard_normal((batch, 1, config.num_mel_bins, t)).astype(np.float32)
    return {"input": np.repeat(mel, 3, axis=1)}


def export_onnx(
    checkpoint: str | Path,
    output: str | Path = "eat_base_export.onnx",
    *,
    use_ema: bool = False,
    opset: int = MIN_OPSET,
    verify: bool = True,
    layers: Iterable[int] = (),
    max_frames: int | None = None,
    depth: int | None = None,
    fused_attention: bool = True,
    int8: bool = False,
) -> Path:
    """Export an EAT checkpoint (any layout :func:`load_eat_checkpoint` reads) to one ONNX file.

    ``layers`` adds ``layer_<i>`` outputs (block outputs, 0-based). ``max_frames`` (a multiple of 16)
    keeps only the position rows that length needs (default: the whole table, 12288 frames for 6144
    rows). ``depth`` keeps only the first blocks (default: all, or with ``layers`` up to the deepest
    one asked for; ``emb`` and ``cls`` are the last kept block's tokens). ``int8`` writes the
    dynamically quantised model instead (:mod:`frozenasd.backbones.quantise`; the fp32 graph is
    verified first, and the int8 one's pooled-embedding cosine to it is recorded). With ``verify``
    the written file is run in ONNX Runtime against PyTorch at T=1024 and T=512 (batch 2), raising
    :class:`ModelError` if the outputs differ by more than 1e-3. ``fused_attention=False`` writes the
    attention as standard ONNX operators (MatMul, Softmax, ...) instead of ONNX Runtime's
    ``MultiHeadAttention``, for runtimes other than ONNX Runtime (about 5 % slower in ONNX Runtime).
    Returns the output path.
    """
    if opset < MIN_OPSET:
        raise ModelError(f"opset {opset} is too old: LayerNormalization needs opset >= {MIN_OPSET}")
    state, config, info = load_eat_checkpoint(checkpoint, use_ema=use_ema)
    encoder = EATEncoder(config)
    encoder.load_state_dict(state, strict=True, assign=True)
    del state
    layers = tuple(layers)
    source_depth = config.depth
    kept = export_depth(layers, depth, source_depth)
    encoder.eval().truncate(depth=kept, max_frames=max_frames)
    wrapper = SeedInterface(encoder, _check_layers(layers, encoder.config.depth)).eval()

    proto = _trace(wrapper, opset, fused_attention)
    _finalize(proto, describe(encoder.config, info, wrapper.layers, opset, source_depth))
    onnx.checker.check_model(proto)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        onnx.save_model(proto, str(partial))
        del proto
        if verify:  # check the file as written; a file that fails never takes the output's name
            diff = verify_export(partial, wrapper)
            log.info("verified %s: max|onnx - torch| = %.3g", output, diff)
        if int8:
            from frozenasd.backbones.quantise import quantise_file

            quantised = output.with_name(output.name + ".int8.partial")
            try:
                quantise_file(partial, quantised, check=_check_input(encoder.config))
                os.replace(quantised, output)
            finally:
                quantised.unlink(missing_ok=True)
        else:
            os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    log.info(
        "wrote %s (%s, depth %d of %d, dim %d%s)",
        output,
        info["model_name"],
        encoder.config.depth,
        source_depth,
        config.embed_dim,
        ", int8" if int8 else "",
    )
    return output
