"""The accuracy harness (benchmarks/accuracy.py): named data sets, generic configurations, the full table."""

from __future__ import annotations

import importlib
import json
import shlex
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from conftest import write_tiny_dataset

from frozenasd.workflows.run import run

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("accuracy")


def table_rows(markdown: str) -> list[dict[str, str]]:
    """The summary table of the section as one dict per row, keyed by the header."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| configuration |"))
    header = [h.strip() for h in lines[start].strip("|").split(" | ")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().removeprefix("| ").removesuffix(" |").split(" | ")]
        assert len(cells) == len(header), line
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def test_data_sets_are_named_or_named_after_their_folder(harness: ModuleType, tmp_path: Path) -> None:
    assert harness.data_spec("real=../shared/realdata") == ("real", Path("../shared/realdata"))
    folder = tmp_path / "odd=name"
    folder.mkdir()
    assert harness.data_spec(str(folder)) == ("odd=name", folder)  # an existing folder wins
    assert harness.data_spec(str(tmp_path / "data")) == ("data", tmp_path / "data")


def test_configurations_are_parsed_by_the_run_command(harness: ModuleType, patch_encoder: Path) -> None:
    assert harness.config_spec("max=--model aisfx --pooling max") == (
        "max",
        ["--model", "aisfx", "--pooling", "max"],
    )
    assert harness.config_spec("--model a=b.onnx") == (None, ["--model", "a=b.onnx"])
    config = harness.make_config(
        "c", ["--model", str(patch_encoder), "--detector", "mahalanobis", "--seed", "7"], []
    )
    assert config.error is None
    assert (config.settings.detector, config.settings.random_state) == ("mahalanobis", 7)
    assert config.settings.model_path == patch_encoder
    bad = harness.make_config("bad", ["--model", str(patch_encoder), "--no-such-option", "1"], [])
    assert bad.settings is None and "--no-such-option" in bad.error


def test_grids_expand_to_their_product(harness: ModuleType) -> None:
    axes = [harness.grid_axis("--model a b"), harness.grid_axis("--detector knn mahalanobis")]
    assert harness.expand_grid(axes) == [
        ("a · knn", ["--model", "a", "--detector", "knn"]),
        ("a · mahalanobis", ["--model", "a", "--detector", "mahalanobis"]),
        ("b · knn", ["--model", "b", "--detector", "knn"]),
        ("b · mahalanobis", ["--model", "b", "--detector", "mahalanobis"]),
    ]
    assert harness.expand_grid([harness.grid_axis("--pooling max --seed 1 | --pooling mean")]) == [
        ("--pooling max --seed 1", ["--pooling", "max", "--seed", "1"]),
        ("--pooling mean", ["--pooling", "mean"]),
    ]
    with pytest.raises(Exception, match="option and its values"):
        harness.grid_axis("--detector")
    assert harness.legacy_grid(["m.onnx"], ["cls"], ["knn"]) == [
        (
            "m.onnx · cls · knn",
            ["--model", "m.onnx", "--encoder-output", "cls", "--pooling", "none", "--detector", "knn"],
        )
    ]


def test_every_configuration_on_every_data_set_with_the_worst_machine(
    harness: ModuleType, patch_encoder: Path, tmp_path: Path
) -> None:
    one = write_tiny_dataset(tmp_path / "one", "fan")
    two = write_tiny_dataset(tmp_path / "two", "valve", seed=1)
    write_tiny_dataset(two, "pump", seed=2)
    model = shlex.quote(str(patch_encoder))
    out, work = tmp_path / "accuracy.md", tmp_path / "work"
    argv = [
        "--data", f"one={one}", "--data", f"two={two}",
        "--grid", f"--model {model}", "--detector knn mahalanobis",
        "--config", f"bad option=--model {model} --pooling no-such-pooling",
        "--config", f"no model=--model {shlex.quote(str(tmp_path / 'missing.onnx'))}",
        "--encoder", str(patch_encoder), "--detector", "knn-euclidean",
        "--out", str(out), "--work", str(work), "--json", str(tmp_path / "accuracy.json"),
    ]  # fmt: skip
    assert harness.main(argv) == 0
    text = out.read_text()
    rows = {r["configuration"].removeprefix("**").split("**")[0]: r for r in table_rows(text)}
    grid = [f"{patch_encoder} · knn", f"{patch_encoder} · mahalanobis"]
    legacy = f"{patch_encoder} · mean · knn-euclidean"
    assert list(rows) == ["bad option", "no model", *grid, legacy]

    machines = {"one": ["fan"], "two": ["pump", "valve"]}
    worst = {}
    for name in [*grid, legacy]:
        row = rows[name]
        values = {f"{d}/{m}": float(row[f"{d}: {m}"]) for d, ms in machines.items() for m in ms}
        lowest = min(values, key=values.get)
        assert row["worst machine %"] == f"{values[lowest]:.2f} ({lowest})"
        worst[name] = values[lowest]
        assert float(row["one: official score %"]) == values["one/fan"]  # one machine: its own hmean
    best = max(worst.values())
    for name in [*grid, legacy]:
        assert ("★" in rows[name]["configuration"]) == (worst[name] == best), name

    assert "invalid choice" in rows["bad option"]["one: official score %"]
    assert "no-such-pooling" in rows["bad option"]["two: official score %"]
    assert rows["bad option"]["worst machine %"] == "n/a"
    assert rows["no model"]["one: official score %"].startswith("failed: ")
    assert "missing.onnx" in rows["no model"]["two: official score %"]

    # One cache serves the whole harness run: the three working configurations embed alike, so once.
    assert len([p for p in (work / "cache").iterdir() if p.is_dir()]) == 1

    # The numbers are those of `frozenasd run` with the same options.
    config = harness.make_config("again", ["--model", str(patch_encoder), "--detector", "knn"], [])
    config.settings.cache_dir, config.settings.progress = None, False
    results = run(two, None, tmp_path / "again", config.settings).metrics
    assert rows[grid[0]]["two: valve"] == f"{100 * results['valve']['hmean']:.2f}"
    assert "<details>" in text and "| harmonic mean |" in text
    saved = {c["name"]: c for c in json.loads((tmp_path / "accuracy.json").read_text())["configs"]}
    assert saved[grid[0]]["data"]["two"]["hmean"]["valve"] == pytest.approx(results["valve"]["hmean"])
    assert saved[legacy]["worst"]["hmean"] == pytest.approx(worst[legacy] / 100, abs=5e-5)
    assert (
        saved["bad option"]["worst"] is None
        and "no-such-pooling" in saved["bad option"]["data"]["one"]["error"]
    )


def test_a_data_set_that_is_not_one_is_named(
    harness: ModuleType, tmp_path: Path, patch_encoder: Path, monkeypatch
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    with pytest.raises(SystemExit, match="'empty'"):
        harness.main(
            ["--data", f"empty={tmp_path}", "--grid", "--detector knn", "--out", str(tmp_path / "o.md")]
        )
    assert not list(temporary.iterdir())  # the default work folder is removed, also after a failure


def test_eat_depth_and_int8_rows_are_ready(harness: ModuleType, tmp_path: Path, monkeypatch) -> None:
    """--eat-variants: EAT-base at 4/6/8/12 blocks, fp32 and int8; without the exports each row fails
    naming the command that makes its file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FROZENASD_CACHE", str(tmp_path / "cache"))
    args = harness.build_parser().parse_args(["--data", str(tmp_path), "--eat-variants"])
    configs = harness.build_configs(args, ["--no-progress"])
    assert [c.name.split()[0] for c in configs] == [
        "eat-base-d4", "eat-base-d4-int8", "eat-base-d6", "eat-base-d6-int8",
        "eat-base-d8", "eat-base-d8-int8", "eat-base", "eat-base-int8",
    ]  # fmt: skip
    assert all(c.options[-2:] == ["--detector", "mahalanobis"] for c in configs)
    errors = {c.name.split()[0]: c.error for c in configs}
    assert "frozenasd download eat-base --depth 6 --int8" in errors["eat-base-d6-int8"]
    assert "frozenasd download eat-base`" in errors["eat-base"]
