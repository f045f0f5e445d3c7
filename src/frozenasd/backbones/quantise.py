"""int8 encoders: ONNX Runtime's quantisation of an fp32 ONNX file, described in its metadata.

Two schemes, each where it measured fastest (``benchmarks/quantisation.py``), and a third way for a
backbone published in 8 bits (YAMNet: its own activation scales kept, :mod:`frozenasd.backbones.yamnet_onnx`):

- **dynamic** (``onnxruntime.quantization.quantize_dynamic``), for EAT: the weights of the matrix
  products are stored as 8-bit integers with one scale per output channel; each call quantises its
  activations to uint8 on the fly, so no calibration data is needed. A static QDQ EAT model was slower
  than fp32 (only half its MatMuls fused).
- **static** QDQ (``quantize_static``), for the CNNs (aiSFX, YAMNet): ONNX Runtime's dynamic
  convolution (``ConvInteger``) is 5-10 times *slower* than fp32 and a matrix-product-only model
  changes nothing, while static ``QLinearConv`` is faster. Activation ranges come from calibration
  inputs: the backbone's frontend applied to synthetic machine sounds rendered in memory (seeded,
  not the demo's clips).

Why ``QInt8`` weights with ``reduce_range`` (7-bit weights): on x86 CPUs without VNNI, ONNX Runtime
computes u8 × s8 products with ``VPMADDUBSW``, whose 16-bit pair sums can saturate (ONNX Runtime's
quantisation guide: "When and why do I need to try U8U8?"); with weights in [-64, 63] a pair sum
stays below 2¹⁵, so the integer products are the same on every x86 CPU kind
(``tests/test_int8_cpu_kinds.py`` runs the kernels of other kinds beside this CPU's and compares them
bit for bit; a whole model's outputs still differ a little between kinds, as the float operators'
rounding moves a few activations to the neighbouring 8-bit step).
``QUInt8`` weights (the U8U8 kernels) avoid saturation too but run slower, and full-range ``QInt8``
saturates without VNNI. ``benchmarks/quantisation.py`` measures the three per CPU kind.

The quantised file keeps the fp32 file's ``frozenasd`` metadata and adds ``model.precision: "int8"``,
``model.fp32_sha256`` (the file it was made from) and a ``quantisation`` entry (scheme, weight type,
the operators quantised, and, when a check input is given, the pooled-output cosine to the fp32
model on it). Its bytes differ from the fp32 file's, so its sha256, and with it every embedding
cache key and fitted model's encoder identity, differ too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.embed.encoders.metadata import decode_metadata, write_metadata
from frozenasd.errors import ModelError
from frozenasd.hashing import file_sha256

log = logging.getLogger(__name__)

WEIGHT_TYPES = ("QInt8", "QUInt8")
DEFAULT_WEIGHT_TYPE = "QInt8"
DEFAULT_REDUCE_RANGE = True  # no u8 × s8 saturation on CPUs without VNNI; see the module docstring
DEFAULT_PER_CHANNEL = True
# Dynamic ConvInteger is slower than fp32 convolution: convolutions (EAT's patch embedding) stay fp32.
DEFAULT_OP_TYPES = ("MatMul", "Gemm")
WARN_COSINE = 0.99
STATIC_METHOD = "onnxruntime.quantization.quantize_static (QDQ)"


class _NoPreprocessAdvice(logging.Filter):
    """Drops the quantiser's advice to pre-process the graph (ONNX Runtime optimises it at load)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return (
            "pre-processing before quantization" not in message
            and "is out-of-range for weight" not in message
        )


@contextlib.contextmanager
def _quiet_quantiser() -> Iterator[None]:
    root = logging.getLogger()
    advice = _NoPreprocessAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantise_model(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    weight_type: str = DEFAULT_WEIGHT_TYPE,
    per_channel: bool = DEFAULT_PER_CHANNEL,
    reduce_range: bool = DEFAULT_REDUCE_RANGE,
    op_types: Sequence[str] = DEFAULT_OP_TYPES,
) -> dict[str, Any]:
    """Write the dynamically quantised ``source`` to ``target`` (metadata copied unchanged).

    Returns what was done, as the ``quantisation`` metadata entry records it. Raises
    :class:`ModelError` naming ``source`` when ONNX Runtime cannot quantise it.
    """
    from onnxruntime import __version__ as ort_version
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if weight_type not in WEIGHT_TYPES:
        raise ModelError(f"weight_type must be one of {WEIGHT_TYPES}, got {weight_type!r}")
    source, target = Path(source), Path(target)
    try:
        with _quiet_quantiser():
            quantize_dynamic(
                source,
                target,
                op_types_to_quantize=list(op_types),
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=getattr(QuantType, weight_type),
            )
    except Exception as exc:  # the quantiser raises many types for graphs it cannot handle
        raise ModelError(
            f"{source}: ONNX Runtime could not quantise it ({type(exc).__name__}: {exc})"
        ) from exc
    return {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weights": weight_type,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "activations": "QUInt8, quantised per call",
        "op_types": list(op_types),
        "onnxruntime": ort_version,
    }


def quantise_static_model(
    source: str | os.PathLike,
    target: str | os.PathLike,
    calibration: Sequence[Mapping[str, np.ndarray]],
    *,
    per_channel: bool = DEFAULT_PER_CHANNEL,
    reduce_range: bool = DEFAULT_REDUCE_RANGE,
) -> dict[str, Any]:
    """Write the static QDQ int8 version of ``source`` to ``target``, its activation ranges measured on
    the ``calibration`` inputs (model-input dicts). Returns the ``quantisation`` metadata entry."""
    from onnxruntime import __version__ as ort_version
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ModelError(f"{source}: static quantisation needs calibration inputs")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return dict(next(self._items, None) or {}) or None

    from onnxruntime.quantization.shape_inference import quant_pre_process

    # ONNX Runtime's graph optimisations first (BatchNorm folded into the convolutions), so that the
    # quantised convolutions fuse into QLinearConv: 2.4x faster than fp32 for aiSFX, 1.1x without
    source, target = Path(source), Path(target)
    optimised = target.with_name(target.name + ".optimised.onnx")
    try:
        with _quiet_quantiser():
            quant_pre_process(str(source), str(optimised), skip_optimization=False)
            quantize_static(
                optimised,
                target,
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    except Exception as exc:  # the quantiser raises many types for graphs it cannot handle
        raise ModelError(
            f"{source}: ONNX Runtime could not quantise it ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        optimised.unlink(missing_ok=True)
    return {
        "method": STATIC_METHOD,
        "weights": "QInt8",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "activations": "QUInt8, ranges calibrated",
        "preprocessed": "quant_pre_process (ONNX Runtime's optimisations, shape inference)",
        "calibration_inputs": int(sum(len(next(iter(c.values()))) for c in calibration)),
        "onnxruntime": ort_version,
    }


CALIBRATION_SEED = 20240  # not the demo's seed: the calibration clips are none of the demo's
CALIBRATION_CLIPS = 2  # per synthetic machine


def calibration_inputs(
    fp32: str | os.PathLike, clips: int = CALIBRATION_CLIPS
) -> list[dict[str, np.ndarray]]:
    """Model inputs for static calibration: the model's frontend applied to synthetic normal clips of
    every synthetic machine (rendered in memory at the frontend's rate), one batch per clip."""
    from frozenasd.data.synth import MACHINES
    from frozenasd.data.synth.dataset import normal_wave
    from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
    from frozenasd.embed.frontends import get_frontend

    extractor = ONNXFeatureExtractor(fp32, num_threads=1).fit()
    frontend = get_frontend(extractor.frontend_["name"])
    rate = int(extractor.frontend_["sample_rate"])
    batches = []
    for machine in MACHINES:
        for index in range(clips):
            wave = normal_wave(machine, index, seed=CALIBRATION_SEED, sample_rate=rate)
            examples = frontend.examples(extractor.features(wave, rate))
            batches.append({extractor.input_name_: frontend.model_input(examples, extractor.layout_)})
    return batches


def pooled_cosine(
    fp32: str | os.PathLike, int8: str | os.PathLike, inputs: Mapping[str, np.ndarray]
) -> float:
    """The smallest cosine, over the examples of ``inputs``, between the two models' first outputs,
    each averaged over its tokens when it has them (``(batch, tokens, dim)``)."""
    import onnxruntime as ort

    outs = []
    for path in (fp32, int8):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        first = session.get_outputs()[0].name
        out = np.asarray(session.run([first], dict(inputs))[0], dtype=np.float64)
        outs.append(out.reshape(len(out), -1, out.shape[-1]).mean(axis=1))
    a, b = outs
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
    return float(cos.min())


def quantise_file(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    check: Mapping[str, np.ndarray] | None = None,
    calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
    write: Callable[[Path], dict[str, Any]] | None = None,
    **options: Any,
) -> Path:
    """The int8 version of the fp32 encoder ``source``, written to ``target`` (atomically).

    Dynamic quantisation (:func:`quantise_model`, ``options`` are its), static QDQ
    (:func:`quantise_static_model`) when ``calibration`` inputs are given, or ``write``'s model: it
    writes an int8 model made otherwise to the path it is given and returns the ``quantisation``
    entry (a backbone published in 8 bits, say). ``check``: an input on
    which both models are run; the smallest pooled-output cosine between them is recorded in the
    metadata (and logged as a warning below 0.99). A source that is already int8 is refused.
    """
    import onnx

    source, target = Path(source), Path(target)
    description = _description(source)
    if (description.get("model") or {}).get("precision") == "int8":
        raise ModelError(f"{source}: already an int8 model; quantise its fp32 file instead")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name, suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if write is not None:
            done = write(tmp)
        elif calibration is not None:
            done = quantise_static_model(source, tmp, calibration, **options)
        else:
            done = quantise_model(source, tmp, **options)
        if check is not None:
            done["check_cosine"] = round(pooled_cosine(source, tmp, check), 6)
            if done["check_cosine"] < WARN_COSINE:
                log.warning(
                    "%s: the int8 model's pooled output has cosine %.4f to the fp32 one on the check input",
                    target,
                    done["check_cosine"],
                )
        model = onnx.load(str(tmp))
        description["model"] = {
            **(description.get("model") or {}),
            "precision": "int8",
            "fp32_sha256": file_sha256(source),
        }
        description["quantisation"] = done
        description.pop("schema", None)
        write_metadata(model, description)
        model.doc_string = (model.doc_string + " (int8)").strip()
        onnx.save_model(model, str(tmp))
        del model
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (int8 of %s)", target, source.name)
    return target


def _description(path: Path) -> dict[str, Any]:
    """The ``frozenasd`` metadata of an ONNX file (empty when it has none)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several types for a broken file
        raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from exc
    try:
        return decode_metadata({p.key: p.value for p in model.metadata_props}) or {}
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}") from exc


def precision(description: Mapping[str, Any] | None) -> str:
    """``"int8"`` for a file this module wrote, else ``"fp32"``."""
    return str(((description or {}).get("model") or {}).get("precision", "fp32"))
