"""The aiSFX embedding network as an ONNX graph, built from the packaged ``torch.save`` checkpoint.

The checkpoint is read as data by :mod:`frozenasd.safe_pickle`, the restricted ``torch.save`` reader
the EAT exporter uses too (no PyTorch, no code run); the graph is 4 conv blocks, a mean over frequency
and a max over time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.backbones.onnx_io import _make_model
from frozenasd.embed.frontends import get_frontend
from frozenasd.errors import ModelError

_AISFX_CHANNELS = (1, 64, 128, 256, 512)


def _aisfx_state(path: Path) -> dict[str, np.ndarray]:
    """The embedding network's tensors from the checkpoint ``(state_dict, datasets)``, read as data."""
    from frozenasd.safe_pickle import load_torch_file

    loaded = load_torch_file(path)
    state = loaded[0] if isinstance(loaded, tuple) and loaded else loaded
    if not isinstance(state, Mapping):
        raise ModelError(f"{path}: not an aiSFX checkpoint (no state dict)")
    prefix = "embedding_net."
    return {
        k[len(prefix) :]: np.asarray(v)
        for k, v in state.items()
        if isinstance(k, str) and k.startswith(prefix)
    }


def _build_aisfx(path: Path) -> Any:
    """ONNX graph of the aiSFX embedding network: input (batch, 100, 96) → ``emb`` (batch, 512)."""
    from onnx import TensorProto, helper, numpy_helper

    state = _aisfx_state(path)
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "channel_axis")]
    nodes = [helper.make_node("Unsqueeze", ["input", "channel_axis"], ["x0"])]
    x = "x0"
    for block in range(1, 5):
        for conv in (1, 2):
            key = f"conv_block{block}"
            c_in, c_out = (
                _AISFX_CHANNELS[block - 1] if conv == 1 else _AISFX_CHANNELS[block],
                _AISFX_CHANNELS[block],
            )
            weight = _tensor(state, f"{key}.conv{conv}.weight", (c_out, c_in, 3, 3), path)
            names = [f"{key}.conv{conv}.weight"]
            inits.append(numpy_helper.from_array(weight, names[0]))
            for part in ("weight", "bias", "running_mean", "running_var"):
                name = f"{key}.bn{conv}.{part}"
                inits.append(numpy_helper.from_array(_tensor(state, name, (c_out,), path), name))
                names.append(name)
            conv_out, bn_out, x_next = f"{key}_conv{conv}", f"{key}_bn{conv}", f"{key}_relu{conv}"
            nodes += [
                helper.make_node("Conv", [x, names[0]], [conv_out], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                helper.make_node("BatchNormalization", [conv_out, *names[1:]], [bn_out], epsilon=1e-5),
                helper.make_node("Relu", [bn_out], [x_next]),
            ]
            x = x_next
        if block < 4:  # the last block pools with a 1 x 1 window: no pooling
            nodes.append(
                helper.make_node("MaxPool", [x], [f"pool{block}"], kernel_shape=[2, 2], strides=[2, 2])
            )
            x = f"pool{block}"
    nodes += [
        helper.make_node("ReduceMean", [x], ["freq_mean"], axes=[3], keepdims=0),
        helper.make_node("ReduceMax", ["freq_mean"], ["emb"], axes=[2], keepdims=0),
    ]
    params = get_frontend("aisfx_mel").defaults
    graph = helper.make_graph(
        nodes,
        "aisfx_embedding",
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, ["batch", params["block_frames"], params["mel_bands"]]
            )
        ],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", _AISFX_CHANNELS[-1]])],
        initializer=inits,
    )
    return _make_model(graph)


def _tensor(state: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    value = state.get(name)
    if value is None or tuple(value.shape) != shape:
        got = "missing" if value is None else f"shape {tuple(value.shape)}"
        raise ModelError(f"{path}: aiSFX tensor {name!r} is {got}; expected shape {shape}")
    return np.ascontiguousarray(value, dtype=np.float32)
