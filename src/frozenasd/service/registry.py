"""The fitted models a service holds, loaded once, and the scoring of uploaded recordings with them.

A model's name is its fitted file's name without ``.npz`` (``/srv/models/fan.npz`` → ``fan``): the
user chooses it by naming the file, and two models fitted on the same machine type can be served side
by side. Models whose encoders are the same file (same sha256) with the same settings share one ONNX
Runtime session (:mod:`frozenasd.embed.encoders.sessions`).

An upload is scored as ``frozenasd score`` scores a file (the same loader, checks and encoder limits),
so the scores are the same. A recording longer than the service's ``max_seconds`` is cut to its first
``max_seconds`` (decoded only that far), and the response says so, as it says when an encoder embeds
only the start of a long clip (EAT's longest input).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import soundfile as sf

from frozenasd.data.audio import audio_header_bytes, library_path, load_audio, load_audio_bytes
from frozenasd.data.dcase import Clip
from frozenasd.data.file_bytes import bytes_clip
from frozenasd.data.waveforms import WaveClip
from frozenasd.detectors.frames import frame_detector
from frozenasd.embed import LocalExecutor
from frozenasd.embed.encoders.sessions import SessionCache, sharing_sessions
from frozenasd.errors import FrozenASDError
from frozenasd.hashing import file_sha256
from frozenasd.monitor.history import History, HistoryRow, iso_utc
from frozenasd.monitor.watch import name_time
from frozenasd.scoring.model import ScoringModel
from frozenasd.text import printable

SOURCE = "serve"  # the history's ``source`` of the rows the service writes

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class Upload:
    """A recording received: the name to report it by and its bytes, in memory or in a temporary file."""

    name: str
    data: bytes | None = None
    path: Path | None = None

    @property
    def size(self) -> int:
        """Its length in bytes."""
        if self.data is not None:
            return len(self.data)
        return self.path.stat().st_size if self.path is not None else 0

    def sha256(self) -> str:
        """The sha256 of its bytes."""
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        return file_sha256(self.path) if self.path is not None else hashlib.sha256().hexdigest()


@dataclass
class Served:
    """One model as served: its name, file, the loaded model and what responses repeat about it."""

    name: str
    path: Path
    model: ScoringModel
    encoder_sha256: str
    has_frames: bool
    sha256: str = ""  # the fitted file's, for the score history
    one_thread: ScoringModel | None = None  # the same model on one-thread sessions, for busy times

    def describe(self) -> dict[str, Any]:
        """The model as ``GET /v1/models`` lists it."""
        info = self.model.info
        fitted_at = info.get("fitted_at")
        if not isinstance(fitted_at, str):  # files written before the date was saved: the file's time
            fitted_at = datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc).isoformat(
                timespec="seconds"
            )
        return {
            "name": self.name,
            "fitted_file": self.path.name,
            "machine": self.model.machine,
            "detector": self.model.detector,
            "threshold": self.model.threshold,
            "encoder_sha256": self.encoder_sha256,
            "encoder": self.model.encoder,
            "fitted_at": fitted_at,
            "n_train": info.get("n_train"),
            "frames": self.has_frames,
        }


def model_name(path: Path) -> str:
    """The name a fitted file is served under: its file name without ``.npz``."""
    name = path.name.removesuffix(".npz")
    if not NAME.fullmatch(name):
        raise FrozenASDError(
            f"{path}: its name {name!r} cannot name a model in a URL; rename the file to letters, digits, "
            "'.', '_' or '-' (at most 64, not starting with '.', '_' or '-')"
        )
    return name


def encoder_hash(model: ScoringModel) -> str:
    """The encoder's sha256; for a fusion, its branches' distinct hashes joined by ``+``."""
    branches = model.info.get("branches")
    if branches is None:
        return str(model.info.get("encoder_sha256"))
    hashes = dict.fromkeys(str(b.get("encoder_sha256")) for b in branches)
    return "+".join(hashes)


class Registry:
    """The models served, by name, loaded once; ``sessions`` is the ONNX Runtime sessions they share."""

    def __init__(
        self,
        models: dict[str, Served],
        sessions: SessionCache,
        max_seconds: float,
        history: History | None = None,
    ) -> None:
        self.models = models
        self.sessions = sessions
        self.max_seconds = max_seconds
        self.history = history

    @classmethod
    def load(
        cls,
        paths: list[Path],
        *,
        max_seconds: float = 600.0,
        threads: int | None = None,
        history: History | None = None,
        one_thread: bool = False,
    ) -> Registry:
        """Load every fitted file (encoders checked, sessions opened once); FrozenASDError on a problem.

        With ``history``, every recording scored (or refused as unusable) gets a row there, as
        ``frozenasd watch`` writes them; a recording already recorded for its machine is not added again.
        ``one_thread``: each model also on one-thread encoder sessions (one more session per encoder),
        for requests scored side by side.
        """
        by_name: dict[str, Path] = {}
        for path in map(Path, paths):
            name = model_name(path)
            if name in by_name:
                raise FrozenASDError(
                    f"two fitted files would both be served as {name!r}: {by_name[name]} and {path}; a "
                    "model is named by its file name, so rename one of them"
                )
            by_name[name] = path
        models: dict[str, Served] = {}
        with sharing_sessions(SessionCache()) as sessions:
            for name, path in by_name.items():
                if not path.is_file():
                    raise FrozenASDError(f"--fitted {path}: no such file")
                model = ScoringModel.load(path, num_threads=threads)
                has_frames = frame_detector(model.pipeline) is not None
                lean = None
                if one_thread:  # beside other workers: reader threads would only take their cores
                    lean = ScoringModel.load(path, num_threads=1, executor=LocalExecutor(read_threads=0))
                models[name] = Served(
                    name, path, model, encoder_hash(model), has_frames, file_sha256(path), lean
                )
        return cls(models, sessions, max_seconds, history)

    def score(
        self, served: Served, uploads: list[Upload], *, frames: bool = False, one_thread: bool = False
    ) -> list[dict[str, Any]]:
        """Score ``uploads`` together; per upload its result, or ``{"error", "detail"}`` when unusable.

        ``one_thread``: on the model's one-thread sessions when it has them (the scores are the same).
        """
        model = (served.one_thread if one_thread else None) or served.model
        clips: list[Clip | None] = []
        notes: list[dict[str, Any]] = []
        for k, upload in enumerate(uploads):
            clip, note = self._clip(model, upload, k)
            clips.append(clip)
            notes.append(note)
        usable = [c for c in clips if c is not None]
        scored = model.score_clips(usable, frames=frames) if usable else None
        row = {} if scored is None else {p: i for i, p in enumerate(scored.paths)}
        reasons = {} if scored is None else dict(scored.skipped)
        results = []
        for upload, clip, note in zip(uploads, clips, notes, strict=True):
            name = printable(upload.name)
            if clip is None or clip.path not in row:
                reason = note.get("error") or (reasons.get(clip.path, "not scored") if clip else "not scored")
                results.append(
                    {"file": name, "error": "unscorable", "detail": f"{name}: {printable(reason)}"}
                )
                continue
            assert scored is not None
            k = row[clip.path]
            score = float(scored.scores[k])
            result = {
                "model": served.name,
                "file": name,
                "score": score if math.isfinite(score) else None,
                "threshold": scored.threshold,
                "anomalous": bool(scored.decisions[k]),
                "encoder_sha256": served.encoder_sha256,
                "duration_s": note.get("duration_s"),
                "cut": note.get("cut"),
            }
            if frames and scored.frames is not None:
                result["frames"] = [float(v) if math.isfinite(v) else None for v in scored.frames[k]]
                result["frame_hop_s"] = scored.frame_hop
            results.append(result)
        if self.history is not None:
            self.history.append(self._history_rows(served, uploads, results))
        return results

    @staticmethod
    def _history_rows(
        served: Served, uploads: list[Upload], results: list[dict[str, Any]]
    ) -> list[HistoryRow]:
        """A history row per upload: its score and decision, or why it could not be scored."""
        now = datetime.now(timezone.utc)
        rows = []
        for upload, result in zip(uploads, results, strict=True):
            scored = "error" not in result
            rows.append(
                HistoryRow(
                    recorded_at=iso_utc(name_time(upload.name) or now),
                    machine=served.model.machine,
                    file=upload.name,
                    score=result["score"] if scored else None,
                    threshold=float(served.model.threshold),
                    anomalous=result["anomalous"] if scored else None,
                    scored_at=iso_utc(now),
                    identity=upload.sha256(),
                    size=upload.size,
                    reason=None if scored else result["detail"],
                    model=served.path.name,
                    model_sha256=served.sha256,
                    source=SOURCE,
                )
            )
        return rows

    def _clip(self, model: ScoringModel, upload: Upload, k: int) -> tuple[Clip | None, dict[str, Any]]:
        """The clip to score for ``upload``, the ``k``-th of its call (cut when too long), and what to
        say about it."""
        if upload.data is not None:  # named apart from the call's other uploads, with the name's extension
            label = Path(f"<upload {k}>{Path(upload.name).suffix}")
            clip: Clip = bytes_clip(upload.data, label, model.machine)
            header = audio_header_bytes(upload.data, label)
        else:
            assert upload.path is not None
            label = upload.path
            clip = Clip.from_path(upload.path, model.machine, "score")
            header = _file_header(upload.path)
        if header is None:
            return clip, {"duration_s": None}  # not readable: the loader says why when scoring
        frames, rate = header
        duration = frames / rate if rate > 0 else None
        note: dict[str, Any] = {"duration_s": duration}
        if duration is None:
            return clip, note
        if duration > self.max_seconds:
            try:
                if upload.data is not None:
                    wave = load_audio_bytes(upload.data, label, rate, max_seconds=self.max_seconds)
                else:
                    wave = load_audio(label, rate, max_seconds=self.max_seconds)
            except (FrozenASDError, ValueError, OSError, MemoryError) as exc:
                return None, {**note, "error": str(exc).removeprefix(f"{label}: ")}
            values = {f.name: getattr(clip, f.name) for f in fields(Clip)}
            note["cut"] = (
                f"the recording is {duration:.2f} s long; only its first {self.max_seconds:g} s were "
                "scored (the service's --max-seconds)"
            )
            return WaveClip(**values, wave=wave, rate=rate), note
        encoder_cut = _encoder_limit(model, duration)
        if encoder_cut:
            note["cut"] = encoder_cut
        return clip, note


def _file_header(path: Path) -> tuple[int, int] | None:
    """``(frames, sample_rate)`` from a file's header; None when unreadable."""
    try:
        info = sf.info(library_path(path))
    except (sf.SoundFileError, RuntimeError, OSError):
        return None
    return info.frames, info.samplerate


def _encoder_limit(model: ScoringModel, duration: float) -> str | None:
    """What an encoder with a longest input leaves out of a recording ``duration`` seconds long."""
    for extractor in model._views.extractors:  # the loaded views' extractors, opened
        longest = extractor.longest_samples()
        rate = extractor.frontend_["sample_rate"]
        if longest is not None and duration * rate > longest:
            seconds = longest / rate
            return (
                f"the recording is {duration:.2f} s long; the encoder embeds only its first "
                f"{seconds:.2f} s (its longest input)"
            )
    return None


def remove_quietly(path: str | os.PathLike) -> None:
    """Delete a temporary file, ignoring one already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
