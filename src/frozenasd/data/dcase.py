"""DCASE Task 2 dataset layout: machine discovery, clip listing and file-name parsing.

Layout: ``<root>/<machine>/{train,test[,supplemental]}/*.wav`` (the other formats in
``AUDIO_EXTENSIONS`` are accepted too).

File-name conventions understood by :func:`parse_clip_name` (extension removed first):

``dcase2021``   ``section_<SS>_<source|target>_<train|test>_<normal|anomaly>_<NNNN>[_<key>_<value>...]``
                (2021 onward). ``noAttribute`` means no attributes. Attributes alternate key and value;
                an odd trailing token without a value (``..._wt_200_damage1``) is kept as ``("damage1", "")``.
                Domain and split tokens may be absent; a label token other than normal/anomaly (e.g. the
                kind of a supplemental clip) is skipped and leaves the label unknown.
``dcase2020``   ``<normal|anomaly>_id_<II>_<NNNNNNNN>``; the machine id is reported as the section.
``anonymised``  either convention without a normal/anomaly label and without attributes, as in the
                evaluation test sets: ``section_00_0001``, ``section_03_source_test_0000``,
                ``id_05_00000000``.
``unknown``     anything else. The label and domain then follow the official baseline's substring rule on
                the lower-cased name (``anomaly`` -> anomaly, else ``normal`` -> normal; ``target``, else
                ``source``), except that ``abnormal`` counts as an anomaly, and the section is taken from a
                ``section_<digits>`` or ``id_<digits>`` part when present.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from frozenasd.errors import LayoutError

SPLITS = ("train", "test", "supplemental")
# What libsndfile (through soundfile) decodes; DCASE data is .wav, a user's own recordings may not be.
AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".aifc",
    ".caf",
    ".w64",
    ".rf64",
)
LAYOUT_HINT = "expected <root>/<machine>/{train,test}/*.wav"

# The two domains of DCASE Task 2 (2022 onward), in code order (0 source, 1 target); every module
# that names them imports them from here.
DOMAINS = ("source", "target")
_LABELS = ("normal", "anomaly")
_NO_ATTRIBUTE = "noAttribute"
_NAME_2020 = re.compile(r"^(?:(normal|anomaly)_)?id_(\d+)_(\d+)$", re.ASCII)
_SECTION_ANYWHERE = re.compile(r"(?:^|_)(?:section|id)_(\d+)(?:_|$)", re.ASCII)


@dataclass(frozen=True)
class ClipName:
    """What a clip's file name says about it."""

    section: str | None
    domain: str | None
    split: str | None
    label: str | None
    index: str | None
    attributes: tuple[tuple[str, str], ...]
    naming: str


@dataclass(frozen=True)
class Clip:
    """One audio clip of a DCASE dataset. ``split`` comes from its folder, the rest from its name."""

    path: Path
    machine: str
    split: str
    section: str | None
    domain: str | None
    label: str | None
    index: str | None
    attributes: tuple[tuple[str, str], ...]
    naming: str

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], machine: str, split: str) -> Clip:
        """Build a clip record from a file path, parsing its name."""
        path = Path(path)
        parsed = parse_clip_name(path.name)
        return cls(
            path=path,
            machine=machine,
            split=split,
            section=parsed.section,
            domain=parsed.domain,
            label=parsed.label,
            index=parsed.index,
            attributes=parsed.attributes,
            naming=parsed.naming,
        )

    @property
    def name(self) -> str:
        """The file name (the key the DCASE evaluator matches rows by)."""
        return self.path.name

    @property
    def is_anomaly(self) -> bool | None:
        """True for anomalous clips, False for normal ones, None when the name does not say."""
        return None if self.label is None else self.label == "anomaly"


def _strip_extension(name: str) -> str:
    base = os.path.basename(name)
    lowered = base.lower()
    for ext in AUDIO_EXTENSIONS:
        if lowered.endswith(ext):
            return base[: -len(ext)]
    return base


def _is_number(token: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts superscripts and other scripts' digits."""
    return token.isascii() and token.isdigit()


def _pairs(tokens: list[str]) -> tuple[tuple[str, str], ...]:
    if tokens == [_NO_ATTRIBUTE]:
        return ()
    pairs = [(tokens[i], tokens[i + 1]) for i in range(0, len(tokens) - 1, 2)]
    if len(tokens) % 2:
        pairs.append((tokens[-1], ""))
    return tuple(pairs)


def _parse_section_name(stem: str) -> ClipName | None:
    """Parse the 2021+ convention; None when the name does not follow it."""
    tokens = stem.split("_")
    if len(tokens) < 3 or tokens[0] != "section" or not _is_number(tokens[1]):
        return None
    section, rest = tokens[1], tokens[2:]
    domain = rest.pop(0) if rest and rest[0] in DOMAINS else None
    split = rest.pop(0) if rest and rest[0] in SPLITS else None
    label = None
    kind_token = False
    if rest and not _is_number(rest[0]):
        kind_token = True
        label = rest[0] if rest[0] in _LABELS else None
        rest.pop(0)
    if not rest or not _is_number(rest[0]):
        return None
    index, attributes = rest[0], _pairs(rest[1:])
    anonymised = not kind_token and not rest[1:]
    naming = "anonymised" if anonymised else "dcase2021"
    return ClipName(section, domain, split, label, index, attributes, naming)


def _parse_unknown(stem: str) -> ClipName:
    """Fallback for names that follow no known convention: the official baseline's substring rule."""
    lowered = stem.lower()
    if "anomaly" in lowered or "abnormal" in lowered:
        label = "anomaly"
    else:
        label = "normal" if "normal" in lowered else None
    domain = "target" if "target" in lowered else "source" if "source" in lowered else None
    match = _SECTION_ANYWHERE.search(lowered)
    section = match.group(1) if match else None
    return ClipName(section, domain, None, label, None, (), "unknown")


def parse_clip_name(name: str) -> ClipName:
    """Parse a clip's file name (with or without folders and extension). Never raises."""
    stem = _strip_extension(name)
    parsed = _parse_section_name(stem)
    if parsed is not None:
        return parsed
    match = _NAME_2020.match(stem)
    if match:
        label, machine_id, index = match.groups()
        naming = "dcase2020" if label else "anonymised"
        return ClipName(machine_id, None, None, label, index, (), naming)
    return _parse_unknown(stem)


def _has_split_folder(folder: Path) -> bool:
    try:
        return any((folder / split).is_dir() for split in ("train", "test"))
    except PermissionError:  # listed as a machine, so that the run names it as unreadable
        return True


def _entries(folder: Path, what: str) -> list[Path]:
    """The entries of ``folder``; LayoutError naming it when it cannot be listed."""
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise LayoutError(f"{folder}: cannot list the {what} ({exc.strerror or exc})") from exc


def discover_machines(root: str | os.PathLike[str]) -> list[str]:
    """Sorted names of the machine folders under ``root`` (those holding ``train/`` and/or ``test/``)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise LayoutError(f"{root}: dataset folder does not exist ({LAYOUT_HINT})")
    if not root.is_dir():
        raise LayoutError(f"{root}: dataset path is not a folder ({LAYOUT_HINT})")
    machines = sorted(
        entry.name
        for entry in _entries(root, "dataset folder")
        if entry.is_dir() and not entry.name.startswith(".") and _has_split_folder(entry)
    )
    if not machines:
        hint = ""
        if _has_split_folder(root):
            hint = f"; {root} looks like a single machine folder, pass its parent folder instead"
        raise LayoutError(f"{root}: no machine folder found ({LAYOUT_HINT}){hint}")
    return machines


def is_audio_file(path: Path) -> bool:
    """A file whose extension is an audio format read here; hidden files are not.

    A symbolic link that leads nowhere (its target is missing, or it is part of a loop) counts, so that
    it is reported as unusable rather than left out unnoticed; a folder or other non-file does not.
    """
    # Hidden files are skipped: archives made on macOS carry "._<name>.wav" metadata files.
    if path.name.startswith(".") or path.suffix.lower() not in AUDIO_EXTENSIONS:
        return False
    return path.is_file() or link_problem(path) is not None


def link_problem(path: Path) -> str | None:
    """Why the symbolic link ``path`` cannot be followed (a loop, a missing target), else None."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except FileNotFoundError:
        return f"broken symbolic link: its target {os.readlink(path)} does not exist"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop: following the link leads back to it"
        return f"symbolic link cannot be followed ({exc.strerror or exc})"
    return None


def list_clips(root: str | os.PathLike[str], machine: str, split: str) -> list[Clip]:
    """The audio clips of one machine and split, sorted by file name (an empty folder gives []).

    Broken symbolic links are listed too (see :func:`is_audio_file`); reading them fails with a reason.
    A folder that cannot be listed raises LayoutError naming it.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    machine_dir = Path(root).expanduser() / machine
    split_dir = machine_dir / split
    try:
        if not machine_dir.is_dir():
            raise LayoutError(f"{machine_dir}: machine folder does not exist ({LAYOUT_HINT})")
        if not split_dir.is_dir():
            raise LayoutError(f"{split_dir}: '{split}' folder does not exist ({LAYOUT_HINT})")
    except PermissionError as exc:
        raise LayoutError(f"{machine_dir}: cannot read the machine folder ({exc.strerror})") from exc
    entries = _entries(split_dir, f"'{split}' folder")
    files = sorted((p for p in entries if is_audio_file(p)), key=lambda p: p.name)
    return [Clip.from_path(p, machine, split) for p in files]


def sections(clips: Iterable[Clip]) -> list[str]:
    """Sorted distinct section numbers of the clips (clips without a section are left out)."""
    return sorted({clip.section for clip in clips if clip.section is not None})


def label_from_name(name: str | os.PathLike) -> int | None:
    """1 for an anomalous clip, 0 for a normal one, ``None`` when the file name does not say."""
    label = parse_clip_name(Path(name).name).label
    return None if label is None else int(label == "anomaly")


def domain_from_name(name: str | os.PathLike) -> str | None:
    """``'target'`` / ``'source'`` when the file name says so, else ``None``."""
    return parse_clip_name(Path(name).name).domain
