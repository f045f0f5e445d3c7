from __future__ import annotations

from pathlib import Path

import pytest

from frozenasd.data.dcase import Clip, discover_machines, list_clips, parse_clip_name, sections
from frozenasd.errors import LayoutError


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "section_00_source_train_normal_0000_vel_8_loc_B.wav",
            ("00", "source", "train", "normal", "0000", (("vel", "8"), ("loc", "B")), "dcase2021"),
        ),
        (
            "section_00_target_test_anomaly_0003_noAttribute.wav",
            ("00", "target", "test", "anomaly", "0003", (), "dcase2021"),
        ),
        (
            # an odd trailing token is kept as an attribute with an empty value
            "section_00_source_test_anomaly_0001_pro_A_wt_200_damage1.wav",
            (
                "00",
                "source",
                "test",
                "anomaly",
                "0001",
                (("pro", "A"), ("wt", "200"), ("damage1", "")),
                "dcase2021",
            ),
        ),
        (
            # 2021 development names carry no attributes at all
            "section_03_target_test_normal_0042.wav",
            ("03", "target", "test", "normal", "0042", (), "dcase2021"),
        ),
        (
            "section_01_source_train_normal_0007_car_A1_spd_28V_mic_1.FLAC",
            (
                "01",
                "source",
                "train",
                "normal",
                "0007",
                (("car", "A1"), ("spd", "28V"), ("mic", "1")),
                "dcase2021",
            ),
        ),
        ("normal_id_00_00000000.wav", ("00", None, None, "normal", "00000000", (), "dcase2020")),
        ("anomaly_id_02_00000123.flac", ("02", None, None, "anomaly", "00000123", (), "dcase2020")),
        ("section_00_0001.wav", ("00", None, None, None, "0001", (), "anonymised")),
        # 2021 evaluation test clips keep domain and split but hide the label
        ("section_03_source_test_0000.wav", ("03", "source", "test", None, "0000", (), "anonymised")),
        ("id_05_00000000.wav", ("05", None, None, None, "00000000", (), "anonymised")),
    ],
)
def test_parse_known_conventions(name, expected):
    p = parse_clip_name(name)
    assert (p.section, p.domain, p.split, p.label, p.index, p.attributes, p.naming) == expected


def test_parse_ignores_folders_and_extension_case():
    a = parse_clip_name("/data/fan/test/section_00_target_test_anomaly_0003_noAttribute.WAV")
    b = parse_clip_name("section_00_target_test_anomaly_0003_noAttribute.wav")
    assert a == b


def test_parse_supplemental_kind_leaves_label_unknown():
    p = parse_clip_name("section_00_source_supplemental_clean_0004_noAttribute.wav")
    assert (p.split, p.label, p.index, p.naming) == ("supplemental", None, "0004", "dcase2021")


@pytest.mark.parametrize(
    "name, label, domain, section",
    [
        ("my_anomaly_target_clip.wav", "anomaly", "target", None),
        ("recording_normal_source_section_02_x.wav", "normal", "source", "02"),
        ("abnormal_0003.wav", "anomaly", None, None),
        ("whatever.wav", None, None, None),
        ("section_00_target_test_normal_abc.wav", "normal", "target", "00"),  # index is not a number
        ("README", None, None, None),
    ],
)
def test_parse_unknown_names_do_not_crash(name, label, domain, section):
    p = parse_clip_name(name)
    assert p.naming == "unknown"
    assert (p.label, p.domain, p.section, p.index, p.attributes) == (label, domain, section, None, ())


def test_clip_properties(tmp_path):
    path = tmp_path / "section_00_target_test_anomaly_0003_noAttribute.wav"
    clip = Clip.from_path(path, "fan", "test")
    assert clip.name == path.name
    assert clip.is_anomaly is True
    assert Clip.from_path(tmp_path / "normal_id_00_00000000.wav", "fan", "test").is_anomaly is False
    assert Clip.from_path(tmp_path / "section_00_0001.wav", "fan", "test").is_anomaly is None
    with pytest.raises(AttributeError):
        clip.label = "normal"  # frozen


def _make_dataset(root: Path) -> None:
    for name in (
        "section_00_source_train_normal_0001_a_1.wav",
        "section_00_source_train_normal_0000_a_1.wav",
    ):
        _touch(root / "fan" / "train" / name)
    for name in (
        "section_00_target_test_anomaly_0000_a_1.flac",
        "section_01_source_test_normal_0000_a_1.WAV",
    ):
        _touch(root / "fan" / "test" / name)
    _touch(root / "fan" / "test" / "notes.txt")
    _touch(root / "fan" / "test" / "._section_00_source_test_normal_0009_a_1.wav")  # macOS metadata file
    (root / "fan" / "test" / "folder.wav").mkdir()
    _touch(root / "ToyCar" / "test" / "section_00_0000.wav")  # evaluation set without train
    (root / "not_a_machine" / "other").mkdir(parents=True)
    _touch(root / "stray_file.wav")


def test_discover_machines_sorted_and_filtered(tmp_path):
    _make_dataset(tmp_path)
    assert discover_machines(tmp_path) == sorted(["fan", "ToyCar"])
    assert discover_machines(str(tmp_path)) == ["ToyCar", "fan"]


def test_list_clips_sorted_audio_only(tmp_path):
    _make_dataset(tmp_path)
    train = list_clips(tmp_path, "fan", "train")
    assert [c.name for c in train] == [
        "section_00_source_train_normal_0000_a_1.wav",
        "section_00_source_train_normal_0001_a_1.wav",
    ]
    assert all(c.machine == "fan" and c.split == "train" and c.label == "normal" for c in train)
    test = list_clips(tmp_path, "fan", "test")
    assert [c.name for c in test] == [
        "section_00_target_test_anomaly_0000_a_1.flac",
        "section_01_source_test_normal_0000_a_1.WAV",
    ]
    assert [c.path for c in test] == [tmp_path / "fan" / "test" / c.name for c in test]
    assert sections(test) == ["00", "01"]
    assert sections(list_clips(tmp_path, "ToyCar", "test")) == ["00"]


def test_sections_skips_unknown():
    clips = [
        Clip.from_path(Path(n), "m", "test") for n in ("x.wav", "section_02_0001.wav", "section_00_0001.wav")
    ]
    assert sections(clips) == ["00", "02"]


def test_list_clips_empty_split_folder(tmp_path):
    (tmp_path / "fan" / "train").mkdir(parents=True)
    assert list_clips(tmp_path, "fan", "train") == []


def test_layout_errors_name_the_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(LayoutError, match="nope.*does not exist.*<root>/<machine>/"):
        discover_machines(missing)

    a_file = _touch(tmp_path / "file.wav")
    with pytest.raises(LayoutError, match="file.wav.*not a folder"):
        discover_machines(a_file)

    empty = tmp_path / "empty"
    (empty / "fan" / "other").mkdir(parents=True)
    with pytest.raises(LayoutError, match=r"empty.*no machine folder.*\{train,test\}"):
        discover_machines(empty)

    machine_dir = tmp_path / "ds" / "fan"
    (machine_dir / "train").mkdir(parents=True)
    with pytest.raises(LayoutError, match="single machine folder"):
        discover_machines(machine_dir)

    with pytest.raises(LayoutError, match="valve.*machine folder does not exist"):
        list_clips(tmp_path / "ds", "valve", "train")
    with pytest.raises(LayoutError, match=r"fan[/\\]test.*'test' folder does not exist"):
        list_clips(tmp_path / "ds", "fan", "test")
    with pytest.raises(ValueError, match="split"):
        list_clips(tmp_path / "ds", "fan", "dev")


def test_links_that_lead_nowhere_are_listed_to_be_reported(tmp_path):
    from frozenasd.data.dcase import link_problem

    test = tmp_path / "fan" / "test"
    good = _touch(test / "section_00_source_test_normal_0000_a_1.wav")
    (test / "section_00_source_test_normal_0001_a_1.wav").symlink_to(good)
    (test / "section_00_source_test_normal_0002_a_1.wav").symlink_to(test / "gone.wav")
    (test / "section_00_source_test_normal_0003_a_1.wav").symlink_to(
        test / "section_00_source_test_normal_0003_a_1.wav"
    )
    (test / "section_00_source_test_normal_0004_a_1.wav").symlink_to(tmp_path)  # a folder: not a clip
    clips = list_clips(tmp_path, "fan", "test")
    assert [c.name[-12:] for c in clips] == ["0000_a_1.wav", "0001_a_1.wav", "0002_a_1.wav", "0003_a_1.wav"]
    reasons = [link_problem(c.path) for c in clips]
    assert reasons[:2] == [None, None]
    assert reasons[2] == f"broken symbolic link: its target {test / 'gone.wav'} does not exist"
    assert reasons[3].startswith("symbolic link loop")


def test_a_folder_that_cannot_be_listed_is_named(tmp_path, monkeypatch):
    _make_dataset(tmp_path)
    listing = Path.iterdir

    def denied(self):
        if self.name == "test":
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", denied)
    assert len(list_clips(tmp_path, "fan", "train")) == 2
    with pytest.raises(LayoutError, match=r"fan/test: cannot list the 'test' folder \(Permission denied\)"):
        list_clips(tmp_path, "fan", "test")
    monkeypatch.setattr(Path, "iterdir", lambda self: denied(self.parent / "test"))
    with pytest.raises(LayoutError, match=r"cannot list the dataset folder \(Permission denied\)"):
        discover_machines(tmp_path)


def test_numbers_in_names_are_ascii_digits():
    assert parse_clip_name("section_²_source_test_normal_0000.wav").section is None
    assert parse_clip_name("id_٣_00000000.wav").section is None
    assert parse_clip_name("section_123_source_test_normal_0000.wav").section == "123"
