"""A numpy forward pass of YAMNet in float64 on the shipped 8-bit weights, as a CPU-independent reference.

YAMNet is MobileNet-v1: a 3x3 convolution, then 13 depthwise-separable blocks (3x3 depthwise and 1x1
pointwise convolutions, each followed by ReLU), TensorFlow 'SAME' padding, global average pooling to
the 1024-d embedding and a linear layer to the 521 AudioSet logits. The shipped ONNX graph stores
each weight with its quantisation (QuantizeLinear → DequantizeLinear); here every weight is taken as
``scale * (q - zero_point)`` and the activations stay float, so no integer kernel is involved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (stride, output channels) of YAMNet's layers: the full convolution first, then the separable blocks.
LAYERS = [(2, 32), (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)]
LAYERS += [(1, 512)] * 5 + [(2, 1024), (1, 1024)]


def _dequantised(name: str, producer: dict, inits: dict) -> np.ndarray:
    """``scale * (q - zero_point)``: the weight that DequantizeLinear(QuantizeLinear(w)) feeds as ``name``."""
    from onnx import helper

    dq = producer[name]
    q = producer[dq.input[0]]
    assert dq.op_type == "DequantizeLinear" and q.op_type == "QuantizeLinear", (dq.op_type, q.op_type)
    w, scale, zero = (inits[i] for i in q.input)
    axis = next((helper.get_attribute_value(a) for a in q.attribute if a.name == "axis"), 1)
    shape = [1] * w.ndim
    if scale.ndim:
        shape[axis] = -1
    scale = scale.astype(np.float64).reshape(shape)
    zero_f = zero.astype(np.float64).reshape(shape)
    info = np.iinfo(zero.dtype)
    quantised = np.clip(np.round(w / scale) + zero_f, info.min, info.max)
    return (quantised - zero_f) * scale


Layer = tuple[np.ndarray, np.ndarray]  # (weight, bias)


def shipped_weights(onnx_path: Path) -> tuple[list[Layer], Layer]:
    """The convolutions' (weight, bias) in graph order and the classifier's (weight, bias), dequantised."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    convs = [
        (_dequantised(n.input[1], producer, inits), inits[n.input[2]].astype(np.float64))
        for n in graph.node
        if n.op_type == "Conv"
    ]
    gemm = [n for n in graph.node if n.op_type == "Gemm"]
    assert len(convs) == 1 + 2 * (len(LAYERS) - 1) and len(gemm) == 1
    weight, bias = gemm[0].input[1:3]
    return convs, (_dequantised(weight, producer, inits), inits[bias].astype(np.float64))


def _same_padded(x: np.ndarray, stride: int) -> tuple[np.ndarray, int, int]:
    """``x`` (batch, h, w, c) padded for a 3x3 window as TensorFlow's 'SAME' does, and the output size."""
    pads = []
    for n in x.shape[1:3]:
        total = max(3 - (stride if n % stride == 0 else n % stride), 0)
        pads.append((total // 2, total - total // 2))
    out_h, out_w = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    return np.pad(x, [(0, 0), *pads, (0, 0)]), out_h, out_w


def _taps(x: np.ndarray, stride: int):
    """The nine shifted views of a 3x3 window: ``(i, j, view)`` with view (batch, out_h, out_w, c)."""
    padded, out_h, out_w = _same_padded(x, stride)
    for i in range(3):
        for j in range(3):
            yield i, j, padded[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride]


def _matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` over the last axis of ``x``, as one 2-D product (a stacked product is far slower)."""
    return (np.ascontiguousarray(x).reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def forward(convs: list[Layer], classifier: Layer, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (n, 1024) and logits (n, 521) of log-mel patches (n, 1, 96, 64), in float64."""
    x = patches.astype(np.float64).transpose(0, 2, 3, 1)  # channels last
    (w, b), rest = convs[0], iter(convs[1:])
    x = sum(_matmul(view, w[:, :, i, j].T) for i, j, view in _taps(x, LAYERS[0][0]))
    x = np.maximum(x + b, 0.0)
    for stride, channels in LAYERS[1:]:
        w, b = next(rest)  # depthwise (c, 1, 3, 3)
        x = np.maximum(sum(view * w[:, 0, i, j] for i, j, view in _taps(x, stride)) + b, 0.0)
        w, b = next(rest)  # pointwise (out, c, 1, 1)
        assert w.shape == (channels, x.shape[-1], 1, 1), w.shape
        x = np.maximum(_matmul(x, w[:, :, 0, 0].T) + b, 0.0)
    emb = x.mean(axis=(1, 2))
    return emb, emb @ classifier[0].T + classifier[1]
