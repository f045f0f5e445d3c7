"""Safe extraction of a DCASE machine archive into ``<dest>/<machine>/``.

An archive holds one machine type, under any leading folders (``fan/train/...``,
``dev_data/fan/test/...``) or none (``train/...``). The folders before the first split folder
(``train``, ``test``, ``supplemental``, ``source_test``, ``target_test``) are dropped and the rest lands in
``<dest>/<machine>/``; ``source_test`` and ``target_test`` (2021) are merged into ``test``. Files outside that
machine folder and macOS metadata (``__MACOSX/``, ``._*``, ``.DS_Store``) are skipped.

Refused, before anything is written: members whose path is absolute, carries a drive letter or a ``..``
part, or would resolve outside the target; symbolic links and any other member that is not a plain
file or folder; encrypted members and unknown compression methods; names longer than file systems
hold; a file and a folder of one name; archives whose members add up to more than
``MAX_EXPANSION`` times the archive's size plus ``EXPANSION_MARGIN`` (a zip bomb), or to more than the
free disk. While writing, a member that yields more bytes than it declares is refused too. The
members are written into a scratch folder first and moved into place only after all of them were
read whole (zip checks each member's CRC), so a failure leaves no half-written machine folder. Links
already in the destination are replaced by what the archive holds there, never followed.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from frozenasd.errors import FrozenASDError
from frozenasd.zip_limits import iter_member, unreadable_reason

SPLIT_FOLDERS = ("train", "test", "supplemental", "source_test", "target_test")
_MERGED_INTO_TEST = ("source_test", "target_test")
_DRIVE = re.compile(r"^[A-Za-z]:")
# Recorded audio barely compresses (16-bit PCM deflates to 70-95 %); 10x leaves room for quiet clips,
# the margin for small archives of silence.
MAX_EXPANSION = 10
EXPANSION_MARGIN = 64 << 20
MAX_NAME_BYTES = 255  # one path part: NAME_MAX of the common file systems
MAX_PATH_BYTES = 1024  # a whole member path; DCASE's are under 100


def _refuse(archive: Path, member: str, why: str) -> FrozenASDError:
    return FrozenASDError(f"{archive.name}: refused member {member!r:.200}: {why}; nothing was extracted")


def _member_parts(archive: Path, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The path parts of a member, after the safety checks on its name and type."""
    name = info.filename
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise _refuse(archive, name, "absolute path")
    parts = tuple(p for p in PurePosixPath(unified).parts if p not in ("", "."))
    if ".." in parts:
        raise _refuse(archive, name, "path leaves the target folder")
    kind = stat.S_IFMT(info.external_attr >> 16)  # Unix file type; 0 when the archiver stored none
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _refuse(archive, name, "symbolic link" if kind == stat.S_IFLNK else "special file")
    if len(unified.encode()) > MAX_PATH_BYTES or any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
        raise _refuse(archive, name, f"name longer than file systems hold ({len(name)} characters)")
    return parts


def _is_junk(parts: tuple[str, ...]) -> bool:
    return "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


def _machine_prefix(archive: Path, files: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The leading folders before the split folders; all must agree (one machine per archive)."""
    prefixes = set()
    for parts in files:
        for i, part in enumerate(parts[:-1]):
            if part in SPLIT_FOLDERS:
                prefixes.add(parts[:i])
                break
    if not prefixes:
        raise FrozenASDError(f"{archive.name}: no train/ or test/ folder inside; not a DCASE machine archive")
    if len(prefixes) > 1:
        shown = ", ".join("/".join(p) or "(top level)" for p in sorted(prefixes))
        raise FrozenASDError(f"{archive.name}: holds more than one machine folder ({shown})")
    return prefixes.pop()


def plan_members(archive: Path, zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Each file member to extract with its path relative to the machine folder; raises on unsafe ones."""
    checked = [(info, _member_parts(archive, info)) for info in zf.infolist()]
    files = [(info, parts) for info, parts in checked if parts and not info.is_dir() and not _is_junk(parts)]
    prefix = _machine_prefix(archive, [parts for _, parts in files])
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    seen: set[tuple[str, ...]] = set()
    for info, parts in files:
        if parts[: len(prefix)] != prefix or len(parts) == len(prefix):
            continue
        rest = parts[len(prefix) :]
        if rest[0] in _MERGED_INTO_TEST and len(rest) > 1:
            rest = ("test", *rest[1:])
        if rest in seen:
            raise FrozenASDError(f"{archive.name}: two members would both become {'/'.join(rest)}")
        seen.add(rest)
        reason = unreadable_reason(info)
        if reason:
            raise _refuse(archive, info.filename, reason)
        plan.append((info, rest))
    folders = {rest[:i] for rest in seen for i in range(1, len(rest))}
    for info, rest in plan:
        if rest in folders:
            raise _refuse(archive, info.filename, f"{'/'.join(rest)} would be both a file and a folder")
    return plan


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def check_budget(archive: Path, plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], folder: Path) -> int:
    """The bytes the plan declares; raises when they exceed the archive's expansion budget or free disk."""
    total = sum(info.file_size for info, _ in plan)
    size = archive.stat().st_size
    if total > MAX_EXPANSION * size + EXPANSION_MARGIN:
        raise FrozenASDError(
            f"{archive.name}: its members add up to {_size(total)}, more than {MAX_EXPANSION}x the "
            f"archive's {_size(size)} (+{EXPANSION_MARGIN >> 20} MiB) that audio can expand to; "
            "refused as a zip bomb, nothing was extracted"
        )
    free = shutil.disk_usage(folder).free
    if total > free:
        raise FrozenASDError(
            f"{archive.name}: extracting needs {_size(total)} but {folder.parent} has {_size(free)} free; "
            "nothing was extracted"
        )
    return total


def _write_members(archive: Path, zf: zipfile.ZipFile, plan: list, scratch: Path) -> None:
    root = scratch.resolve()
    for info, rest in plan:
        target = scratch.joinpath(*rest)
        if not target.resolve().is_relative_to(root):  # belt and braces after the name checks
            raise _refuse(archive, info.filename, "path leaves the target folder")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as dst:
                for block in iter_member(zf, info, info.file_size):
                    dst.write(block)
        except ValueError as exc:  # damaged, or more bytes than declared
            raise _refuse(archive, info.filename, str(exc)) from exc
        except OSError as exc:
            raise FrozenASDError(
                f"{archive.name}: cannot write member {info.filename!r:.200}: {exc.strerror}; "
                "nothing was extracted"
            ) from exc


def _remove(path: Path) -> None:
    """Delete a file, a link (not what it points to) or a folder tree."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _merge_into(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst``: a rename when ``dst`` is absent, else folder by folder (files replaced).

    A link at ``dst`` is replaced itself: writing through it would put files outside the destination.
    """
    if dst.is_symlink():
        dst.unlink()
    if not dst.exists():
        os.replace(src, dst)
        return
    if src.is_dir() and dst.is_dir():
        for child in sorted(src.iterdir()):
            _merge_into(child, dst / child.name)
        src.rmdir()
        return
    if dst.is_dir():
        shutil.rmtree(dst)
    os.replace(src, dst)


def extract_machine_archive(archive: Path, machine_dir: Path, scratch: Path) -> int:
    """Extract ``archive`` (zip) into ``machine_dir`` through the empty-or-absent folder ``scratch``.

    ``scratch`` must be on the same file system as ``machine_dir``. Returns the number of files written.
    """
    _remove(scratch)
    scratch.mkdir(parents=True)
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                plan = plan_members(archive, zf)
                check_budget(archive, plan, scratch)
                _write_members(archive, zf, plan, scratch)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise FrozenASDError(f"{archive.name}: damaged zip archive ({exc})") from exc
        machine_dir.parent.mkdir(parents=True, exist_ok=True)
        _merge_into(scratch, machine_dir)
    finally:
        _remove(scratch)
    return len(plan)
