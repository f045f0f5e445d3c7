"""Runs over datasets with odd file names and folders: each problem is named, the rest is still scored."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

import frozenasd.workflows.records as records_module
from frozenasd.cli import main
from frozenasd.outputs.files import read_metrics_txt, read_scores_csv
from frozenasd.settings import RunSettings
from frozenasd.text import printable
from frozenasd.workflows.evaluate import evaluate_submission
from frozenasd.workflows.run import run

GOOD = "section_00_source_test_normal_0000_noAttribute.wav"
BROKEN = "section_00_source_test_normal_9999_noAttribute.wav"
OUTPUTS = ("scores.csv", "metrics.txt", "run.json")


def settings_for(model: Path, tmp_path: Path) -> RunSettings:
    return RunSettings(model_path=model, progress=False, cache_dir=tmp_path / "cache")


def copy_dataset(tiny_dataset: Path, tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    return data, data / "fan" / "test"


def test_sections_of_three_or_more_digits_do_not_sink_the_machine(tiny_dataset, patch_encoder, tmp_path):
    data, test = copy_dataset(tiny_dataset, tmp_path)
    (test / BROKEN).unlink()
    for clip in test.glob("section_00_*"):
        clip.rename(test / clip.name.replace("section_00_", "section_123_"))
    too_long = "section_" + "9" * 20 + "_source_test_normal_0100_noAttribute.wav"
    shutil.copy(test / GOOD.replace("_00_", "_123_"), test / too_long)
    out = tmp_path / "out"
    results = run(data, ["fan"], out, settings_for(patch_encoder, tmp_path)).metrics
    assert isinstance(results["fan"], dict), results["fan"]
    rows = (out / "anomaly_score_fan_section_123_test.csv").read_text().splitlines()
    assert len(rows) == 40 and all(r.startswith("section_123_") for r in rows)
    assert len(read_scores_csv(out / "results_fan" / "scores.csv")[0]) == 41  # scored, not submitted
    assert (
        f"left out of the submission files, their section number being too long: {too_long}"
        in (out / "summary.md").read_text()
    )
    assert evaluate_submission(out, dataset_root=data)["machines"]["fan"]["n_clips"] == 40


def test_odd_file_names_are_written_safely_and_evaluate_matches_them(tiny_dataset, patch_encoder, tmp_path):
    """Bytes that are not UTF-8, carriage returns, line feeds, commas and quotes in clip names."""
    data, test = copy_dataset(tiny_dataset, tmp_path)
    odd = [os.fsdecode(b"\xff"), "a\rb", "c\nd", 'e,"f"']
    for k, part in enumerate(odd):
        shutil.copy(test / GOOD, test / f"section_00_source_test_normal_{100 + k}_{part}.wav")
    (test / os.fsdecode(b"section_00_source_test_normal_0200_\xfe.wav")).write_bytes(b"not audio")
    out = tmp_path / "out"
    results = run(data, ["fan"], out, settings_for(patch_encoder, tmp_path)).metrics
    assert isinstance(results["fan"], dict), results["fan"]

    texts = {name: (out / "results_fan" / name).read_text(encoding="utf-8") for name in OUTPUTS}
    texts |= {name: (out / name).read_text(encoding="utf-8") for name in ("summary.md", "report.html")}
    unreadable = str(test / "section_00_source_test_normal_0200_\\xfe.wav")
    assert Path(unreadable).name in texts["summary.md"] and Path(unreadable).name in texts["report.html"]
    skipped = {
        path: reason
        for path, reason in read_metrics_txt(out / "results_fan" / "metrics.txt")["skipped"]
        if Path(path).parent == test
    }
    assert unreadable in skipped
    assert unreadable in [s["path"] for s in json.loads(texts["run.json"])["skipped"]]
    # every clip is scored or skipped, under the same escaped name in every output
    paths, _, _ = read_scores_csv(out / "results_fan" / "scores.csv")
    on_disk = {printable(str(p)): p for p in test.iterdir()}
    assert set(paths) | set(skipped) == set(on_disk) and not set(paths) & set(skipped)
    assert {
        printable(str(test / f"section_00_source_test_normal_{100 + k}_{p}.wav")) for k, p in enumerate(odd)
    } <= set(paths)

    for name in skipped:  # the clips that could not be scored are not in the submission
        on_disk[name].unlink()
    assert evaluate_submission(out, dataset_root=data)["machines"]["fan"]["n_clips"] == len(paths)


def test_score_csv_reads_back_odd_names(tiny_dataset, patch_encoder, tmp_path, capsys):
    fitted = tmp_path / "fan.npz"
    train = tiny_dataset / "fan" / "train"
    assert main(["fit", str(train), "--model", str(patch_encoder), "-o", str(fitted), "--no-progress"]) == 0
    new = tmp_path / "new"
    new.mkdir()
    names = [f"{part}.wav" for part in ("a\rb", "c\nd", 'e,"f"', os.fsdecode(b"g\xffh"))]
    for name in names:
        shutil.copy(tiny_dataset / "fan" / "test" / GOOD, new / name)
    table = tmp_path / "scores.csv"
    args = ["score", str(new), "--fitted", str(fitted), "--model", str(patch_encoder), "--csv", str(table)]
    assert main([*args, "--no-progress"]) == 0
    with open(table, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "score", "anomalous"]
    scored = {Path(r[0]).name for r in rows[1:]}
    assert scored == {printable(n) for n in names}
    assert "g\\xffh.wav" in capsys.readouterr().out


def test_an_unreadable_test_folder_fails_only_its_machine(tiny_dataset, patch_encoder, tmp_path, monkeypatch):
    data, _ = copy_dataset(tiny_dataset, tmp_path)
    shutil.copytree(data / "fan", data / "pump")
    locked = data / "pump" / "test"
    listing = Path.iterdir

    def iterdir(self):  # as chmod 000 does for a user other than root
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    out = tmp_path / "out"
    results = run(data, None, out, settings_for(patch_encoder, tmp_path)).metrics
    assert results["pump"] == f"{locked}: cannot list the 'test' folder (Permission denied)"
    assert isinstance(results["fan"], dict)
    assert f"- pump: not scored: {locked}: cannot list" in (out / "summary.md").read_text()
    assert (out / "anomaly_score_fan_section_00_test.csv").is_file()


def test_links_that_lead_nowhere_are_reported_as_skipped_clips(tiny_dataset, patch_encoder, tmp_path):
    data, test = copy_dataset(tiny_dataset, tmp_path)
    dangling = test / "section_00_source_test_normal_0100_noAttribute.wav"
    dangling.symlink_to(tmp_path / "moved_away.wav")
    loop = test / "section_00_source_test_normal_0101_noAttribute.wav"
    loop.symlink_to(loop)
    out = tmp_path / "out"
    run(data, ["fan"], out, settings_for(patch_encoder, tmp_path))
    skipped = {
        path: reason
        for path, reason in read_metrics_txt(out / "results_fan" / "metrics.txt")["skipped"]
        if Path(path).parent == test
    }
    assert (
        skipped[str(dangling)]
        == f"broken symbolic link: its target {tmp_path / 'moved_away.wav'} does not exist"
    )
    assert skipped[str(loop)].startswith("symbolic link loop")
    assert f"{dangling.name}" in (out / "summary.md").read_text()  # named as missing from the submission


def test_a_run_stopped_before_its_report_leaves_no_earlier_report(
    tiny_dataset, patch_encoder, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    run(tiny_dataset, ["fan"], out, settings_for(patch_encoder, tmp_path))
    assert (out / "report.html").is_file() and (out / "summary.md").is_file()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(records_module, "write_report", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_dataset, ["fan"], out, settings_for(patch_encoder, tmp_path))
    assert not (out / "report.html").exists()
    assert (out / "anomaly_score_fan_section_00_test.csv").is_file()


def test_equal_section_numbers_share_their_submission_files(tmp_path):
    import numpy as np

    from frozenasd.data.dcase import Clip
    from frozenasd.outputs.submission import write_submission_files

    names = [
        "section_0_source_test_normal_0000.wav",
        "section_00_source_test_normal_0001.wav",
        "section_000_source_test_anomaly_0002.wav",
        "normal_id_123456_00000000.wav",
    ]
    clips = [Clip.from_path(tmp_path / n, "fan", "test") for n in names]
    written, left_out = write_submission_files(tmp_path, "fan", clips, np.array([0.1, 0.2, 0.9, 0.4]), 0.5)
    assert left_out == [] and sorted(p.name for p in written) == [
        "anomaly_score_fan_section_00_test.csv",
        "anomaly_score_fan_section_123456_test.csv",
        "decision_result_fan_section_00_test.csv",
        "decision_result_fan_section_123456_test.csv",
    ]
    rows = (tmp_path / "decision_result_fan_section_00_test.csv").read_text().splitlines()
    assert rows == sorted([f"{names[0]},0", f"{names[1]},0", f"{names[2]},1"])
