"""Run outputs: scores.csv, metrics.txt, roc.png, DCASE submission files, the seed entry point."""

from __future__ import annotations

import csv
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from frozenasd.data.dcase import domain_from_name, label_from_name
from frozenasd.errors import FrozenASDError
from frozenasd.evaluation.metrics import machine_metrics
from frozenasd.outputs import files as outputs
from frozenasd.outputs.files import (
    compute_and_save_metrics,
    plot_roc,
    read_metrics_txt,
    read_scores_csv,
    write_metrics_txt,
    write_scores_csv,
)
from frozenasd.outputs.submission import section_id, write_submission
from frozenasd.text import printable

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[1]


def dev_names(n_per_cell=5, machine="fan"):
    names = []
    for domain in ("source", "target"):
        for label in ("normal", "anomaly"):
            for i in range(n_per_cell):
                names.append(f"data/{machine}/test/section_00_{domain}_test_{label}_{i:04d}_vel_{i}.wav")
    return names


def scores_for(names, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=len(names)) + np.array([1.0 if "anomaly" in n else 0.0 for n in names])


def test_label_and_domain_from_name():
    assert label_from_name("x/section_00_source_test_anomaly_0001_a.wav") == 1
    assert label_from_name("section_00_target_train_normal_0001_a.wav") == 0
    assert label_from_name("anomaly_dir/section_00_0001.wav") is None  # only the base name counts
    assert domain_from_name("section_00_target_test_normal_0001.wav") == "target"
    assert domain_from_name("section_00_source_test_normal_0001.wav") == "source"
    assert domain_from_name("normal_id_00_00000000.wav") is None


def test_scores_csv_round_trip_is_exact(tmp_path):
    paths = ["a.wav", "dir, with comma/b.wav", 'q"uote.wav', "d.wav", "e.wav"]
    scores = np.array([1 / 3, -2.5e-300, 1e300, 0.1 + 0.2, -0.0])
    labels = [0, 1, None, 1, 0]
    f = tmp_path / "scores.csv"
    write_scores_csv(f, paths, scores, labels)
    assert f.read_text().splitlines()[0] == "path,score,label"
    p2, s2, l2 = read_scores_csv(f)
    assert p2 == paths
    assert s2.tolist() == scores.tolist()  # bit-exact
    assert l2 == labels


def test_read_scores_csv_rejects_bad_files(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("file,score\nx.wav,1.0\n")
    with pytest.raises(FrozenASDError, match="header"):
        read_scores_csv(f)
    f.write_text("path,score,label\nx.wav,abc,1\n")
    with pytest.raises(FrozenASDError, match=r"bad\.csv:2"):
        read_scores_csv(f)
    f.write_text("path,score,label\nx.wav,1.0,7\n")
    with pytest.raises(FrozenASDError, match="label"):
        read_scores_csv(f)


def test_metrics_txt_round_trip(tmp_path):
    names = dev_names()
    y = [label_from_name(n) for n in names]
    d = [domain_from_name(n) for n in names]
    m = machine_metrics(y, scores_for(names), d)
    m["note"] = "text value"
    skipped = [("bad: file, 1.wav", "AudioError: too short (0.1 s)"), ("x.wav", "unreadable")]
    f = tmp_path / "metrics.txt"
    write_metrics_txt(f, m, skipped)
    text = f.read_text()
    assert "AUC: " in text and "pAUC (FPR<=0.1): " in text and "AUC (source): " in text
    assert "AUC (target): " in text and "hmean: " in text
    back = read_metrics_txt(f)
    assert back["skipped"] == skipped
    assert back["n_skipped"] == 2
    for key, value in m.items():
        if isinstance(value, float):
            assert back[key] == pytest.approx(value, abs=1e-9), key
        else:
            assert back[key] == value, key


def test_metrics_txt_writes_missing_values(tmp_path):
    f = tmp_path / "metrics.txt"
    write_metrics_txt(f, {"auc": 0.75, "auc_target": None, "n_normal": 3})
    assert "AUC (target): n/a" in f.read_text()
    assert read_metrics_txt(f) == {"auc": 0.75, "auc_target": None, "n_normal": 3}


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24]), len(data)


def test_plot_roc_writes_png(tmp_path):
    names = dev_names()
    y = [label_from_name(n) for n in names]
    f = tmp_path / "roc.png"
    plot_roc(f, y, scores_for(names), "fan")
    (width, height), n_bytes = png_size(f)
    assert width >= 300 and height >= 300
    assert n_bytes > 5000


def test_plot_roc_needs_two_classes(tmp_path):
    with pytest.raises(ValueError, match="both normal and anomalous"):
        plot_roc(tmp_path / "roc.png", [0, 0, 0], [1, 2, 3])


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_write_submission_names_format_and_sorting(tmp_path):
    names = ["/d/test/section_00_0002.wav", "/d/test/section_00_0000.wav", "/d/test/section_00_0001.wav"]
    scores = [0.5, 1 / 3, -7.25]
    decisions = [1, 0, 0]
    score_path, decision_path = write_submission(tmp_path / "out", "ToyCar", 0, names, scores, decisions)
    assert score_path.name == "anomaly_score_ToyCar_section_00_test.csv"
    assert decision_path.name == "decision_result_ToyCar_section_00_test.csv"
    rows = read_rows(score_path)
    assert [r[0] for r in rows] == ["section_00_0000.wav", "section_00_0001.wav", "section_00_0002.wav"]
    assert [float(r[1]) for r in rows] == [1 / 3, -7.25, 0.5]
    assert all(len(r) == 2 for r in rows)  # headerless, two columns
    assert read_rows(decision_path) == [
        ["section_00_0000.wav", "0"],
        ["section_00_0001.wav", "0"],
        ["section_00_0002.wav", "1"],
    ]


@pytest.mark.parametrize("section", [3, "03", "section_03"])
def test_write_submission_section_forms(tmp_path, section):
    score_path, decision_path = write_submission(tmp_path, "fan", section, ["a.wav"], [1.0], None)
    assert score_path.name == "anomaly_score_fan_section_03_test.csv"
    assert decision_path is None


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"file_names": ["a.wav", "x/a.wav"]}, "more than once"),
        ({"machine": "toy_car"}, "machine name"),
        ({"section": "abc"}, "section"),
        ({"decisions": [0, 2]}, "0 or 1"),
        ({"scores": [1.0, np.nan]}, "nan"),
        ({"scores": [1.0]}, "scores"),
    ],
)
def test_write_submission_rejects_bad_input(tmp_path, kwargs, match):
    args = {
        "out_dir": tmp_path,
        "machine": "fan",
        "section": 0,
        "file_names": ["a.wav", "b.wav"],
        "scores": [1.0, 2.0],
        "decisions": [0, 1],
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        write_submission(**args)


def test_compute_and_save_metrics_matches_scores_csv(tmp_path):
    names = dev_names(6)
    scores = scores_for(names, seed=3)
    out = tmp_path / "run" / "fan"
    skipped = [("data/fan/test/broken.wav", "AudioError: empty file")]
    result = compute_and_save_metrics(names, scores, out, skipped=skipped, title="fan")
    for key in ("auc", "pauc", "auc_source", "auc_target", "hmean"):
        assert 0.0 <= result[key] <= 1.0
    paths, s, labels = read_scores_csv(out / "scores.csv")
    assert paths == names
    expected = machine_metrics(labels, s, [domain_from_name(p) for p in paths])
    back = read_metrics_txt(out / "metrics.txt")
    for key in ("auc", "pauc", "auc_source", "auc_target", "hmean"):
        assert back[key] == pytest.approx(expected[key], abs=1e-9)
        assert result[key] == pytest.approx(expected[key], abs=1e-12)
    assert back["n_normal"] == 12 and back["n_anomaly"] == 12
    assert back["skipped"] == skipped
    png_size(out / "roc.png")


def test_compute_and_save_metrics_explicit_labels_override_names(tmp_path):
    names = [f"clip_{i}.wav" for i in range(6)]
    scores = [0.1, 0.2, 0.3, 0.9, 0.8, 0.05]
    labels = [0, 0, 0, 1, 1, 1]
    result = compute_and_save_metrics(names, scores, tmp_path, labels=labels)
    # anomalies 0.9, 0.8, 0.05 vs normals 0.1, 0.2, 0.3: 3 + 3 + 0 of 9 pairs
    assert result["auc"] == pytest.approx(6 / 9)
    assert result["auc_source"] is None


def test_compute_and_save_metrics_eval_set_without_labels(tmp_path):
    names = [f"section_00_{i:04d}.wav" for i in range(4)]
    result = compute_and_save_metrics(names, [0.1, 0.2, 0.3, 0.4], tmp_path)
    assert result["auc"] is None and result["n_clips"] == 4
    assert (tmp_path / "scores.csv").is_file()
    assert not (tmp_path / "roc.png").exists()
    back = read_metrics_txt(tmp_path / "metrics.txt")
    assert back["auc"] is None and back["note"].startswith("labels unknown")


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (["section_00_source_test_normal_0000.wav", "section_00_0001.wav"], "got 1 normal and 0"),
        (["source_test_normal_0000.wav", "target_test_normal_0001.wav"], "got 2 normal and 0"),
        (["a_anomaly_1.wav", "a_anomaly_2.wav"], "got 0 normal and 2 anomalous"),
    ],
)
def test_undefined_metrics_keep_the_scores_and_say_why(tmp_path, names, why):
    """Mixed or one-class labels: scores.csv and metrics.txt are written, the metrics are n/a with a note."""
    (tmp_path / "roc.png").write_bytes(b"an earlier run's curve")
    result = compute_and_save_metrics(names, [0.1, 0.2], tmp_path, skipped=[("bad.wav", "empty file")])
    assert read_scores_csv(tmp_path / "scores.csv")[0] == names
    assert all(result[k] is None for k in ("auc", "pauc", "auc_source", "auc_target", "hmean"))
    back = read_metrics_txt(tmp_path / "metrics.txt")
    assert back["auc"] is None and back["n_clips"] == 2 and back["skipped"] == [("bad.wav", "empty file")]
    assert why in back["note"] and back["note"] == result["note"] and "scores only" in back["note"]
    assert not (tmp_path / "roc.png").exists()


def test_metrics_over_the_labelled_clips_when_some_have_no_label(tmp_path):
    names = dev_names(6) + ["section_00_0900.wav", "section_00_0901.wav"]  # two anonymised clips
    scores = scores_for(names, seed=5)
    result = compute_and_save_metrics(names, scores, tmp_path)
    labelled = names[:-2]
    expected = machine_metrics(
        [label_from_name(n) for n in labelled], scores[:-2], [domain_from_name(n) for n in labelled]
    )
    for key in ("auc", "pauc", "auc_source", "auc_target", "hmean"):
        assert result[key] == pytest.approx(expected[key], abs=1e-12)
    assert (
        "2 of 26 clips have no known label" in result["note"]
        and "over the 24 labelled clips" in result["note"]
    )
    back = read_metrics_txt(tmp_path / "metrics.txt")
    assert back["note"] == result["note"] and back["n_clips"] == 26
    assert len(read_scores_csv(tmp_path / "scores.csv")[0]) == 26  # every clip keeps its score
    png_size(tmp_path / "roc.png")


def test_root_metrics_shim_reexports():
    spec = importlib.util.spec_from_file_location("seed_metrics_shim", REPO_ROOT / "metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.compute_and_save_metrics is outputs.compute_and_save_metrics


@pytest.mark.parametrize(
    "section,expected", [(0, "00"), ("000", "00"), ("7", "07"), ("123", "123"), ("section_123456", "123456")]
)
def test_section_numbers_of_any_length_name_submission_files(tmp_path, section, expected):
    score_path, _ = write_submission(tmp_path, "fan", section, ["a.wav"], [1.0], None)
    assert score_path.name == f"anomaly_score_fan_section_{expected}_test.csv"


@pytest.mark.parametrize("section", ["1" * 17, "²", "-1", "1.5"])
def test_section_numbers_that_cannot_name_a_file(section):
    with pytest.raises(ValueError, match="section must be a number of at most 16 digits"):
        section_id(section)


def test_csv_outputs_read_back_names_with_line_breaks_commas_quotes_and_bad_bytes(tmp_path):
    import os

    names = [f"/d/{n}.wav" for n in ("a\rb", "c\nd", "e\r\nf", 'g,"h"', "i,j", os.fsdecode(b"k\xffl"), "m")]
    write_scores_csv(tmp_path / "scores.csv", names, np.arange(len(names)) / 3, [0, 1, None, 0, 1, 0, 1])
    paths, scores, labels = read_scores_csv(tmp_path / "scores.csv")
    assert paths == [printable(n) for n in names]
    assert paths[5] == "/d/k\\xffl.wav" and paths[:5] == names[:5]
    np.testing.assert_array_equal(scores, np.arange(len(names)) / 3)
    assert labels == [0, 1, None, 0, 1, 0, 1]
    score_path, decision_path = write_submission(tmp_path, "fan", 0, names, np.arange(len(names)), [1] * 7)
    for path in (score_path, decision_path):
        rows = read_rows(path)
        assert sorted(r[0] for r in rows) == sorted(printable(Path(n).name) for n in names)
        assert all(len(r) == 2 for r in rows)
    skipped = [(names[0], "reason with a\rreturn"), (names[5], f"cannot read {names[5]}")]
    write_metrics_txt(tmp_path / "metrics.txt", {"auc": 0.5}, skipped)
    assert read_metrics_txt(tmp_path / "metrics.txt")["skipped"] == [
        (printable(p), printable(r)) for p, r in skipped
    ]


def test_score_csv_rows_are_written_by_the_outputs_writer(tmp_path):
    import csv

    from frozenasd.outputs.files import DECISIONS_HEADER, write_decisions_csv

    path = tmp_path / "s.csv"
    write_decisions_csv(path, ["a,b.wav", "c.wav"], [0.1234567, 2.5], [0, 1])
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [DECISIONS_HEADER, ["a,b.wav", "0.123457", "0"], ["c.wav", "2.500000", "1"]]
    with pytest.raises(ValueError, match="2 paths, 1 scores and 2 decisions"):
        write_decisions_csv(path, ["a.wav", "b.wav"], [0.1], [0, 1])
