from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

import frozenasd.embed.executor as executor_module
import frozenasd.embed.steps as steps_module
from frozenasd.data.dcase import list_clips
from frozenasd.embed import embed_clips, open_cache
from frozenasd.embed.cache import EmbeddingCache, cache_key, clip_identity
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.errors import AudioError
from frozenasd.settings import RunSettings
from frozenasd.workflows.run import run


def test_store_and_load_round_trip(tmp_path):
    cache = EmbeddingCache(tmp_path, "ab" * 32, {"pooling": "mean"})
    rows = [(f"clip{i}|1|2", np.full(4, i, np.float32)) for i in range(5)]
    cache.store("fan", "train", rows[:3])
    cache.store("fan", "train", rows[3:])
    loaded = cache.load("fan", "train")
    assert sorted(loaded) == [k for k, _ in rows]
    np.testing.assert_array_equal(loaded["clip4|1|2"], np.full(4, 4))
    assert cache.load("fan", "test") == {}
    assert (cache.folder / "cache.json").is_file()


def test_two_processes_sharing_a_cache_keep_every_chunk(tmp_path):
    """Chunks written by two runs at once (both look before either has written) never collide."""
    import frozenasd.embed.cache as cache_module

    cache = EmbeddingCache(tmp_path, "cd" * 32, {})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache_module.Path, "glob", lambda self, pattern: iter(()))
        patch.setattr(cache_module.Path, "exists", lambda self: False)
        for clip in ("a|1|1", "b|1|1"):
            cache.store("fan", "train", [(clip, np.ones(2, np.float32))])
    assert sorted(cache.load("fan", "train")) == ["a|1|1", "b|1|1"]


def test_key_depends_on_model_and_settings():
    base = cache_key("a" * 64, {"pooling": "mean"})
    assert base != cache_key("b" * 64, {"pooling": "mean"})
    assert base != cache_key("a" * 64, {"pooling": "none"})
    assert base == cache_key("a" * 64, {"pooling": "mean"})


def test_a_broken_chunk_is_ignored(tmp_path):
    cache = EmbeddingCache(tmp_path, "c" * 64, {})
    cache.store("fan", "test", [("x|1|1", np.ones(2, np.float32))])
    cache.store("fan", "test", [("y|1|1", np.ones(2, np.float32))])
    first, second = sorted((cache.folder / "fan" / "test").glob("chunk_*.npz"))
    second.write_bytes(second.read_bytes()[:-40])  # a chunk cut short, as by a full disk
    (cache.folder / "fan" / "test" / "chunk_000009_x.npz").write_bytes(b"not a zip")
    assert list(cache.load("fan", "test")) == ["x|1|1"]


def test_identity_follows_the_content_not_the_file_times(tmp_path):
    path, copy = tmp_path / "a.wav", tmp_path / "b.WAV"
    path.write_bytes(b"1234")
    copy.write_bytes(b"1234")
    before = clip_identity(path)
    assert clip_identity(copy) == before  # same bytes, same extension: the same embedding
    stat = path.stat()
    path.write_bytes(b"1235")  # same size, and the times put back as `cp -p` or `rsync -t` do
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert clip_identity(path) != before


def test_identity_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(AudioError, match=r"gone\.wav: cannot read the file \(No such file"):
        clip_identity(tmp_path / "gone.wav")


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_files_of_killed_writes_are_removed_and_live_ones_kept(tmp_path):
    cache = EmbeddingCache(tmp_path, "ef" * 32, {})
    cache.store("fan", "test", [("x.wav", np.ones(2, np.float32))])
    folder = cache.folder / "fan" / "test"
    host, now = socket.gethostname(), time.time()
    files = {
        "dead writer, 2 min old": (f".chunk_000001_a.npz.{dead_pid()}@{host}.tmp", 120),
        "dead writer, an hour and more": (f".chunk_000001_b.npz.{dead_pid()}@{host}.tmp", 4000),
        "no writer named, an hour and more": (".chunk_000001_c.npz.tmp", 4000),
        "dead writer, just written": (f".chunk_000001_d.npz.{dead_pid()}@{host}.tmp", 5),
        "live writer, 2 min old": (f".chunk_000001_e.npz.{os.getpid()}@{host}.tmp", 120),
        "writer of another host, 2 min old": (f".chunk_000001_f.npz.{dead_pid()}@other-{host}.tmp", 120),
    }
    for name, age in files.values():
        (folder / name).write_bytes(b"partial")
        os.utime(folder / name, (now - age, now - age))
    assert list(cache.load("fan", "test")) == ["x.wav"]
    left = {what for what, (name, _) in files.items() if (folder / name).exists()}
    assert left == {
        "dead writer, just written",
        "live writer, 2 min old",
        "writer of another host, 2 min old",
    }


class Counting:
    """Counts the clips the extractor featurises; optionally dies after some encoder calls."""

    def __init__(self, extractor: ONNXFeatureExtractor, die_after_calls: int | None = None):
        self.featurised = 0
        self.calls = 0
        features, embed = extractor.features, extractor.embed_features

        def counted_features(wave, sample_rate=None):
            self.featurised += 1
            return features(wave, sample_rate)

        def dying_embed(batch):
            if die_after_calls is not None and self.calls >= die_after_calls:
                raise KeyboardInterrupt
            self.calls += 1
            return embed(batch)

        extractor.features = counted_features
        extractor.embed_features = dying_embed


def settings_for(model, cache_dir, **kw) -> RunSettings:
    return RunSettings(model_path=model, progress=False, cache_dir=cache_dir, **kw)


def test_second_run_reads_every_embedding_from_the_cache(tiny_dataset, patch_encoder, tmp_path):
    settings = settings_for(patch_encoder, tmp_path / "cache")
    extractor = settings.extractor().fit()
    clips = list_clips(tiny_dataset, "fan", "test")
    first_counter = Counting(extractor)
    first = embed_clips(extractor, clips, cache=open_cache(settings, extractor), progress=False)
    assert first_counter.featurised == len(clips) - 1  # the broken clip fails before featurising

    again = settings.extractor().fit()
    counter = Counting(again)
    second = embed_clips(again, clips, cache=open_cache(settings, again), progress=False)
    assert counter.featurised == 0 and counter.calls == 0
    assert [c.path for c in second.clips] == [c.path for c in first.clips]
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    assert len(second.skipped) == 1


def test_a_killed_run_resumes_where_it_stopped(tiny_dataset, patch_encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(executor_module, "CHUNK", 8)
    settings = settings_for(patch_encoder, tmp_path / "cache")
    clips = list_clips(tiny_dataset, "fan", "test")
    dying = settings.extractor().fit()
    Counting(dying, die_after_calls=2)
    with pytest.raises(KeyboardInterrupt):
        embed_clips(dying, clips, cache=open_cache(settings, dying), progress=False)

    resumed = settings.extractor().fit()
    counter = Counting(resumed)
    result = embed_clips(resumed, clips, cache=open_cache(settings, resumed), progress=False)
    assert counter.featurised == len(clips) - 1 - 16  # two chunks of 8 were kept
    fresh = embed_clips(settings.extractor().fit(), clips, cache=None, progress=False)
    np.testing.assert_array_equal(result.embeddings, fresh.embeddings)


def test_a_clip_replaced_with_its_size_and_times_kept_is_embedded_again(
    tiny_dataset, patch_encoder, tmp_path
):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    settings = settings_for(patch_encoder, tmp_path / "cache")
    clips = list_clips(data, "fan", "test")
    embed_clips(settings.extractor().fit(), clips, cache=open_cache(settings, settings.extractor().fit()))
    normal = next(c.path for c in clips if c.label == "normal")
    stat = normal.stat()
    wave, rate = sf.read(normal, dtype="float32")
    sf.write(normal, wave[::-1] * 0.5, rate, subtype="PCM_16")  # another recording of the same length
    os.utime(normal, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the times kept, as `cp -p` does
    assert normal.stat().st_size == stat.st_size and normal.stat().st_mtime_ns == stat.st_mtime_ns

    extractor = settings.extractor().fit()
    counter = Counting(extractor)
    cached = embed_clips(extractor, clips, cache=open_cache(settings, extractor), progress=False)
    assert counter.featurised == 1  # the replaced clip only (the unreadable one fails before)
    fresh = embed_clips(settings.extractor().fit(), clips, cache=None, progress=False)
    np.testing.assert_array_equal(cached.embeddings, fresh.embeddings)


def test_changing_only_the_detector_rescoring_uses_the_cache(
    tiny_dataset, patch_encoder, tmp_path, monkeypatch
):
    cache_dir = tmp_path / "cache"
    run(tiny_dataset, ["fan"], tmp_path / "a", settings_for(patch_encoder, cache_dir))
    loads = []
    monkeypatch.setattr(steps_module, "load_audio", lambda *a, **k: loads.append(a) or np.zeros(16000))
    results = run(
        tiny_dataset, ["fan"], tmp_path / "b", settings_for(patch_encoder, cache_dir, n_components=3)
    ).metrics
    assert loads == [] or all("9999" in str(a[0]) for a in loads)  # only the unusable clips are retried
    assert results["fan"]["auc"] > 0.9


def test_no_cache_writes_nothing(tiny_dataset, patch_encoder, tmp_path):
    run(tiny_dataset, ["fan"], tmp_path / "out", settings_for(patch_encoder, None))
    assert not (tmp_path / "cache").exists()
    assert (tmp_path / "out" / "results_fan" / "scores.csv").is_file()
