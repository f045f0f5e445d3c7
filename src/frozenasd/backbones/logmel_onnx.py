"""The ``logmel`` view's ONNX graph: no weights, the frontend's frames passed through as tokens.

It lets the no-model view go through the same extractor, pooling, cache and fitted files as the
encoders: input ``(batch, frames, 131)`` → ``emb`` ``(batch, frames, 131)`` (see
:mod:`frozenasd.embed.frontends.logmel`).
"""

from __future__ import annotations

from typing import Any

from frozenasd.backbones.onnx_io import _make_model
from frozenasd.embed.frontends import get_frontend


def _build_logmel() -> Any:
    """An Identity graph over the logmel frontend's frames."""
    from onnx import TensorProto, helper

    params = get_frontend("logmel").defaults
    width = params["num_mel_bins"] + params["level_dims"]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["emb"])],
        "logmel_frames",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "frames", width])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", "frames", width])],
    )
    return _make_model(graph)
