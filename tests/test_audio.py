from __future__ import annotations

import io
import re
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from frozenasd.data.audio import SAMPLE_RATE, audio_header_bytes, load_audio, load_audio_bytes
from frozenasd.errors import AudioError


def _sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def _peak_frequency(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


def _path_in(message: str, path: Path) -> bool:
    return str(path) in message


def test_float32_mono_16k_passthrough(tmp_path):
    x = _sine(440, SAMPLE_RATE, 0.2)
    path = tmp_path / "a.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == len(x)
    np.testing.assert_allclose(y, x - x.mean(), atol=1e-6)


def test_channels_are_averaged(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.uniform(-0.5, 0.5, size=(1600, 8))  # 8 channels like MIMII clips
    data[:, 3] += 0.2
    path = tmp_path / "multi.wav"
    sf.write(path, data, SAMPLE_RATE, subtype="DOUBLE")
    expected = data.mean(axis=1)
    expected -= expected.mean()
    np.testing.assert_allclose(load_audio(path), expected, atol=1e-6)


def test_read_in_blocks_gives_the_same_signal(tmp_path, monkeypatch):
    """Decoding a block of frames at a time (here 100) changes nothing, and bad samples are still found."""
    import frozenasd.data.audio as audio

    rng = np.random.default_rng(1)
    data = rng.uniform(-0.5, 0.5, size=(1234, 4))
    path = tmp_path / "multi.wav"
    sf.write(path, data, SAMPLE_RATE, subtype="DOUBLE")
    whole = load_audio(path)
    monkeypatch.setattr(audio, "READ_BLOCK", 100)
    np.testing.assert_array_equal(load_audio(path), whole)
    data[1100, 2] = np.nan  # in the last, partial block
    data[50, 0] = np.inf
    sf.write(path, data, SAMPLE_RATE, subtype="DOUBLE")
    _raises_with_path(path, "2 non-finite")


@pytest.mark.parametrize("sr", [48000, 44100, 8000])
def test_resampling_keeps_frequency_and_length(tmp_path, sr):
    freq = 1000.0
    x = _sine(freq, sr, 0.5)
    path = tmp_path / f"sine_{sr}.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    y = load_audio(path)
    assert abs(len(y) - len(x) * SAMPLE_RATE / sr) <= 1
    resolution = SAMPLE_RATE / len(y)
    assert abs(_peak_frequency(y, SAMPLE_RATE) - freq) <= resolution
    # away from the edges the resampled signal is the same sine sampled at 16 kHz
    t = np.arange(len(y)) / SAMPLE_RATE
    reference = 0.5 * np.sin(2 * np.pi * freq * t)
    middle = slice(len(y) // 4, 3 * len(y) // 4)
    assert np.max(np.abs(y[middle] - reference[middle])) < 5e-3


def test_other_target_rate(tmp_path):
    x = _sine(500, 16000, 0.25)
    path = tmp_path / "a.flac"
    sf.write(path, x, 16000)
    y = load_audio(path, sample_rate=8000)
    assert abs(len(y) - len(x) / 2) <= 1
    assert abs(_peak_frequency(y, 8000) - 500) <= 8000 / len(y)


def test_dc_offset_removed(tmp_path):
    x = _sine(300, SAMPLE_RATE, 0.3, amp=0.2) + 0.4
    path = tmp_path / "dc.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="PCM_24")
    y = load_audio(path)
    assert abs(float(np.mean(y, dtype=np.float64))) < 1e-6
    np.testing.assert_allclose(y, x - x.mean(), atol=1e-5)


def test_int16_read_as_scaled_float(tmp_path):
    # zero-mean integer samples, so DC removal leaves the scaled values unchanged
    ints = np.array([0, 16384, -16384, 32767, -32768, 1, 100, -100] * 50, dtype=np.int16)
    assert int(ints.astype(np.int64).sum()) == 0
    path = tmp_path / "int16.wav"
    sf.write(path, ints, SAMPLE_RATE, subtype="PCM_16")
    y = load_audio(path)
    expected = ints.astype(np.float64) / 32768.0
    np.testing.assert_allclose(y, expected - expected.mean(), atol=1e-7)
    assert y.min() == -1.0 and y.max() == np.float32(32767 / 32768)


def test_flac_reads_like_wav(tmp_path):
    x = np.round(_sine(700, SAMPLE_RATE, 0.1) * 32767) / 32768
    sf.write(tmp_path / "a.wav", x, SAMPLE_RATE, subtype="PCM_16")
    sf.write(tmp_path / "a.flac", x, SAMPLE_RATE, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav"), load_audio(tmp_path / "a.flac"))


@pytest.mark.parametrize(
    ("subtype", "channels"),
    [("PCM_16", 1), ("PCM_24", 2), ("PCM_U8", 1), ("ULAW", 2), ("FLOAT", 1), ("DOUBLE", 2)],
)
def test_every_encoding_reads_as_the_channel_mean_less_its_mean(tmp_path, subtype, channels):
    # integer encodings skip the range checks and one channel skips the mean: neither may change a sample
    x = np.random.default_rng(11).uniform(-0.9, 0.9, (SAMPLE_RATE, channels))
    path = tmp_path / "a.wav"
    sf.write(path, x, SAMPLE_RATE, subtype=subtype)
    decoded, _ = sf.read(path, dtype="float64", always_2d=True)
    mono = decoded.mean(axis=1)
    expected = mono.astype(np.float32)
    expected -= np.float32(float(mono.sum()) / mono.size)
    np.testing.assert_array_equal(load_audio(path), expected)


# --- errors -------------------------------------------------------------------------------------------


def _raises_with_path(path: Path, pattern: str, **kwargs) -> None:
    with pytest.raises(AudioError) as info:
        load_audio(path, **kwargs)
    message = str(info.value)
    assert _path_in(message, path), message
    assert re.search(pattern, message), message
    if path.is_file():  # the same bytes in memory are refused alike, under the name they came by
        label = f"an upload{path.suffix}"
        with pytest.raises(AudioError) as held:
            load_audio_bytes(path.read_bytes(), label, **kwargs)
        assert str(held.value) == message.replace(str(path), label)


def test_missing_file(tmp_path):
    _raises_with_path(tmp_path / "missing.wav", "does not exist")


def test_directory_is_not_audio(tmp_path):
    folder = tmp_path / "x.wav"
    folder.mkdir()
    _raises_with_path(folder, "not a regular file")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    _raises_with_path(path, "empty file")


def test_not_audio(tmp_path):
    path = tmp_path / "text.wav"
    path.write_text("this is not audio\n" * 20)
    _raises_with_path(path, "cannot be read as audio")


def test_wav_without_samples(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(0), SAMPLE_RATE, subtype="PCM_16")
    _raises_with_path(path, "no audio samples")


def _data_chunk_size(path: Path) -> int:
    blob = path.read_bytes()
    at = blob.index(b"data")
    return struct.unpack("<I", blob[at + 4 : at + 8])[0]


def test_truncated_wav(tmp_path):
    whole = tmp_path / "whole.wav"
    sf.write(whole, _sine(440, SAMPLE_RATE, 0.25), SAMPLE_RATE, subtype="PCM_16")
    blob = whole.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(blob[: len(blob) - 3001])  # tail cut off; the header still claims all data
    declared = _data_chunk_size(cut)
    assert declared == 0.25 * SAMPLE_RATE * 2
    _raises_with_path(cut, rf"truncated.*{declared}.*{declared - 3001}")


def test_truncated_flac(tmp_path):
    whole = tmp_path / "whole.flac"
    sf.write(whole, _sine(440, SAMPLE_RATE, 0.5), SAMPLE_RATE)
    blob = whole.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(blob[: len(blob) // 2])
    _raises_with_path(cut, "truncated|cannot be read")


def test_wav_with_extra_chunk_after_data_is_not_truncated(tmp_path):
    # a LIST chunk after the data chunk must not confuse the truncation check
    path = tmp_path / "meta.wav"
    x = _sine(440, SAMPLE_RATE, 0.1)
    sf.write(path, x, SAMPLE_RATE, subtype="PCM_16")
    blob = bytearray(path.read_bytes())
    extra = b"LIST" + struct.pack("<I", 10) + b"INFOabcdef"
    blob += extra
    blob[4:8] = struct.pack("<I", len(blob) - 8)
    path.write_bytes(bytes(blob))
    assert len(load_audio(path)) == len(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    x = _sine(440, SAMPLE_RATE, 0.1)
    x[10] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    _raises_with_path(path, "1 non-finite")


def test_opposite_infinities_in_one_frame_are_rejected_quietly(tmp_path):
    import warnings

    data = np.zeros((100, 2))
    data[10] = (np.inf, -np.inf)
    path = tmp_path / "inf.wav"
    sf.write(path, data, SAMPLE_RATE, subtype="DOUBLE")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning on the way to the clear error
        _raises_with_path(path, "2 non-finite")


def test_min_samples(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, _sine(440, SAMPLE_RATE, 0.01), SAMPLE_RATE, subtype="PCM_16")  # 160 samples
    _raises_with_path(path, "too short: 160 samples.*400", min_samples=400)
    assert len(load_audio(path, min_samples=160)) == 160


def test_min_samples_counts_after_resampling(tmp_path):
    path = tmp_path / "short48k.wav"
    sf.write(path, _sine(440, 48000, 0.02), 48000, subtype="PCM_16")  # 960 samples -> 320 at 16 kHz
    _raises_with_path(path, "too short: 320 samples at 16000 Hz", min_samples=400)


def test_bad_sample_rate_argument(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(440, SAMPLE_RATE, 0.05), SAMPLE_RATE)
    with pytest.raises(ValueError):
        load_audio(path, sample_rate=0)


# --- truncation and absurd headers of every container ------------------------------------------------

_CONTAINERS = [  # (file name, format, subtype, rate, the container named in the error)
    ("a.aiff", "AIFF", "PCM_16", 16000, "AIFF"),
    ("ulaw.aifc", "AIFF", "ULAW", 16000, "AIFF"),
    ("a.w64", "W64", "PCM_16", 16000, "W64"),
    ("a.rf64", "RF64", "PCM_16", 16000, "RF64"),
    ("a.caf", "CAF", "PCM_16", 16000, "CAF"),
    ("a.au", "AU", "PCM_16", 16000, "AU"),
    ("a.opus", "OGG", "OPUS", 48000, "Ogg"),
    ("a.ogg", "OGG", "VORBIS", 16000, "Ogg"),
]


def _write_noise(path: Path, fmt: str, subtype: str, rate: int, seconds: float = 0.5) -> np.ndarray:
    data = np.random.default_rng(7).uniform(-0.5, 0.5, (int(rate * seconds), 2))
    sf.write(path, data, rate, format=fmt, subtype=subtype)
    return data


@pytest.mark.parametrize(("name", "fmt", "subtype", "rate", "container"), _CONTAINERS)
def test_whole_files_of_every_container_load(tmp_path, name, fmt, subtype, rate, container):
    path = tmp_path / name
    data = _write_noise(path, fmt, subtype, rate)
    wave = load_audio(path)
    assert abs(len(wave) - len(data) * SAMPLE_RATE / rate) <= 1
    held = load_audio_bytes(path.read_bytes(), "an upload", max_seconds=None)  # no extension to go by
    np.testing.assert_array_equal(held, wave)
    assert audio_header_bytes(path.read_bytes(), "an upload") == (len(data), rate)


def test_bytes_in_memory_read_as_the_file_does(tmp_path):
    x = np.random.default_rng(3).uniform(-0.5, 0.5, (44100, 2))
    for name, subtype in [("a.wav", "PCM_16"), ("b.wav", "FLOAT"), ("c.flac", "PCM_24")]:
        sf.write(tmp_path / name, x, 44100, subtype=subtype)
        blob = (tmp_path / name).read_bytes()
        for kwargs in [{}, {"max_seconds": 0.25}, {"sample_rate": 22050}]:
            np.testing.assert_array_equal(
                load_audio_bytes(blob, name, **kwargs), load_audio(tmp_path / name, **kwargs)
            )
    with pytest.raises(AudioError, match=r"^upload\.wav: empty file \(0 bytes\)$"):
        load_audio_bytes(b"", "upload.wav")


def test_a_format_known_by_its_extension_alone_reads_from_memory_too(tmp_path):
    # Headerless OKI ADPCM: libsndfile tells it by ".vox" and cannot open the bare bytes.
    path = tmp_path / "a.vox"
    sf.write(path, np.random.default_rng(5).uniform(-0.3, 0.3, 8000), 8000, format="RAW", subtype="VOX_ADPCM")
    blob = path.read_bytes()
    with pytest.raises(sf.LibsndfileError):
        sf.SoundFile(io.BytesIO(blob))
    np.testing.assert_array_equal(load_audio_bytes(blob, "upload.vox"), load_audio(path))
    assert audio_header_bytes(blob, "upload.vox") == (8000, 8000)
    assert audio_header_bytes(blob, "upload.bin") is None
    with pytest.raises(AudioError, match=r"^upload\.bin: cannot be read as audio"):
        load_audio_bytes(blob, "upload.bin")
    assert not list(Path(tempfile.gettempdir()).glob("frozenasd-*.vox"))  # the spilled copies are gone


@pytest.mark.parametrize(("name", "fmt", "subtype", "rate", "container"), _CONTAINERS)
def test_truncated_files_of_every_container_are_refused(tmp_path, name, fmt, subtype, rate, container):
    whole = tmp_path / f"whole-{name}"
    _write_noise(whole, fmt, subtype, rate)
    blob = whole.read_bytes()
    cut = tmp_path / name
    cut.write_bytes(blob[: len(blob) - max(len(blob) // 100, 1)])  # its last percent cut off
    _raises_with_path(cut, f"truncated {container} file")


def _ogg_page_starts(blob: bytes) -> list[int]:
    starts, pos = [], 0
    while pos < len(blob):
        starts.append(pos)
        segments = blob[pos + 26]
        pos += 27 + segments + sum(blob[pos + 27 : pos + 27 + segments])
    return starts


@pytest.mark.parametrize(("name", "subtype", "rate"), [("a.opus", "OPUS", 48000), ("a.ogg", "VORBIS", 16000)])
def test_ogg_cut_between_pages_is_refused(tmp_path, name, subtype, rate):
    whole = tmp_path / f"whole-{name}"
    _write_noise(whole, "OGG", subtype, rate, seconds=2.0)
    blob = whole.read_bytes()
    cut = tmp_path / name
    last = _ogg_page_starts(blob)[-1]
    cut.write_bytes(blob[:last])  # every page whole, the end-of-stream page gone
    _raises_with_path(cut, "truncated Ogg file: the stream ends without its end-of-stream page")
    cut.write_bytes(blob[: last + 10])
    _raises_with_path(cut, f"truncated Ogg file: it ends inside the header of the page at byte {last}")
    cut.write_bytes(blob + b"\0" * 10)  # trailing bytes that are no page are left to libsndfile
    assert len(load_audio(cut)) > 0


_TEN_HOURS = 10 * 3600 * 16000 * 2 * 2  # bytes of 16-bit stereo at 16 kHz


def _patched(blob: bytes, at: int, value: bytes) -> bytes:
    return blob[:at] + value + blob[at + len(value) :]


@pytest.mark.parametrize(
    ("name", "fmt", "patch"),
    [
        ("a.rf64", "RF64", lambda b: _patched(b, b.index(b"ds64") + 16, struct.pack("<Q", _TEN_HOURS))),
        ("a.w64", "W64", lambda b: _patched(b, b.index(b"data") + 16, struct.pack("<Q", _TEN_HOURS + 24))),
        ("ssnd.aiff", "AIFF", lambda b: _patched(b, b.index(b"SSND") + 4, struct.pack(">I", _TEN_HOURS + 8))),
        (
            "comm.aiff",
            "AIFF",
            lambda b: _patched(b, b.index(b"COMM") + 10, struct.pack(">I", _TEN_HOURS // 4)),
        ),
        ("a.au", "AU", lambda b: _patched(b, 8, struct.pack(">I", _TEN_HOURS))),
    ],
)
def test_header_declaring_hours_over_a_few_bytes_is_truncation(tmp_path, name, fmt, patch):
    path = tmp_path / name
    _write_noise(path, fmt, "PCM_16", 16000, seconds=0.1)
    path.write_bytes(patch(path.read_bytes()))
    _raises_with_path(path, rf"truncated {fmt} file: the header declares ({_TEN_HOURS}|{_TEN_HOURS // 4})")


# --- sample rates, magnitudes and libsndfile's messages -------------------------------------------------


def _wav_with_rate(path: Path, rate: int) -> Path:
    sf.write(path, _sine(440, SAMPLE_RATE, 0.05), SAMPLE_RATE, subtype="PCM_16")
    blob = path.read_bytes()
    fmt = blob.index(b"fmt ") + 8
    path.write_bytes(
        _patched(_patched(blob, fmt + 4, struct.pack("<I", rate)), fmt + 8, struct.pack("<I", 2 * rate))
    )
    return path


@pytest.mark.parametrize("rate", [1, 999, 768_001, 0x7FFFFFFF])
def test_implausible_sample_rate_is_refused(tmp_path, rate):
    path = _wav_with_rate(tmp_path / "rate.wav", rate)
    _raises_with_path(path, f"sample rate of {rate} Hz, outside the 1000-768000 Hz")


@pytest.mark.parametrize("rate", [1000, 768_000])
def test_extreme_real_sample_rates_are_read(tmp_path, rate):
    path = tmp_path / "edge.wav"
    sf.write(path, _sine(100, rate, 0.1), rate, subtype="PCM_16")
    assert abs(len(load_audio(path)) - 0.1 * SAMPLE_RATE) <= 1


def test_samples_beyond_float32_are_named_as_such(tmp_path):
    x = _sine(440, SAMPLE_RATE, 0.1)
    x[[3, 50, 90, 91, 1000]] = 1e100
    path = tmp_path / "huge.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="DOUBLE")
    _raises_with_path(path, r"5 samples far outside \[-1, 1\] \(largest magnitude 1e\+100")


def test_uninformative_library_messages_get_a_reason(tmp_path):
    zero_rate = _wav_with_rate(tmp_path / "zero.wav", 0)
    _raises_with_path(
        zero_rate, r"not a valid WAV file, its header is malformed or cut short \(libsndfile: .*SF_INFO"
    )
    aiff = tmp_path / "whole.aiff"
    sf.write(aiff, _sine(440, SAMPLE_RATE, 0.1), SAMPLE_RATE, format="AIFF", subtype="PCM_16")
    cut = tmp_path / "cut.aiff"
    cut.write_bytes(aiff.read_bytes()[:36])  # inside the COMM chunk
    _raises_with_path(
        cut, r"not a valid AIFF file, its header is malformed or cut short \(libsndfile: Unspecified"
    )


def test_a_clip_too_short_to_give_one_sample_is_refused(tmp_path):
    path = tmp_path / "one.wav"
    sf.write(path, np.array([0.5]), 48000, subtype="FLOAT")  # 1 frame at 48 kHz: none at 16 kHz
    _raises_with_path(path, "too short: its 1 frames at 48000 Hz give no sample at 16000 Hz")


# --- memory ---------------------------------------------------------------------------------------------


def test_a_block_holds_read_block_samples_whatever_the_channel_count(tmp_path, monkeypatch):
    import frozenasd.data.audio as audio

    path = tmp_path / "many.wav"
    sf.write(path, np.zeros((1000, 40)), SAMPLE_RATE, subtype="PCM_16")
    sizes: list[int] = []
    read = audio.sf.SoundFile.read
    monkeypatch.setattr(
        audio.sf.SoundFile, "read", lambda self, n, **k: sizes.append(n) or read(self, n, **k)
    )
    monkeypatch.setattr(audio, "READ_BLOCK", 4000)
    assert len(load_audio(path)) == 1000
    assert max(sizes) == 100  # frames of 40 channels: 4000 samples


def test_memory_is_the_mono_result_not_the_decoded_file(tmp_path, monkeypatch):
    """Decoding, channel mean and resampling go a block at a time: a 48 kHz stereo file read to 16 kHz
    costs about its float32 mono result, not the float64 signal at 48 kHz."""
    import tracemalloc

    import frozenasd.data.audio as audio

    path = tmp_path / "long.wav"
    seconds = 20
    sf.write(path, np.zeros((48000 * seconds, 2), np.int16), 48000, subtype="PCM_16")
    monkeypatch.setattr(audio, "READ_BLOCK", 1 << 16)
    tracemalloc.start()
    try:
        y = load_audio(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(y) == SAMPLE_RATE * seconds
    block = (1 << 16) * 8
    assert peak < 2 * y.nbytes + 6 * block, peak  # the float64 48 kHz signal alone is 3 × 2 × y.nbytes


# --- fuzz ---------------------------------------------------------------------------------------------

_FUZZ_FORMATS = [  # (file name, format, subtype)
    ("pcm16.wav", "WAV", "PCM_16"),
    ("float.wav", "WAV", "FLOAT"),
    ("double.wav", "WAV", "DOUBLE"),
    ("ext.wav", "WAVEX", "PCM_24"),
    ("a.flac", "FLAC", "PCM_16"),
    ("a.aiff", "AIFF", "PCM_16"),
    ("ulaw.aifc", "AIFF", "ULAW"),
    ("a.ogg", "OGG", "VORBIS"),
    ("a.opus", "OGG", "OPUS"),
    ("a.w64", "W64", "PCM_16"),
    ("a.rf64", "RF64", "PCM_16"),
    ("a.caf", "CAF", "PCM_16"),
    ("a.au", "AU", "PCM_16"),
    ("a.mp3", "MP3", "MPEG_LAYER_III"),
]
_ABSURD_WORDS = (0, 1, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
_TEN_HOURS = 10 * 3600 * 8000 * 2 * 2  # bytes of 16-bit stereo at 8 kHz


def _set(blob: bytes, at: int, value: bytes) -> bytes:
    return blob[:at] + value + blob[at + len(value) :]


def _absurd_headers(name: str, blob: bytes) -> dict[str, bytes]:
    """Hand-made header fields of one valid file: absurd rates, channel counts and data sizes."""
    out: dict[str, bytes] = {}
    if name == "pcm16.wav":
        fmt = blob.index(b"fmt ") + 8
        for rate in (0, 1, 999, 768_001, 0xFFFFFFFF):
            out[f"rate{rate}"] = _set(blob, fmt + 4, struct.pack("<I", rate))
        for channels in (0, 1025, 0xFFFF):
            out[f"channels{channels}"] = _set(blob, fmt + 2, struct.pack("<H", channels))
        out["bits0"] = _set(blob, fmt + 14, struct.pack("<H", 0))
        out["fmt_huge"] = _set(blob, fmt - 4, struct.pack("<I", 0x7FFFFFF0))
        out["data_10h"] = _set(blob, blob.index(b"data") + 4, struct.pack("<I", _TEN_HOURS))
    elif name == "a.rf64":
        ds64 = blob.index(b"ds64") + 8
        out["data_10h"] = _set(blob, ds64 + 8, struct.pack("<QQ", _TEN_HOURS, _TEN_HOURS // 4))
        out["data_2e63"] = _set(blob, ds64 + 8, struct.pack("<Q", 1 << 63))
    elif name == "a.w64":
        out["data_10h"] = _set(blob, blob.index(b"data") + 16, struct.pack("<Q", _TEN_HOURS + 24))
    elif name == "a.aiff":
        comm, ssnd = blob.index(b"COMM") + 8, blob.index(b"SSND") + 4
        out["frames_10h"] = _set(blob, comm + 2, struct.pack(">I", _TEN_HOURS // 4))
        out["ssnd_10h"] = _set(blob, ssnd, struct.pack(">I", _TEN_HOURS + 8))
        out["both_10h"] = _set(out["frames_10h"], ssnd, struct.pack(">I", _TEN_HOURS + 8))
        out["rate_huge"] = _set(blob, comm + 8, bytes.fromhex("7ffe8000000000000000"))
        out["rate_nan"] = _set(blob, comm + 8, bytes.fromhex("7fffc000000000000000"))
        out["channels0"] = _set(blob, comm, struct.pack(">H", 0))
    elif name == "a.au":
        out["data_10h"] = _set(blob, 8, struct.pack(">I", _TEN_HOURS))
        out["offset_huge"] = _set(blob, 4, struct.pack(">I", 0x7FFFFFFF))
    elif name == "a.caf":
        out["data_10h"] = _set(blob, blob.index(b"data") + 4, struct.pack(">q", _TEN_HOURS + 4))
    return out


def _malformed_files(root: Path, seed: int = 0) -> list[Path]:
    """Seeded malformed files: cuts, byte flips and absurd header words of valid files, and garbage."""
    rng = np.random.default_rng(seed)
    signal = rng.uniform(-0.5, 0.5, (800, 2))  # 0.1 s of stereo noise at 8 kHz
    variants: dict[str, bytes] = {"empty.wav": b"", "text.wav": b"not audio\n" * 30}
    for magic in (
        b"RIFF",
        b"RIFF\x00\x01\x00\x00WAVEfmt ",
        b"FORM",
        b"OggS",
        b"fLaC",
        b"caff",
        b".snd",
        b"RF64",
    ):
        for size in (0, 8, 40, 600):
            variants[f"{magic[:4].decode(errors='replace')}-garbage{size}.bin"] = magic + rng.bytes(size)
    for name, fmt, subtype in _FUZZ_FORMATS:
        valid = root / f"valid-{name}"
        sf.write(valid, signal, 8000, format=fmt, subtype=subtype)
        blob = valid.read_bytes()
        stem, ext = name.rsplit(".", 1)
        cuts = {1, 4, 8, 12, 16, 20, 24, 36, 44, 60, len(blob) - 1, *rng.integers(1, len(blob), 6).tolist()}
        for cut in sorted(cuts):
            variants[f"{stem}-cut{cut}.{ext}"] = blob[:cut]
        for k in range(10):
            flipped = bytearray(blob)
            for at in rng.integers(0, min(len(blob), 128), rng.integers(1, 4)):
                flipped[at] = rng.integers(0, 256)
            variants[f"{stem}-flip{k}.{ext}"] = bytes(flipped)
        for k in range(6):  # corrupt audio data, wherever it falls
            flipped = bytearray(blob)
            for at in rng.integers(0, len(blob), 8):
                flipped[at] ^= 1 << int(rng.integers(0, 8))
            variants[f"{stem}-data{k}.{ext}"] = bytes(flipped)
        for k in range(8):
            at = 2 * int(rng.integers(0, 32))
            word = struct.pack("<>"[k % 2] + "I", _ABSURD_WORDS[rng.integers(len(_ABSURD_WORDS))])
            variants[f"{stem}-word{k}.{ext}"] = _set(blob, at, word)
        for field, mutated in _absurd_headers(name, blob).items():
            variants[f"{stem}-{field}.{ext}"] = mutated
    paths = []
    for file_name, blob in variants.items():
        path = root / file_name
        path.write_bytes(blob)
        paths.append(path)
    return paths


_LIBRARY_WORDS = (
    "SF_INFO struct incomplete",
    "Unspecified internal error",
    "psf_fseek",
    "File does not exist",
)


def _outcome(path: Path) -> np.ndarray | AudioError:
    try:
        return load_audio(path)
    except AudioError as exc:
        return exc
    except Exception as exc:  # anything else is the failure this test looks for
        pytest.fail(f"{path}: {exc!r} escaped load_audio")


def test_no_malformed_file_escapes_a_clear_error_or_exhausts_the_machine(tmp_path):
    """Every seeded malformed file is either read as a finite float32 signal of plausible length or
    refused with an AudioError naming it, in bounded time and memory."""
    import time
    import tracemalloc

    paths = _malformed_files(tmp_path)
    assert len(paths) > 500
    read = 0
    for path in paths:
        tracemalloc.start()
        start = time.perf_counter()
        try:
            outcome = _outcome(path)
            elapsed, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert elapsed < 2.0 and peak < 32 << 20, (path, elapsed, peak)
        if isinstance(outcome, AudioError):
            message = str(outcome)
            assert str(path) in message, message
            if any(words in message for words in _LIBRARY_WORDS):
                assert "header is malformed or cut short" in message, message
            continue
        read += 1
        assert outcome.dtype == np.float32 and outcome.ndim == 1, path
        # at most 16 samples at 16 kHz per byte: one 8-bit frame at the lowest rate accepted, 1 kHz
        assert 0 < outcome.size <= 16 * path.stat().st_size, (path, outcome.size)
        assert np.isfinite(outcome).all(), path
    assert 0 < read < len(paths) // 4  # the valid files and harmless flips are read, the rest refused
