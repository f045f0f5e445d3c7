"""Fit once, save without pickle, score new recordings later."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from frozenasd.detectors.persistence import load_scoring_pipeline, pipeline_info
from frozenasd.embed.encoders.patch_encoder import build_patch_encoder
from frozenasd.errors import FrozenASDError, LayoutError, ModelError
from frozenasd.hashing import file_sha256
from frozenasd.outputs.files import read_scores_csv
from frozenasd.settings import RunSettings
from frozenasd.workflows.fit_score import audio_files, fit_files, fit_machine, score_files
from frozenasd.workflows.run import run


@pytest.mark.parametrize("detector", ["kmeansNN", "domain-banks"])
def test_saved_model_scores_like_the_run(detector, tiny_dataset, patch_encoder, tmp_path):
    settings = RunSettings(model_path=patch_encoder, detector=detector, progress=False, cache_dir=None)
    info = fit_machine(tiny_dataset, "fan", settings, tmp_path / "fan.npz")
    assert info == pipeline_info(tmp_path / "fan.npz")
    assert info["n_train"] == 20 and len(info["skipped"]) == 1

    test_dir = tiny_dataset / "fan" / "test"
    scored = score_files(tmp_path / "fan.npz", patch_encoder, audio_files([test_dir]))
    assert len(scored.paths) == 40 and len(scored.skipped) == 1  # the unreadable clip is reported
    np.testing.assert_array_equal(scored.decisions, scored.scores > info["threshold"])

    results = run(tiny_dataset, ["fan"], tmp_path / "run", settings)
    assert results.machines["fan"].threshold == pytest.approx(info["threshold"])
    paths, run_scores, _ = read_scores_csv(tmp_path / "run" / "results_fan" / "scores.csv")
    by_name = dict(zip((p.name for p in scored.paths), scored.scores, strict=True))
    np.testing.assert_allclose([by_name[p.split("/")[-1]] for p in paths], run_scores, rtol=1e-6, atol=1e-7)


def test_another_encoder_is_refused(tiny_dataset, patch_encoder, tmp_path):
    settings = RunSettings(model_path=patch_encoder, progress=False, cache_dir=None)
    fit_machine(tiny_dataset, "fan", settings, tmp_path / "fan.npz")
    other = build_patch_encoder(tmp_path / "other.onnx", embed_dim=24, seed=4)
    with pytest.raises(ModelError, match="other.onnx: not the encoder"):
        score_files(tmp_path / "fan.npz", other, audio_files([tiny_dataset / "fan" / "test"]))


def test_recordings_in_common_formats_are_found_and_scored(tiny_dataset, patch_encoder, tmp_path):
    settings = RunSettings(model_path=patch_encoder, progress=False, cache_dir=None)
    fit_machine(tiny_dataset, "fan", settings, tmp_path / "fan.npz")
    clip = sorted((tiny_dataset / "fan" / "test").glob("*anomaly*.wav"))[0]
    x, rate = sf.read(clip, dtype="float32")
    folder = tmp_path / "phone" / "day1"
    folder.mkdir(parents=True)
    lossless = {"a.wav": "PCM_24", "b.flac": "PCM_16", "c.aiff": "PCM_16", "d.caf": "FLOAT"}
    for name, subtype in lossless.items():
        sf.write(folder / name, x, rate, subtype=subtype)
    sf.write(folder / "e.ogg", x, rate, format="OGG", subtype="VORBIS")
    sf.write(folder / "f.MP3", x, rate, format="MP3", subtype="MPEG_LAYER_III")
    (folder / "notes.txt").write_text("not audio")
    sf.write(folder / "._a.wav", x, rate)  # macOS metadata companion: hidden, not a recording

    files = audio_files([tmp_path / "phone"])
    assert [p.name for p in files] == ["a.wav", "b.flac", "c.aiff", "d.caf", "e.ogg", "f.MP3"]
    scored = score_files(tmp_path / "fan.npz", patch_encoder, files)
    assert not scored.skipped
    reference = scored.scores[0]
    np.testing.assert_allclose(scored.scores[1:4], reference, rtol=1e-3)  # lossless: the same clip
    assert np.all(np.abs(scored.scores[4:] - reference) < 0.25 * abs(reference))  # lossy: close to it

    named = score_files(tmp_path / "fan.npz", patch_encoder, [folder / "notes.txt", folder / "a.wav"])
    assert [p.name for p, _ in named.skipped] == ["notes.txt"] and len(named.scores) == 1


def test_missing_input_is_named(tmp_path):
    with pytest.raises(Exception, match="nothing.wav: no such file or folder"):
        audio_files([tmp_path / "nothing.wav"])


def test_fit_and_score_from_the_command_line(tiny_dataset, patch_encoder, tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "frozenasd", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )

    fitted = cli(
        "fit",
        "--data",
        str(tiny_dataset),
        "--machine",
        "fan",
        "--model",
        str(patch_encoder),
        "-o",
        "fan.npz",
        "--no-progress",
    )
    assert fitted.returncode == 0, fitted.stderr
    clip = sorted((tiny_dataset / "fan" / "test").glob("*anomaly_0000*"))[0]
    scored = cli("score", str(clip), "--fitted", "fan.npz", "--model", str(patch_encoder), "--csv", "s.csv")
    assert scored.returncode == 1, scored.stderr  # 1: a recording is anomalous (0: all normal)
    assert clip.name in scored.stdout and "ANOMALY" in scored.stdout and "threshold" in scored.stdout
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "path,score,anomalous"


def test_fit_on_a_plain_folder_of_recordings(tiny_dataset, patch_encoder, tmp_path):
    """Recordings with any names in any folders are fitted like a DCASE training set."""
    plain = tmp_path / "normals" / "monday"
    plain.mkdir(parents=True)
    train = sorted((tiny_dataset / "fan" / "train").glob("*.wav"))
    for k, clip in enumerate(train):
        shutil.copy(clip, plain / f"pump_{k:02d}.wav")
    settings = RunSettings(model_path=patch_encoder, progress=False, cache_dir=None)
    info = fit_files(audio_files([tmp_path / "normals"]), settings, tmp_path / "plain.npz", "pump")
    assert info["machine"] == "pump" and info["n_train"] == 20 and len(info["skipped"]) == 1
    reference = fit_machine(tiny_dataset, "fan", settings, tmp_path / "layout.npz")
    test = audio_files([tiny_dataset / "fan" / "test"])
    a = score_files(tmp_path / "plain.npz", patch_encoder, test)
    b = score_files(tmp_path / "layout.npz", patch_encoder, test)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert a.threshold == pytest.approx(reference["threshold"])

    # domains come from the names only when every name gives one (two of the clips are target clips)
    banks = RunSettings(model_path=patch_encoder, detector="domain-banks", progress=False, cache_dir=None)
    fit_files(audio_files([plain]), banks, tmp_path / "one.npz")
    fit_files(train, banks, tmp_path / "two.npz")
    detector = [load_scoring_pipeline(tmp_path / f).named_steps["detector"] for f in ("one.npz", "two.npz")]
    assert [list(d.banks_) for d in detector] == [[0], [0, 1]]


def test_fit_command_takes_recordings_or_a_layout_not_both(tiny_dataset, patch_encoder, tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "frozenasd", "fit", *args, "--model", str(patch_encoder), "--no-progress"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )

    train = tiny_dataset / "fan" / "train"
    done = cli(str(train), "-o", "m.npz", "--machine", "fan")
    assert done.returncode == 0, done.stderr
    assert "fitted kmeansNN on 20 fan clips" in done.stdout and (tmp_path / "m.npz").is_file()
    both = cli(str(train), "--data", str(tiny_dataset), "--machine", "fan", "-o", "x.npz")
    assert both.returncode == 2 and "not both" in both.stderr
    neither = cli("-o", "x.npz")
    assert neither.returncode == 2 and "--data ROOT --machine M" in neither.stderr
    (tmp_path / "empty").mkdir()
    empty = cli(str(tmp_path / "empty"), "-o", "x.npz")
    assert empty.returncode == 2 and "no audio file found" in empty.stderr
    assert not (tmp_path / "x.npz").exists()


def test_each_recording_counts_once_and_bad_fits_are_clear_errors(tiny_dataset, patch_encoder, tmp_path):
    train = tiny_dataset / "fan" / "train"
    first = sorted(train.glob("*.wav"))[0]
    files = audio_files([train, first, str(first)])  # the folder already holds the file
    assert len(files) == 21 and files.count(first) == 1
    settings = RunSettings(model_path=patch_encoder, progress=False, cache_dir=None)
    with pytest.raises(LayoutError, match="1 usable training clips; the detector needs at least 2"):
        fit_files([first, first], settings, tmp_path / "m.npz")
    many = RunSettings(model_path=patch_encoder, n_components=30, progress=False, cache_dir=None)
    with pytest.raises(LayoutError, match="20 usable training clips; the detector needs at least 30"):
        fit_files(files, many, tmp_path / "m.npz")
    # n_components is k-means' alone: another detector fits the same 20 clips
    other = RunSettings(
        model_path=patch_encoder, detector="knn", n_components=30, progress=False, cache_dir=None
    )
    assert fit_files(files, other, tmp_path / "knn.npz")["n_train"] == 20
    still = tmp_path / "still"
    still.mkdir()
    for k in range(3):
        sf.write(still / f"quiet_{k}.wav", np.full(16000, 0.01, np.float32), 16000)  # identical clips
    with pytest.raises(FrozenASDError, match="the recordings given: cannot fit knn: .*equal"):
        fit_files(
            audio_files([still]),
            RunSettings(model_path=patch_encoder, detector="knn", progress=False, cache_dir=None),
            tmp_path / "m.npz",
        )
    with pytest.raises(LayoutError, match="use a plain name"):
        fit_files(files, settings, tmp_path / "m.npz", machine="../elsewhere")
    assert not (tmp_path / "m.npz").exists()


def forge(fitted, out, **info_changes):
    """A copy of a fitted file with its saved info changed (what a hand-edited file would hold)."""
    with np.load(fitted, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["__meta__"]))
    meta["info"].update(info_changes)
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(out, **arrays)
    return out


def test_forged_files_are_clear_errors(tiny_dataset, patch_encoder, tmp_path):
    settings = RunSettings(model_path=patch_encoder, progress=False, cache_dir=None)
    fit_machine(tiny_dataset, "fan", settings, tmp_path / "fan.npz")
    clips = sorted((tiny_dataset / "fan" / "test").glob("*.wav"))[:2]

    wide = build_patch_encoder(tmp_path / "wide.onnx", embed_dim=40, seed=4)
    forged = forge(tmp_path / "fan.npz", tmp_path / "wide.npz", encoder_sha256=file_sha256(wide))
    width = load_scoring_pipeline(tmp_path / "fan.npz").n_features_in_
    with pytest.raises(
        ModelError, match=rf"wide\.onnx: gives 40-dimensional .*wide\.npz was fitted on {width}-"
    ):
        score_files(forged, wide, clips)

    nan = forge(tmp_path / "fan.npz", tmp_path / "nan.npz", threshold="nan")
    with pytest.raises(ModelError, match=r"nan\.npz: the saved threshold 'nan' is not a finite number"):
        score_files(nan, patch_encoder, clips)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "frozenasd",
            "score",
            str(clips[0]),
            "--fitted",
            str(nan),
            "--model",
            str(patch_encoder),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: {nan}: the saved threshold 'nan' is not a finite number"
    ]
