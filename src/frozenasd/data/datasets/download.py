"""Download a DCASE data set from Zenodo into the DCASE layout ``<dest>/<machine>/{train,test}/*.wav``.

Book-keeping lives in ``<dest>/.downloads/`` (hidden, so machine discovery ignores it): the ``.part`` files
of unfinished downloads, kept archives, a ``<archive>.done`` marker per extracted archive holding its md5,
and ``dataset.json`` naming the data set the folder holds (one data set per folder: the dev and eval sets
of 2020-2022 share machine names and would mix).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import requests

from frozenasd.data.datasets.extract import extract_machine_archive
from frozenasd.data.datasets.registry import Archive, get_dataset
from frozenasd.data.datasets.zenodo import (
    RemoteFile,
    download_file,
    fetch_record,
    file_matches,
    resolve_base_url,
)
from frozenasd.errors import FrozenASDError

STATE_DIR = ".downloads"


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _claim_folder(state: Path, name: str) -> None:
    """Record which data set ``dest`` holds; refuse a folder that holds another one."""
    tag = state / "dataset.json"
    if tag.is_file():
        try:
            held = json.loads(tag.read_text()).get("name")
        except (OSError, ValueError, AttributeError):
            held = None
        if held and held != name:
            raise FrozenASDError(
                f"{state.parent}: this folder holds {held}; download {name} into another folder"
            )
    state.mkdir(parents=True, exist_ok=True)
    tag.unlink(missing_ok=True)  # a link is removed, not written through
    tag.write_text(json.dumps({"name": name}) + "\n")


def _remote(
    session: requests.Session, base: str, cache: dict[str, dict[str, RemoteFile]], archive: Archive
) -> RemoteFile:
    if archive.record not in cache:
        cache[archive.record] = fetch_record(session, base, archive.record)
    files = cache[archive.record]
    if archive.filename not in files:
        listed = ", ".join(sorted(files)) or "no files"
        raise FrozenASDError(
            f"Zenodo record {archive.record} at {base} has no file {archive.filename} (it lists: {listed})"
        )
    return files[archive.filename]


def _marker_md5(marker: Path) -> str | None:
    try:
        return json.loads(marker.read_text()).get("md5")
    except (OSError, ValueError, AttributeError):
        return None


def _install(
    session: requests.Session,
    remote: RemoteFile,
    machine: str,
    dest: Path,
    *,
    keep_archives: bool,
    progress: bool,
    retries: int,
) -> None:
    """Download (or reuse) one archive, extract it into ``dest/machine`` and mark it done."""
    state = dest / STATE_DIR
    marker = state / f"{remote.name}.done"
    machine_dir = dest / machine
    if machine_dir.is_dir() and _marker_md5(marker) == remote.md5:
        _say(progress, f"{machine}: {remote.name} already extracted, skipped")
        return
    marker.unlink(missing_ok=True)
    archive = state / remote.name
    if file_matches(remote, archive):
        _say(progress, f"{machine}: using the downloaded {archive}")
    else:
        archive.unlink(missing_ok=True)
        _say(progress, f"{machine}: downloading {remote.name} ({remote.size / 1e6:.1f} MB) from {remote.url}")
        download_file(session, remote, archive, retries=retries, progress=progress)
    count = extract_machine_archive(archive, machine_dir, state / f"{remote.name}.extracting")
    marker.write_text(json.dumps({"archive": remote.name, "record": remote.record, "md5": remote.md5}) + "\n")
    if not keep_archives:
        archive.unlink()
    _say(progress, f"{machine}: extracted {count} files from {remote.name} into {machine_dir}")


def download_dataset(
    name: str,
    dest: str | os.PathLike[str],
    *,
    machines: Iterable[str] | None = None,
    base_url: str | None = None,
    keep_archives: bool = False,
    progress: bool = True,
    retries: int = 2,
) -> Path:
    """Download data set ``name`` (see ``DATASETS``) into ``dest`` in the DCASE layout; returns ``dest``.

    ``machines`` limits the machine types (default: all). ``base_url`` is the Zenodo server (default
    ``$FROZENASD_ZENODO_URL`` or https://zenodo.org). Each archive's size and md5 come from its Zenodo
    record; a broken transfer resumes (``retries`` times here, or on the next run), a damaged file is
    deleted with an error. Archives already extracted are skipped; ``keep_archives`` keeps the zips in
    ``<dest>/.downloads/``.
    """
    spec = get_dataset(name)
    chosen = spec.select(machines)
    dest = Path(dest).expanduser()
    base = resolve_base_url(base_url)
    if dest.exists() and not dest.is_dir():
        raise FrozenASDError(f"{dest}: not a folder")
    _claim_folder(dest / STATE_DIR, spec.name)
    if spec.note:
        _say(progress, f"{spec.name}: {spec.note}")
    cache: dict[str, dict[str, RemoteFile]] = {}
    with requests.Session() as session:
        for machine in chosen:
            for archive in spec.machines[machine]:
                remote = _remote(session, base, cache, archive)
                _install(
                    session,
                    remote,
                    machine,
                    dest,
                    keep_archives=keep_archives,
                    progress=progress,
                    retries=retries,
                )
    return dest
