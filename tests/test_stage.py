"""The embedding stage's executor seam, and what a run returns: each machine's report and the summary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import frozenasd.workflows.run as run_workflow
from frozenasd.cli import main
from frozenasd.embed import Embedded, LocalExecutor, Views
from frozenasd.report import MachineReport
from frozenasd.settings import RunSettings
from frozenasd.workflows.run import RunResult, run


class Recording:
    """An executor that embeds through another and records what it was asked."""

    def __init__(self) -> None:
        self.inner = LocalExecutor()
        self.calls: list[tuple[str, int, bool]] = []

    def embed(self, extractor, clips, **kwargs) -> Embedded:
        self.calls.append((kwargs["desc"], len(clips), kwargs.get("cache") is not None))
        return self.inner.embed(extractor, clips, **kwargs)


def settings_for(model: Path, cache: Path | None) -> RunSettings:
    return RunSettings(model_path=model, progress=False, cache_dir=cache)


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, the report's time of writing and the cache's folder left out."""
    found = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    found["report.html"] = re.sub(rb"generated [^<]*? UTC", b"", found["report.html"])
    return found


def test_a_run_embeds_through_the_executor_given_and_writes_what_the_local_one_writes(
    tiny_dataset, patch_encoder, tmp_path
):
    plain = run(tiny_dataset, ["fan"], tmp_path / "a", settings_for(patch_encoder, None))
    executor = Recording()
    seamed = run(tiny_dataset, ["fan"], tmp_path / "b", settings_for(patch_encoder, None), executor=executor)
    # train and test of the one view, every clip of each (the unusable ones included) asked for
    assert executor.calls == [("fan train", 21, False), ("fan test", 41, False)]
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    assert seamed.summary == plain.summary


def test_views_keep_their_executor_and_lose_only_the_cache(patch_encoder, tmp_path):
    executor = Recording()
    views = Views.open(settings_for(patch_encoder, tmp_path / "cache"), executor)
    assert views.executor is executor and views.caches[0] is not None
    bare = views.without_cache()
    assert bare.executor is executor and bare.caches == [None] and bare.extractors == views.extractors
    assert isinstance(Views.open(settings_for(patch_encoder, None)).executor, LocalExecutor)


def test_run_returns_each_machine_report_and_the_summary_it_wrote(tiny_dataset, patch_encoder, tmp_path):
    data = tmp_path / "data"
    (data / "empty" / "train").mkdir(parents=True)
    (data / "empty" / "test").mkdir()
    (data / "fan").symlink_to(tiny_dataset / "fan")
    out = tmp_path / "out"
    result = run(data, ["fan", "empty"], out, settings_for(patch_encoder, None))

    assert isinstance(result, RunResult) and list(result.machines) == ["fan", "empty"]
    assert result.summary == (out / "summary.md").read_text(encoding="utf-8")
    assert "- empty: not scored: " in result.summary and result.failed == {"empty": result.machines["empty"]}
    fan = result.machines["fan"]
    assert isinstance(fan, MachineReport) and result.reports == [fan]
    # the metrics are the metrics: the threshold and the clips left out are the report's own fields
    assert not {"threshold", "unscored_test_clips", "not_in_submission"} & set(fan.metrics)
    assert result.metrics == {"fan": fan.metrics, "empty": result.machines["empty"]}
    assert [Path(p).name for p in fan.unscored] == ["section_00_source_test_normal_9999_noAttribute.wav"]
    assert fan.not_in_submission == []
    # run.json records them beside the metrics, as before
    record = json.loads((out / "results_fan" / "run.json").read_text())
    assert record["metrics"] == {
        **fan.metrics,
        "threshold": pytest.approx(fan.threshold),
        "unscored_test_clips": fan.unscored,
        "not_in_submission": [],
    }


def test_frozenasd_run_prints_the_summary_run_returns(
    tiny_dataset, patch_encoder, tmp_path, monkeypatch, capsys
):
    real = run_workflow.write_run_summary

    def summary(*args, **kwargs) -> str:
        real(*args, **kwargs)
        return "THE SUMMARY RUN RETURNED\n"

    monkeypatch.setattr(run_workflow, "write_run_summary", summary)
    out = tmp_path / "out"
    code = main(["run", "--data", str(tiny_dataset), "--model", str(patch_encoder), "--out", str(out),
                 "--no-cache", "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "THE SUMMARY RUN RETURNED\n" in printed
    assert "| fan |" not in printed  # summary.md, on disk, is not read back
    assert f"report in {(out / 'report.html').resolve()}" in printed
