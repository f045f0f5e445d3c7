"""One run: embed a machine's clips, fit the detector on normal training clips, score and save.

A clip that cannot be used (unreadable, truncated, too short) is reported, skipped and listed in the
outputs; the rest of the run goes on. A machine that cannot be scored at all is reported and the
other machines still run.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from frozenasd import __version__
from frozenasd.audio import load_audio, samples_at
from frozenasd.cache import EmbeddingCache, clip_identity, default_cache_dir, file_sha256
from frozenasd.dcase import Clip, discover_machines, list_clips
from frozenasd.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.encoders.pooling import pad_rows
from frozenasd.errors import FrozenASDError, LayoutError, ModelError
from frozenasd.evaluate import format_table
from frozenasd.frames import FRAME_SCORES_CSV, detector_params, record_top_frames, resolve_pooling
from frozenasd.metrics import gamma_threshold, official_score
from frozenasd.outputs import (
    compute_and_save_metrics,
    printable,
    printable_data,
    remove_submission_files,
    section_id,
    write_submission,
)
from frozenasd.pipeline import make_detector, scoring_pipeline
from frozenasd.report import MachineReport, write_report

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

CHUNK = 16  # clips read before they are embedded (and cached) together


@dataclass
class Embedded:
    """Embeddings of the clips that could be used, and the ones skipped with the reason."""

    clips: list[Clip]
    embeddings: np.ndarray
    skipped: list[tuple[Clip, str]] = field(default_factory=list)
    cut: list[Clip] = field(default_factory=list)  # longer than the encoder takes: only their start is used
    frame_dim: int | None = None  # values per frame (the extractor's frame_dim_), for frame detectors


def embed_clips(
    extractor: ONNXFeatureExtractor,
    clips: Sequence[Clip],
    *,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    desc: str = "clips",
    warn: Callable[[str], None] | None = None,
) -> Embedded:
    """Load, featurise and embed ``clips``, taking what ``cache`` holds from it and adding the rest.

    A bad clip is skipped and reported through ``warn``: one that cannot be read, and one the encoder
    fails on (a batch that fails is embedded again clip by clip). ``clips`` are of one machine and
    split. Clips longer than the encoder's longest input are listed in ``cut`` and reported once.
    """
    warn = warn or (lambda message: tqdm.write(printable(message), file=sys.stderr))
    if not hasattr(extractor, "session_"):
        extractor.fit()
    sample_rate = extractor.frontend_["sample_rate"]
    longest = extractor.longest_samples()
    shortest = extractor.shortest_samples()
    # Of a longer clip only the start is embedded: reading a second more than that also tells it apart.
    most_seconds = None if longest is None else longest / sample_rate + 1.0
    cut: list[Clip] = []
    machine, split = (clips[0].machine, clips[0].split) if clips else ("", "")
    cached = cache.load(machine, split) if cache else {}
    found: dict[int, np.ndarray] = {}
    skipped: list[tuple[Clip, str]] = []
    pending: list[tuple[int, str, np.ndarray]] = []
    bar = tqdm(total=len(clips), desc=desc, unit="clip", disable=not progress, file=sys.stderr)

    def skip(clip: Clip, reason: str) -> None:
        warn(f"skipped {clip.path}: {reason}")
        skipped.append((clip, reason))

    def keep(items: list[tuple[int, str, np.ndarray]], emb: np.ndarray) -> None:
        found.update(zip((i for i, _, _ in items), emb, strict=True))
        if cache:
            cache.store(machine, split, zip((key for _, key, _ in items), emb, strict=True))

    def flush() -> None:  # the bar counts a clip once it is embedded, not when it is read
        if not pending:
            return
        try:
            keep(pending, extractor.embed_features([f for _, _, f in pending]))
        except (ModelError, MemoryError):  # one clip may be the cause: the others must not pay for it
            for item in pending:
                try:
                    keep([item], extractor.embed_features([item[2]]))
                except MemoryError:
                    skip(clips[item[0]], "too large for the encoder to embed in the memory available")
                except ModelError as exc:
                    skip(clips[item[0]], str(exc).removeprefix(f"{extractor.model_path}: "))
        bar.update(len(pending))
        pending.clear()

    with bar:
        for i, clip in enumerate(clips):
            try:
                key = clip_identity(clip.path) if cache else ""
                if key in cached:
                    found[i] = cached[key]
                    if longest is not None and samples_at(clip.path, sample_rate) > longest:
                        cut.append(clip)
                    bar.update()
                    continue
                wave = load_audio(clip.path, sample_rate, min_samples=shortest, max_seconds=most_seconds)
                features = extractor.features(wave, sample_rate)
            except (FrozenASDError, ValueError, OSError, MemoryError) as exc:
                if isinstance(exc, MemoryError):  # one huge file must not end the run
                    skip(clip, "too large to load into memory")
                else:
                    skip(clip, str(exc).removeprefix(f"{clip.path}: "))
                bar.update()
                continue
            if longest is not None and wave.size > longest:
                cut.append(clip)
            pending.append((i, key, features))
            if len(pending) >= CHUNK:
                flush()
        flush()
    unusable = {c for c, _ in skipped}
    cut = [c for c in cut if c not in unusable]
    if cut:
        seconds = longest / sample_rate
        warn(
            f"{len(cut)} {machine} {split} clip(s) longer than {seconds:.2f} s, the encoder's longest input: "
            f"only their first {seconds:.2f} s are embedded (e.g. {cut[0].path})"
        )
    order = sorted(found)
    # ``frames`` pooling: rows of clips of other lengths differ in width, NaN-padded to the widest
    embeddings = pad_rows([found[i] for i in order]) if order else np.empty((0, 0), dtype=np.float32)
    frame_dim = getattr(extractor, "frame_dim_", None)
    return Embedded([clips[i] for i in order], embeddings, skipped, cut, frame_dim)


@dataclass
class RunSettings:
    """What a run needs besides the data: the encoder, the detector and how to run them."""

    model_path: Path
    detector: str = "kmeansNN"
    n_components: int = 2
    random_state: int = 0
    batch_size: int = 8
    num_threads: int | None = None
    target_frames: int | None = None
    output: str | None = None
    pooling: str | None = None  # None: the detector's (frames for the frame detectors, else mean)
    normalise: str = "none"
    progress: bool = True
    cache_dir: Path | None = field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        self.pooling = resolve_pooling(self.detector, self.pooling)

    def extractor(self) -> ONNXFeatureExtractor:
        return ONNXFeatureExtractor(
            self.model_path,
            batch_size=self.batch_size,
            num_threads=self.num_threads,
            target_frames=self.target_frames,
            output=self.output,
            pooling=self.pooling,
            normalise=self.normalise,
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def open_cache(settings: RunSettings, extractor: ONNXFeatureExtractor) -> EmbeddingCache | None:
    """The cache for this model and these embedding settings; ``None`` when caching is off."""
    if settings.cache_dir is None:
        return None
    shaping = {
        "frontend": extractor.frontend_,
        "output": extractor.output_name_,
        "pooling": extractor.pooling_,
        "normalise": extractor.normalise,
        "target_frames": extractor.target_frames,
    }
    return EmbeddingCache(settings.cache_dir, file_sha256(settings.model_path), shaping)


def run_machine(
    data_root: Path,
    machine: str,
    out_dir: Path,
    settings: RunSettings,
    extractor: ONNXFeatureExtractor | None = None,
    cache: EmbeddingCache | None = None,
    submission_dir: Path | None = None,
) -> MachineReport:
    """Score one machine's test clips and write scores.csv, metrics.txt, roc.png and run.json.

    With ``submission_dir``, also the DCASE ``anomaly_score_*`` and ``decision_result_*`` files there;
    the decision threshold is the 90th percentile of a gamma distribution fitted to the training scores.
    """
    extractor = extractor or settings.extractor()
    train, test = (
        embed_clips(
            extractor,
            list_clips(data_root, machine, split),
            cache=cache,
            progress=settings.progress,
            desc=f"{machine} {split}",
        )
        for split in ("train", "test")
    )
    pipe, threshold = fit_on_normals(
        train, settings, data_root / machine / "train", [c.domain for c in train.clips]
    )
    if not test.clips:
        raise FrozenASDError(f"{data_root / machine / 'test'}: no usable test clip")
    scores = pipe.transform(test.embeddings)[:, 0]
    labels = [None if c.label is None else int(c.label == "anomaly") for c in test.clips]

    skipped = [(str(c.path), reason) for c, reason in train.skipped + test.skipped]
    paths = [str(c.path) for c in test.clips]
    domains = [c.domain for c in test.clips]
    metrics = compute_and_save_metrics(
        paths=paths,
        scores=scores,
        out_dir=out_dir,
        labels=labels,
        domains=domains,
        skipped=skipped,
        title=machine,
    )
    frames = record_top_frames(
        out_dir, pipe, test.embeddings, paths, scores, labels, getattr(extractor, "frame_hop_", None)
    )
    left_out: list[tuple[Clip, str]] = []
    if submission_dir is not None:
        _, left_out = write_submission_files(submission_dir, machine, test.clips, scores, threshold)
        for clip, reason in left_out:
            print(
                printable(f"warning: {clip.path}: left out of the submission files: {reason}"),
                file=sys.stderr,
            )
    metrics["threshold"] = threshold
    metrics["unscored_test_clips"] = [str(c.path) for c, _ in test.skipped]
    metrics["not_in_submission"] = [str(c.path) for c, _ in left_out]
    record = {
        "versions": versions(),
        "machine_type": machine,
        "data": str(data_root / machine),
        "settings": settings.as_dict(),
        "encoder": extractor.metadata_.get("model", {}),
        "frontend": extractor.frontend_,
        "n_train": len(train.clips),
        "n_test": len(test.clips),
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        # embedded only up to the encoder's longest input (see the frontend's ``longest_samples``)
        "cut": [str(c.path) for c in train.cut + test.cut],
        "metrics": metrics,
    }
    text = json.dumps(printable_data(record), indent=2, default=str) + "\n"
    (out_dir / "run.json").write_text(text, encoding="utf-8")
    return MachineReport(
        machine=machine,
        paths=paths,
        scores=scores,
        labels=labels,
        domains=domains,
        metrics=metrics,
        threshold=threshold,
        skipped=skipped,
        frames=frames,
    )


def fit_on_normals(
    train: Embedded, settings: RunSettings, where: object, domains: Sequence[str | None]
) -> tuple[Pipeline, float]:
    """The scoring pipeline fitted on the usable training clips, and its decision threshold.

    The threshold is the gamma threshold of the training scores, each cross-fitted (the scaler and the
    detector fitted without the clip; see ``ScoringPipeline``), so it comes from training clips only
    and a normal unseen clip exceeds it about as often as the percentile says. Too few clips, or a
    detector that cannot be fitted to them, raise FrozenASDError naming ``where``.
    """
    needed = max(2, settings.n_components)
    if len(train.clips) < needed:
        raise LayoutError(
            f"{where}: {len(train.clips)} usable training clips; the detector needs at least {needed}"
        )
    params = detector_params(settings.detector, train.frame_dim)
    pipe = scoring_pipeline(
        make_detector(settings.detector, settings.n_components, settings.random_state, **params)
    )
    try:
        train_scores = pipe.fit_transform(train.embeddings, detector__domains=list(domains))[:, 0]
        return pipe, gamma_threshold(train_scores)
    except ValueError as exc:  # e.g. too few target clips for a bank, identical clips
        raise FrozenASDError(f"{where}: cannot fit {settings.detector}: {exc}") from exc


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the scores, for the run's record."""
    import onnxruntime
    import scipy
    import sklearn

    return {
        "frozenasd": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def write_submission_files(
    out_dir: Path, machine: str, clips: Sequence[Clip], scores: np.ndarray, threshold: float
) -> tuple[list[Path], list[tuple[Clip, str]]]:
    """One ``anomaly_score``/``decision_result`` pair per section of ``clips`` (earlier ones removed).

    Clips without a section go to section 00; sections that are the same number (``0``, ``00``,
    ``000``) share their files. Returns the files written and the clips left out with the reason (a
    section number too long to name a file).
    """
    remove_submission_files(out_dir, machine)
    by_section: dict[str, list[int]] = {}
    left_out: list[tuple[Clip, str]] = []
    for i, clip in enumerate(clips):
        try:
            by_section.setdefault(section_id(clip.section or "00"), []).append(i)
        except ValueError as exc:
            left_out.append((clip, str(exc)))
    written: list[Path] = []
    for section, rows in sorted(by_section.items()):
        written += write_submission(
            out_dir,
            machine,
            section,
            [clips[i].name for i in rows],
            scores[rows],
            (scores[rows] > threshold).astype(int),
        )
    return written, left_out


def run(
    data_root: Path,
    machines: Sequence[str] | None,
    out_root: Path,
    settings: RunSettings,
    out_dir_for: Callable[[Path, str], Path] | None = None,
) -> dict[str, dict[str, Any] | str]:
    """Run every machine; returns per machine its metrics, or the error that stopped it.

    Besides each machine's outputs, ``out_root`` receives the DCASE submission files,
    ``summary.md`` (the DCASE table) and ``report.html``.
    """
    data_root = Path(data_root)
    names = list(machines) if machines else discover_machines(data_root)
    out_dir_for = out_dir_for or (lambda root, m: root / f"results_{m}")
    extractor = settings.extractor().fit()  # a model that does not fit stops the run before any audio
    cache = open_cache(settings, extractor)
    results: dict[str, dict[str, Any] | str] = {}
    reports: list[MachineReport] = []
    # Nothing of an earlier run may pass for this one's, even if this one is killed halfway: the
    # summary and the report appear only once every machine is done.
    for name in ("summary.md", "report.html"):
        (Path(out_root) / name).unlink(missing_ok=True)
    for machine in names:
        _remove_outputs(Path(out_root), out_dir_for(Path(out_root), machine), machine)
    for machine in names:
        try:
            report = run_machine(
                data_root,
                machine,
                out_dir_for(Path(out_root), machine),
                settings,
                extractor,
                cache,
                submission_dir=Path(out_root),
            )
            reports.append(report)
            results[machine] = report.metrics
        except (FrozenASDError, ValueError, OSError) as exc:  # e.g. too few usable training clips
            print(printable(f"error: {machine}: {exc}"), file=sys.stderr)
            results[machine] = str(exc)
            _remove_outputs(Path(out_root), out_dir_for(Path(out_root), machine), machine)
    failed = {m: r for m, r in results.items() if isinstance(r, str)}
    write_run_summary(Path(out_root), reports, settings, extractor, failed)
    return results


def _remove_outputs(out_root: Path, out_dir: Path, machine: str) -> None:
    """An earlier run's outputs of a machine that failed now: they must not pass for this run's."""
    remove_submission_files(out_root, machine)
    for name in ("scores.csv", "metrics.txt", "roc.png", "run.json", FRAME_SCORES_CSV):
        (out_dir / name).unlink(missing_ok=True)


def write_run_summary(
    out_root: Path,
    reports: list[MachineReport],
    settings: RunSettings,
    extractor: ONNXFeatureExtractor,
    failed: dict[str, str] | None = None,
) -> None:
    """The report, then ``summary.md``: the DCASE table of the machines scored and notes on what is missing.

    Without any machine scored, ``summary.md`` holds the errors only and no report is written.
    ``summary.md`` is written last, so that a run stopped before it leaves none.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    failures = [f"- {m}: not scored: {error}" for m, error in (failed or {}).items()]
    if not reports:
        text = "No machine was scored.\n\n" + "\n".join(failures) + "\n"
        (out_root / "summary.md").write_text(printable(text), encoding="utf-8")
        (out_root / "report.html").unlink(missing_ok=True)
        return
    per_machine = {r.machine: r.metrics for r in reports}
    complete = all(
        m.get(k) is not None for m in per_machine.values() for k in ("auc_source", "auc_target", "pauc")
    )
    official = official_score(per_machine) if complete else None
    notes = failures + [f"- {r.machine}: {r.metrics['note']}" for r in reports if r.metrics.get("note")]
    for r in reports:
        missing = r.metrics.get("unscored_test_clips") or []
        if missing:
            notes.append(
                f"- {r.machine}: {len(missing)} test clip(s) could not be scored and are missing from the "
                f"submission files: {', '.join(Path(p).name for p in missing[:5])}"
                + (" …" if len(missing) > 5 else "")
                + f" (reasons in {r.machine}'s metrics.txt and run.json)"
            )
        left_out = r.metrics.get("not_in_submission") or []
        if left_out:
            notes.append(
                f"- {r.machine}: {len(left_out)} test clip(s) are scored (scores.csv) but left out of the "
                f"submission files, their section number being too long: "
                + ", ".join(Path(p).name for p in left_out[:5])
                + (" …" if len(left_out) > 5 else "")
            )
    table = format_table({"machines": per_machine, "official_score": official})
    text = table + ("\n" + "\n".join(notes) + "\n" if notes else "")
    config = {
        "settings": settings.as_dict(),
        "encoder": extractor.metadata_.get("model", {}),
        "frontend": extractor.frontend_,
        "versions": versions(),
    }
    write_report(out_root / "report.html", reports, config, official_score=official)
    (out_root / "summary.md").write_text(printable(text), encoding="utf-8")  # last: the run is complete
