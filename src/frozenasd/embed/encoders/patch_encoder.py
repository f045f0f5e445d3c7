"""A small non-learned ONNX patch encoder with the EAT export's interface.

It cuts the log-mel input into EAT's 16 × 16 patches and projects each patch with fixed random
filters followed by tanh. It is no pre-trained model: it exists so that the pipeline, the tests and a
smoke run can work end to end on a machine where no encoder has been exported yet.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from frozenasd.embed.encoders.metadata import encode_metadata
from frozenasd.embed.frontends import EAT_FRONTEND, LAYOUT_B1TF, LAYOUT_B3FT

PATCH = 16


def build_patch_encoder(
    path: str | os.PathLike,
    *,
    embed_dim: int = 32,
    seed: int = 0,
    layout: str = LAYOUT_B3FT,
    num_mel_bins: int = 128,
    sample_rate: int = 16000,
    max_frames: int = EAT_FRONTEND["max_frames"],
    with_metadata: bool = True,
    opset: int = 17,
) -> Path:
    """Write the encoder to ``path``: outputs ``emb`` (batch, patches, dim) and ``cls`` (batch, dim)."""
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((embed_dim, 1, PATCH, PATCH)) / PATCH).astype(np.float32)
    bias = (0.1 * rng.standard_normal(embed_dim)).astype(np.float32)
    inits = [
        numpy_helper.from_array(weight, "patch_weight"),
        numpy_helper.from_array(bias, "patch_bias"),
        numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "flat_shape"),
    ]
    nodes = []
    if layout == LAYOUT_B3FT:
        # (B, 3, mel, T): keep channel 0 and move time before mel, as EAT's own layout has it.
        input_shape = ["batch", 3, num_mel_bins, "time"]
        inits += [
            numpy_helper.from_array(np.array([0], dtype=np.int64), "c0"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "c1"),
        ]
        nodes += [
            helper.make_node("Slice", ["input", "c0", "c1", "c1"], ["mel_first"]),
            helper.make_node("Transpose", ["mel_first"], ["x"], perm=[0, 1, 3, 2]),
        ]
    elif layout == LAYOUT_B1TF:
        input_shape = ["batch", 1, "time", num_mel_bins]
        nodes.append(helper.make_node("Identity", ["input"], ["x"]))
    else:
        raise ValueError(f"unknown layout {layout!r}")
    nodes += [
        helper.make_node(
            "Conv",
            ["x", "patch_weight", "patch_bias"],
            ["conv"],
            kernel_shape=[PATCH, PATCH],
            strides=[PATCH, PATCH],
        ),
        helper.make_node("Tanh", ["conv"], ["act"]),
        helper.make_node("Reshape", ["act", "flat_shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["emb"], perm=[0, 2, 1]),
        helper.make_node("ReduceMean", ["emb"], ["cls"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "patch_encoder",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", "patches", embed_dim]),
            helper.make_tensor_value_info("cls", TensorProto.FLOAT, ["batch", embed_dim]),
        ],
        initializer=inits,
    )
    # ReduceMean takes ``axes`` as an attribute up to opset 17.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", min(opset, 17))])
    model.ir_version = 8
    if with_metadata:
        description = {
            "model": {
                "name": "patch-encoder",
                "family": "patch_encoder",
                "size": "tiny",
                "embed_dim": embed_dim,
                "seed": seed,
            },
            "frontend": dict(
                EAT_FRONTEND, num_mel_bins=num_mel_bins, sample_rate=sample_rate, max_frames=max_frames
            ),
            "input": {"name": "input", "layout": layout},
            "outputs": {"emb": "patch tokens (batch, patches, dim)", "cls": "mean token (batch, dim)"},
        }
        onnx.helper.set_model_props(model, encode_metadata(description))
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
