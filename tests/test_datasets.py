"""Downloading DCASE data sets: real HTTP against a local Zenodo stand-in, zips built here."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import stat
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from zenodo_server import LINK_STYLES, FakeZenodo

from frozenasd.data.datasets import (
    BASE_URL_ENV,
    DATASETS,
    STATE_DIR,
    download_dataset,
    format_datasets_table,
    get_dataset,
)
from frozenasd.data.dcase import discover_machines, list_clips
from frozenasd.errors import FrozenASDError

# ------------------------------------------------------------------ archives


def wav_bytes(seed: int, samples: int = 800) -> bytes:
    """A short 16 kHz 16-bit mono WAV of noise (incompressible, so archive sizes are predictable)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(buf, rng.uniform(-0.5, 0.5, samples).astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def build_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def machine_files(machine: str, part: str, seed: int = 0, samples: int = 800) -> dict[str, bytes]:
    """Relative paths (inside the machine folder) -> WAV bytes of one archive part."""
    files: dict[str, bytes] = {}
    splits = {"dev": ("train", "test"), "train": ("train",), "test": ("test",)}[part]
    for k, split in enumerate(splits):
        for i in range(2):
            if split == "train":
                name = f"section_00_source_train_normal_{i:04d}_{machine}.wav"
            elif part == "test":
                name = f"section_00_{i:04d}.wav"
            else:
                name = f"section_00_source_test_{('normal', 'anomaly')[i]}_{i:04d}.wav"
            files[f"{split}/{name}"] = wav_bytes(
                zlib.crc32(f"{machine}/{part}/{seed}/{k}/{i}".encode()), samples
            )
    return files


def serve_dataset(
    z: FakeZenodo, name: str, machines: list[str] | None = None, top: str = "{m}/", samples: int = 800
) -> dict[str, dict[str, bytes]]:
    """Serve the archives of a registry data set (real record ids and names); returns what each holds."""
    spec = DATASETS[name]
    expected: dict[str, dict[str, bytes]] = {}
    for machine in machines or list(spec.machines):
        for archive in spec.machines[machine]:
            files = machine_files(machine, archive.part, samples=samples)
            prefix = top.format(m=machine)
            z.add_file(archive.record, archive.filename, build_zip({prefix + k: v for k, v in files.items()}))
            expected.setdefault(machine, {}).update(files)
    return expected


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def files_outside(root: Path, inside: Path) -> set[Path]:
    """Files and links under ``root`` but not under ``inside`` (folders leading to ``inside`` aside)."""
    return {p for p in root.rglob("*") if inside not in p.parents and (p.is_file() or p.is_symlink())}


@pytest.fixture
def zenodo():
    with FakeZenodo() as server:
        yield server


@pytest.fixture(autouse=True)
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BASE_URL_ENV, raising=False)


def fetch(z: FakeZenodo, name: str, dest: Path, **kwargs) -> Path:
    kwargs.setdefault("progress", False)
    return download_dataset(name, dest, base_url=z.base_url, **kwargs)


# -------------------------------------------------------------- the layout


def test_full_download_gives_dcase_layout(zenodo: FakeZenodo, tmp_path: Path) -> None:
    expected = serve_dataset(zenodo, "dcase2024-dev")
    dest = fetch(zenodo, "dcase2024-dev", tmp_path / "dev")
    assert dest == tmp_path / "dev"
    assert discover_machines(dest) == sorted(DATASETS["dcase2024-dev"].machines)
    for machine, files in expected.items():
        assert tree(dest / machine) == files
    clips = list_clips(dest, "fan", "test")
    assert sorted(c.label for c in clips) == ["anomaly", "normal"]
    state = dest / STATE_DIR
    assert not list(state.glob("*.zip")) and not list(state.glob("*.part"))
    assert len(list(state.glob("*.done"))) == 7


def test_eval_set_takes_train_and_test_from_their_records(zenodo: FakeZenodo, tmp_path: Path) -> None:
    expected = serve_dataset(zenodo, "dcase2024-eval", ["3DPrinter"])
    dest = fetch(zenodo, "dcase2024-eval", tmp_path / "eval", machines=["3DPrinter"])
    assert tree(dest / "3DPrinter") == expected["3DPrinter"]
    assert {p.name for p in (dest / "3DPrinter").iterdir()} == {"train", "test"}
    assert zenodo.file_gets("eval_data_3DPrinter_train_r2.zip") and zenodo.file_gets(
        "eval_data_3DPrinter_test.zip"
    )


def test_nested_top_folder_and_2021_split_test_folders_are_normalised(
    zenodo: FakeZenodo, tmp_path: Path
) -> None:
    train = {"train/section_00_source_train_normal_0000_a.wav": wav_bytes(1)}
    src = {"source_test/section_00_source_test_anomaly_0000_a.wav": wav_bytes(2)}
    tgt = {"target_test/section_00_target_test_normal_0000_a.wav": wav_bytes(3)}
    members = {f"dev_data/fan/{k}": v for k, v in {**train, **src, **tgt}.items()}
    members["dev_data/fan/attributes_00.csv"] = b"file_name,d1p\n"
    members["__MACOSX/dev_data/fan/train/._section_00.wav"] = b"junk"
    members["dev_data/readme.txt"] = b"outside the machine folder"
    zenodo.add_file("4562016", "dev_data_fan.zip", build_zip(members))
    dest = fetch(zenodo, "dcase2021-dev", tmp_path / "d21", machines=["fan"])
    assert tree(dest / "fan") == {
        "attributes_00.csv": b"file_name,d1p\n",
        **train,
        "test/section_00_source_test_anomaly_0000_a.wav": wav_bytes(2),
        "test/section_00_target_test_normal_0000_a.wav": wav_bytes(3),
    }
    assert discover_machines(dest) == ["fan"]
    assert not (dest / "readme.txt").exists() and not (dest / "__MACOSX").exists()


def test_machine_filter_downloads_only_those(zenodo: FakeZenodo, tmp_path: Path) -> None:
    serve_dataset(zenodo, "dcase2024-dev")
    dest = fetch(zenodo, "dcase2024-dev", tmp_path / "dev", machines=["FAN", "bearing"])
    assert discover_machines(dest) == ["bearing", "fan"]
    fetched = {entry.file for entry in zenodo.log if entry.file}
    assert fetched == {"dev_fan.zip", "dev_bearing.zip"}


# ------------------------------------------------------------------ resume


def test_broken_transfer_resumes_within_one_call(zenodo: FakeZenodo, tmp_path: Path) -> None:
    expected = serve_dataset(zenodo, "dcase2024-dev", ["fan"], samples=60_000)
    size = len(zenodo.records["10902294"]["dev_fan.zip"])
    zenodo.cut_after("dev_fan.zip", size // 2)
    dest = fetch(zenodo, "dcase2024-dev", tmp_path / "dev", machines=["fan"])
    first, second = zenodo.file_gets("dev_fan.zip")
    assert first.range is None and first.sent == size // 2
    assert second.range is not None and second.status == 206
    kept = int(second.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < kept <= size // 2
    assert second.sent == size - kept < size
    assert tree(dest / "fan") == expected["fan"]


def test_killed_download_continues_on_the_next_run(zenodo: FakeZenodo, tmp_path: Path) -> None:
    expected = serve_dataset(zenodo, "dcase2024-dev", ["fan"], samples=60_000)
    archive = zenodo.records["10902294"]["dev_fan.zip"]
    zenodo.cut_after("dev_fan.zip", len(archive) // 2)
    dest = tmp_path / "dev"
    with pytest.raises(FrozenASDError, match="re-run to resume") as err:
        fetch(zenodo, "dcase2024-dev", dest, machines=["fan"], retries=0)
    assert "dev_fan.zip" in str(err.value)
    part = dest / STATE_DIR / "dev_fan.zip.part"
    kept = part.stat().st_size
    assert 0 < kept <= len(archive) // 2 and part.read_bytes() == archive[:kept]
    assert not (dest / "fan").exists()

    fetch(zenodo, "dcase2024-dev", dest, machines=["fan"], retries=0)
    second = zenodo.file_gets("dev_fan.zip")[-1]
    assert second.range == f"bytes={kept}-" and second.status == 206
    assert second.sent == len(archive) - kept
    assert tree(dest / "fan") == expected["fan"]
    assert not part.exists()


def test_server_ignoring_range_restarts_cleanly(zenodo: FakeZenodo, tmp_path: Path) -> None:
    expected = serve_dataset(zenodo, "dcase2024-dev", ["fan"], samples=60_000)
    archive = zenodo.records["10902294"]["dev_fan.zip"]
    zenodo.ignore_range = True
    zenodo.cut_after("dev_fan.zip", len(archive) // 2)
    dest = tmp_path / "dev"
    with pytest.raises(FrozenASDError):
        fetch(zenodo, "dcase2024-dev", dest, machines=["fan"], retries=0)
    assert (dest / STATE_DIR / "dev_fan.zip.part").stat().st_size > 0

    fetch(zenodo, "dcase2024-dev", dest, machines=["fan"], retries=0)
    second = zenodo.file_gets("dev_fan.zip")[-1]
    assert second.range is not None and second.status == 200 and second.sent == len(archive)
    assert tree(dest / "fan") == expected["fan"]


# --------------------------------------------------------------- integrity


@pytest.mark.parametrize("fault", ["md5", "size"])
def test_damaged_download_is_deleted_with_a_clear_error(
    zenodo: FakeZenodo, tmp_path: Path, fault: str
) -> None:
    serve_dataset(zenodo, "dcase2024-dev", ["fan"])
    good = zenodo.records["10902294"]["dev_fan.zip"]
    bad = bytes([good[0] ^ 0xFF]) + good[1:] if fault == "md5" else good[:-10]
    zenodo.serve_instead("dev_fan.zip", bad)
    dest = tmp_path / "dev"
    with pytest.raises(FrozenASDError) as err:
        fetch(zenodo, "dcase2024-dev", dest, machines=["fan"])
    message = str(err.value)
    assert "dev_fan.zip" in message and fault in message and "re-run" in message
    assert not list((dest / STATE_DIR).glob("dev_fan.zip*"))
    assert not (dest / "fan").exists()


def test_damaged_zip_leaves_no_machine_folder(zenodo: FakeZenodo, tmp_path: Path) -> None:
    data = bytearray(build_zip({"fan/train/a.wav": wav_bytes(1), "fan/train/b.wav": wav_bytes(2)}))
    payload = wav_bytes(2)
    at = data.index(payload) + len(payload) // 2  # inside the second member: its CRC no longer matches
    data[at] ^= 0xFF
    zenodo.add_file("10902294", "dev_fan.zip", bytes(data))
    dest = tmp_path / "dev"
    with pytest.raises(FrozenASDError, match="dev_fan.zip"):
        fetch(zenodo, "dcase2024-dev", dest, machines=["fan"])
    assert not (dest / "fan").exists()
    assert not list((dest / STATE_DIR).glob("*.extracting")) and not list((dest / STATE_DIR).glob("*.done"))


def _typed_member(name: str, kind: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (kind | 0o777) << 16
    return info


@pytest.mark.parametrize(
    "member",
    [
        "../evil.wav",
        "../../../../evil.wav",
        "fan/train/../../../../evil.wav",
        "fan\\train\\..\\..\\..\\..\\evil.wav",
        "ABSOLUTE",
        "C:/evil.wav",
        "SYMLINK",
        "DEVICE",
    ],
)
def test_unsafe_members_are_refused(zenodo: FakeZenodo, tmp_path: Path, member: str) -> None:
    outside = tmp_path / "evil.wav"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fan/train/section_00_source_train_normal_0000.wav", wav_bytes(1))
        if member == "ABSOLUTE":
            zf.writestr(str(outside), b"evil")
        elif member == "SYMLINK":
            zf.writestr(_typed_member("fan/train/link.wav", stat.S_IFLNK), "../../../../evil.wav")
        elif member == "DEVICE":
            zf.writestr(_typed_member("fan/train/dev.wav", stat.S_IFCHR), b"")
        else:
            zf.writestr(member, b"evil")
    zenodo.add_file("10902294", "dev_fan.zip", buf.getvalue())
    dest = tmp_path / "a" / "b" / "dest"
    (tmp_path / "marker.txt").write_text("present before")
    before = files_outside(tmp_path, dest)

    with pytest.raises(FrozenASDError, match="refused member") as err:
        fetch(zenodo, "dcase2024-dev", dest, machines=["fan"])
    assert "dev_fan.zip" in str(err.value)
    assert not outside.exists() and not (dest / "evil.wav").exists()
    assert files_outside(tmp_path, dest) == before
    assert not (dest / "fan").exists()
    assert [p.name for p in dest.rglob("*") if p.is_file() and p.suffix == ".wav"] == []


def test_archive_with_two_machine_folders_is_refused(zenodo: FakeZenodo, tmp_path: Path) -> None:
    zenodo.add_file("10902294", "dev_fan.zip", build_zip({"fan/train/a.wav": b"a", "valve/test/b.wav": b"b"}))
    with pytest.raises(FrozenASDError, match="more than one machine folder"):
        fetch(zenodo, "dcase2024-dev", tmp_path / "dev", machines=["fan"])


def patch_headers(data: bytes, *, flags: int | None = None, method: int | None = None) -> bytes:
    """The zip ``data`` with every member's flag bits or compression method rewritten (both headers)."""
    out = bytearray(data)
    for signature, flags_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = out.find(signature)
        while at >= 0:
            if flags is not None:
                out[at + flags_at : at + flags_at + 2] = (
                    int.from_bytes(out[at + flags_at : at + flags_at + 2], "little") | flags
                ).to_bytes(2, "little")
            if method is not None:
                out[at + method_at : at + method_at + 2] = method.to_bytes(2, "little")
            at = out.find(signature, at + 4)
    return bytes(out)


def zeros_zip(name: str, size: int) -> bytes:
    """One deflated member of ``size`` zero bytes (a zip bomb: about 1/1000 of that on disk)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open(name, "w") as member:
        block = bytes(1 << 20)
        for _ in range(size >> 20):
            member.write(block)
    return buf.getvalue()


HOSTILE_ARCHIVES = {
    "encrypted": (
        lambda: patch_headers(build_zip({"fan/train/a.wav": wav_bytes(1)}), flags=0x1),
        "encrypted",
    ),
    "unknown method": (
        lambda: patch_headers(build_zip({"fan/train/a.wav": wav_bytes(1)}), method=99),
        "compression method 99",
    ),
    "file and folder": (
        lambda: build_zip({"fan/train/a.wav": wav_bytes(1), "fan/train/a.wav/b.wav": wav_bytes(2)}),
        "train/a.wav would be both a file and a folder",
    ),
    "long name": (
        lambda: build_zip({"fan/train/" + "a" * 5000 + ".wav": wav_bytes(1)}),
        "name longer than file systems hold",
    ),
    "zip bomb": (
        lambda: zeros_zip("fan/train/a.wav", 80 << 20),
        r"add up to 83\.9 MB, more than 10x the archive's \d+ bytes .* zip bomb",
    ),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_ARCHIVES))
def test_hostile_archives_are_clear_errors(zenodo: FakeZenodo, tmp_path: Path, kind: str) -> None:
    build, message = HOSTILE_ARCHIVES[kind]
    zenodo.add_file("10902294", "dev_fan.zip", build())
    dest = tmp_path / "dev"
    with pytest.raises(FrozenASDError, match=message) as err:
        fetch(zenodo, "dcase2024-dev", dest, machines=["fan"])
    assert str(err.value).startswith("dev_fan.zip: ") and len(str(err.value)) < 500
    assert not (dest / "fan").exists()
    assert not list((dest / STATE_DIR).glob("*.extracting")) and not list((dest / STATE_DIR).glob("*.done"))


def test_extraction_needs_the_free_disk(zenodo: FakeZenodo, tmp_path: Path, monkeypatch) -> None:
    from frozenasd.data.datasets import extract

    serve_dataset(zenodo, "dcase2024-dev", machines=["fan"])
    real = extract.shutil.disk_usage
    monkeypatch.setattr(extract.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(
        FrozenASDError,
        match=r"dev_fan.zip: extracting needs \d{4,5} bytes but .*dev/\.downloads has 1000 bytes free",
    ):
        fetch(zenodo, "dcase2024-dev", tmp_path / "dev", machines=["fan"])
    assert not (tmp_path / "dev" / "fan").exists()


def test_a_member_is_read_no_further_than_its_budget(tmp_path: Path) -> None:
    from frozenasd.zip_limits import iter_member, read_member

    path = tmp_path / "a.zip"
    path.write_bytes(build_zip({"x": bytes(5000), "y": bytes(100)}))
    with zipfile.ZipFile(path) as zf:
        with pytest.raises(ValueError, match=r"yields more than 1000 bytes \(it declares 5000\)"):
            b"".join(iter_member(zf, zf.getinfo("x"), 1000))
        with pytest.raises(FrozenASDError, match=r"a.zip: member 'x': 5000 bytes uncompressed, more than"):
            read_member(zf, zf.getinfo("x"), 1000, "a.zip")
        assert read_member(zf, zf.getinfo("y"), 1000, "a.zip") == bytes(100)


def test_links_in_the_destination_are_never_followed(zenodo: FakeZenodo, tmp_path: Path) -> None:
    expected = serve_dataset(zenodo, "dcase2024-dev", machines=["fan"])
    dest = tmp_path / "dev"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept.txt").write_text("mine")
    (dest / "fan").mkdir(parents=True)
    (dest / "fan" / "train").symlink_to(outside, target_is_directory=True)
    (dest / STATE_DIR).mkdir()
    (dest / STATE_DIR / "dev_fan.zip.extracting").symlink_to(outside, target_is_directory=True)
    (dest / STATE_DIR / "dev_fan.zip.part").symlink_to(outside / "kept.txt")

    fetch(zenodo, "dcase2024-dev", dest, machines=["fan"])
    assert sorted(p.name for p in outside.iterdir()) == ["kept.txt"]
    assert (outside / "kept.txt").read_text() == "mine"
    assert not (dest / "fan" / "train").is_symlink()
    assert tree(dest / "fan") == expected["fan"]


def test_a_hostile_archive_is_one_line_from_the_command(zenodo: FakeZenodo, tmp_path: Path) -> None:
    zenodo.add_file("10902294", "dev_fan.zip", HOSTILE_ARCHIVES["encrypted"][0]())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "frozenasd",
            "download",
            "dcase2024-dev",
            "--machines",
            "fan",
            "--no-progress",
        ],
        cwd=tmp_path,
        env={**os.environ, BASE_URL_ENV: zenodo.base_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: dev_fan.zip: refused member 'fan/train/a.wav': encrypted (password-protected) member; "
        "nothing was extracted"
    ]


# ----------------------------------------------------------------- re-runs


def test_rerun_skips_extracted_archives(zenodo: FakeZenodo, tmp_path: Path) -> None:
    serve_dataset(zenodo, "dcase2024-dev", ["fan", "valve"])
    dest = tmp_path / "dev"
    fetch(zenodo, "dcase2024-dev", dest, machines=["fan", "valve"])
    file_gets = sum(1 for e in zenodo.log if e.file)
    assert file_gets == 2

    fetch(zenodo, "dcase2024-dev", dest, machines=["fan", "valve"])
    assert sum(1 for e in zenodo.log if e.file) == file_gets  # only the record was read again
    marker = json.loads((dest / STATE_DIR / "dev_fan.zip.done").read_text())
    assert marker["md5"] == hashlib.md5(zenodo.records["10902294"]["dev_fan.zip"]).hexdigest()

    for p in sorted((dest / "fan").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    (dest / "fan").rmdir()
    fetch(zenodo, "dcase2024-dev", dest, machines=["fan", "valve"])
    assert [e.file for e in zenodo.log if e.file][file_gets:] == ["dev_fan.zip"]
    assert discover_machines(dest) == ["fan", "valve"]


def test_kept_archive_is_reused_without_downloading(zenodo: FakeZenodo, tmp_path: Path) -> None:
    expected = serve_dataset(zenodo, "dcase2024-dev", ["fan"])
    dest = tmp_path / "dev"
    fetch(zenodo, "dcase2024-dev", dest, machines=["fan"], keep_archives=True)
    kept = dest / STATE_DIR / "dev_fan.zip"
    assert kept.read_bytes() == zenodo.records["10902294"]["dev_fan.zip"]
    (dest / STATE_DIR / "dev_fan.zip.done").unlink()
    fetch(zenodo, "dcase2024-dev", dest, machines=["fan"], keep_archives=True)
    assert len(zenodo.file_gets("dev_fan.zip")) == 1
    assert tree(dest / "fan") == expected["fan"]


def test_a_folder_holds_one_dataset(zenodo: FakeZenodo, tmp_path: Path) -> None:
    serve_dataset(zenodo, "dcase2024-dev", ["fan"])
    fetch(zenodo, "dcase2024-dev", tmp_path / "dev", machines=["fan"])
    with pytest.raises(FrozenASDError, match="holds dcase2024-dev"):
        fetch(zenodo, "dcase2023-dev", tmp_path / "dev", machines=["fan"])


# -------------------------------------------------------------- the server


@pytest.mark.parametrize("style", LINK_STYLES)
def test_every_record_shape_is_understood(tmp_path: Path, style: str) -> None:
    with FakeZenodo(link_style=style) as z:
        expected = serve_dataset(z, "dcase2024-dev", ["fan"])
        dest = fetch(z, "dcase2024-dev", tmp_path / "dev", machines=["fan"])
        (get,) = z.file_gets("dev_fan.zip")
    assert get.status == 200
    assert tree(dest / "fan") == expected["fan"]


def test_base_url_from_the_environment(
    zenodo: FakeZenodo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = serve_dataset(zenodo, "dcase2024-dev", ["fan"])
    monkeypatch.setenv(BASE_URL_ENV, zenodo.base_url + "/")
    dest = download_dataset("dcase2024-dev", tmp_path / "dev", machines=["fan"], progress=False)
    assert tree(dest / "fan") == expected["fan"]


def test_progress_output_names_the_archive(zenodo: FakeZenodo, tmp_path: Path, capsys) -> None:
    serve_dataset(zenodo, "dcase2026-eval", ["Sander"])
    download_dataset("dcase2026-eval", tmp_path / "e26", machines=["Sander"], base_url=zenodo.base_url)
    err = capsys.readouterr().err
    assert "eval_data_Sander_train.zip" in err and "test archives are not in the official list" in err
    assert [e.file for e in zenodo.log if e.file] == ["eval_data_Sander_train.zip"]


def test_missing_record_and_missing_file(zenodo: FakeZenodo, tmp_path: Path) -> None:
    with pytest.raises(FrozenASDError, match="record 10902294 not found"):
        fetch(zenodo, "dcase2024-dev", tmp_path / "a", machines=["fan"])
    zenodo.add_file("10902294", "dev_other.zip", b"x")
    with pytest.raises(FrozenASDError, match=r"has no file dev_fan.zip \(it lists: dev_other.zip\)"):
        fetch(zenodo, "dcase2024-dev", tmp_path / "b", machines=["fan"])


def test_unreachable_server_names_the_url(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(FrozenASDError, match=rf"cannot reach {url}/api/records/10902294"):
        download_dataset("dcase2024-dev", tmp_path / "dev", machines=["fan"], base_url=url, progress=False)


def test_unknown_dataset_or_machine_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(FrozenASDError, match="unknown data set 'dcase1999-dev'.*dcase2024-dev"):
        download_dataset("dcase1999-dev", tmp_path, base_url="http://127.0.0.1:9", progress=False)
    with pytest.raises(FrozenASDError, match="unknown machine type 'toaster'.*bearing.*valve"):
        download_dataset("dcase2024-dev", tmp_path, machines=["toaster"], base_url="http://127.0.0.1:9")
    assert not (tmp_path / STATE_DIR).exists()


# ---------------------------------------------------------------- registry

# URLs as written in the official baseline's download lists (nttcslab/dcase2023_task2_baseline_ae,
# datasets/download_path_*.yaml): each must resolve to the same record and file in the registry.
OFFICIAL_URLS = {
    "dcase2020-dev": ("ToyConveyor", "https://zenodo.org/record/3678171/files/dev_data_ToyConveyor.zip"),
    "dcase2020-eval": ("pump", "https://zenodo.org/record/3841772/files/eval_data_test_pump.zip"),
    "dcase2021-dev": ("gearbox", "https://zenodo.org/record/4562016/files/dev_data_gearbox.zip"),
    "dcase2021-eval": ("ToyTrain", "https://zenodo.org/record/4660992/files/eval_data_ToyTrain_train.zip"),
    "dcase2022-dev": ("bearing", "https://zenodo.org/record/6355122/files/dev_bearing.zip"),
    "dcase2022-eval": ("valve", "https://zenodo.org/record/6586456/files/eval_data_valve_test.zip"),
    "dcase2023-dev": ("slider", "https://zenodo.org/record/7882613/files/dev_slider.zip"),
    "dcase2023-eval": ("ToyNscale", "https://zenodo.org/record/7830345/files/eval_data_ToyNscale_train.zip"),
    "dcase2024-dev": ("valve", "https://zenodo.org/record/10902294/files/dev_valve.zip"),
    "dcase2024-eval": (
        "RoboticArm",
        "https://zenodo.org/records/11259435/files/eval_data_RoboticArm_train_r2.zip",
    ),
    "dcase2025-dev": ("gearbox", "https://zenodo.org/records/15097779/files/dev_gearbox.zip"),
    "dcase2025-eval": (
        "CoffeeGrinder",
        "https://zenodo.org/records/15519362/files/eval_data_CoffeeGrinder_test.zip",
    ),
    "dcase2026-dev": ("ToyCar", "https://zenodo.org/records/19336329/files/dev_ToyCar_r2.zip"),
    "dcase2026-eval": (
        "BlowerDustCollector",
        "https://zenodo.org/records/20151556/files/eval_data_BlowerDustCollector_train.zip",
    ),
}


def test_registry_matches_the_official_lists() -> None:
    assert set(DATASETS) == set(OFFICIAL_URLS)
    for name, (machine, url) in OFFICIAL_URLS.items():
        record, filename = url.split("/")[-3], url.split("/")[-1]
        archives = {(a.record, a.filename) for a in DATASETS[name].machines[machine]}
        assert (record, filename) in archives, name
    for spec in DATASETS.values():
        for archives in spec.machines.values():
            parts = [a.part for a in archives]
            assert parts == (
                ["dev"] if spec.kind == "dev" else ["train", "test"] if spec.year < 2026 else ["train"]
            )
    assert get_dataset(" DCASE2024-Dev ") is DATASETS["dcase2024-dev"]


def test_datasets_table_lists_names_and_records() -> None:
    table = format_datasets_table()
    for spec in DATASETS.values():
        line = next(line for line in table.splitlines() if line.startswith(spec.name + " "))
        for record in spec.records:
            assert record in line
        for machine in spec.machines:
            assert machine in line


def test_command_line_downloads_into_the_layout_main_reads(zenodo: FakeZenodo, tmp_path: Path) -> None:
    """`frozenasd download dcase2024-dev --machines fan bearing` (old --machine) writes ./dataset."""
    serve_dataset(zenodo, "dcase2024-dev", machines=["fan", "bearing"])
    env = {**os.environ, BASE_URL_ENV: zenodo.base_url}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "frozenasd",
            "download",
            "dcase2024-dev",
            "--machines",
            "fan",
            "bearing",
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert discover_machines(tmp_path / "dataset") == ["bearing", "fan"]
    assert "next: frozenasd run --data dataset --model eat-base" in result.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "frozenasd", "download", "eat-base", "--machines", "fan"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # --machines is the old spelling of --machine: accepted, and the error names the current one
    assert wrong.returncode == 2 and "--machine applies to data sets" in wrong.stderr
