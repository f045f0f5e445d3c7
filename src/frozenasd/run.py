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
from frozenasd.cache import EmbeddingCache, clip_identity, default_cache_dir
from frozenasd.dcase import Clip, discover_machines, list_clips
from frozenasd.detectors import FusionDetector
from frozenasd.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.encoders.pooling import pad_rows
from frozenasd.errors import FrozenASDError, LayoutError, ModelError, SettingsError
from frozenasd.evaluate import format_table
from frozenasd.frames import FRAME_SCORES_CSV, detector_params, record_top_frames, resolve_pooling
from frozenasd.hashing import file_sha256
from frozenasd.metrics import DEFAULT_PERCENTILE, check_threshold_choice, decision_threshold, official_score
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
from frozenasd.views import Branch
from frozenasd.waveforms import WaveClip, read_wave

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
    split; a ``WaveClip`` is embedded from the samples it holds (and never cached). Clips longer
    than the encoder's longest input are listed in ``cut`` and reported once.
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
    if any(isinstance(c, WaveClip) for c in clips):
        cache = None  # waveforms in memory have no file to identify them by
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
                limits = {"min_samples": shortest, "max_seconds": most_seconds}
                if isinstance(clip, WaveClip):
                    wave = read_wave(clip, sample_rate, **limits)
                else:
                    wave = load_audio(clip.path, sample_rate, **limits)
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
    """What a run needs besides the data: the encoder, the detector and how to run them.

    A single view is ``model_path`` with ``pooling``, ``normalise`` and ``detector``; with
    ``branches`` the run fuses several views instead (``fusion_rule``; ``preset`` records the name
    they came from) and those four are unused.
    """

    model_path: Path | None = None
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
    branches: tuple[Branch, ...] = ()
    fusion_rule: str = "max"
    preset: str | None = None
    threshold_percentile: float | None = None  # None: DEFAULT_PERCENTILE of the gamma fit
    threshold: float | None = None  # a fixed decision threshold (a score), instead of the gamma fit

    def __post_init__(self) -> None:
        self.pooling = resolve_pooling(self.detector, self.pooling)
        try:
            check_threshold_choice(self.threshold_percentile, self.threshold)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc

    @property
    def threshold_rule(self) -> dict[str, float]:
        """How the decision threshold is chosen: ``{"percentile": P}`` or ``{"fixed": value}``."""
        if self.threshold is not None:
            return {"fixed": float(self.threshold)}
        percentile = DEFAULT_PERCENTILE if self.threshold_percentile is None else self.threshold_percentile
        return {"percentile": float(percentile)}

    def extractor(self, branch: Branch | None = None) -> ONNXFeatureExtractor:
        """The single view's extractor, or ``branch``'s (its model resolved and prepared on first use)."""
        if branch is not None:
            from frozenasd.backbones import resolve_model

            return ONNXFeatureExtractor(
                resolve_model(branch.model),
                batch_size=self.batch_size,
                num_threads=self.num_threads,
                pooling=branch.pooling,
                normalise=branch.normalise,
            )
        if self.model_path is None:
            raise ModelError("no encoder given: name a model, or the branches of a fusion")
        return ONNXFeatureExtractor(
            self.model_path,
            batch_size=self.batch_size,
            num_threads=self.num_threads,
            target_frames=self.target_frames,
            output=self.output,
            pooling=self.pooling,
            normalise=self.normalise,
        )

    @property
    def detector_name(self) -> str:
        """The detector as reports name it: one name, or ``fusion-<rule>(branch + …)``."""
        if not self.branches:
            return self.detector
        return f"fusion-{self.fusion_rule}({' + '.join(b.spec() for b in self.branches)})"

    def as_dict(self) -> dict[str, Any]:
        """The settings for a run's record; a fusion's leaves out the single view's unused fields."""
        out = {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}
        out["branches"] = [b.spec() for b in self.branches]
        del out["threshold_percentile"], out["threshold"]
        rule = self.threshold_rule  # the one in use: a fixed threshold, or the percentile (default 90)
        out["threshold" if "fixed" in rule else "threshold_percentile"] = next(iter(rule.values()))
        unused = ("model_path", "detector", "pooling", "normalise", "output", "target_frames")
        if self.branches:
            out = {k: v for k, v in out.items() if k not in unused}
        else:
            out = {k: v for k, v in out.items() if k not in ("branches", "fusion_rule", "preset")}
        return out


@dataclass
class Views:
    """The embedding views of a run, opened: one extractor and cache per distinct view.

    ``branch_views`` gives, per branch (one for a single-view run), the view it reads; branches
    with the same view share its embeddings.
    """

    extractors: list[ONNXFeatureExtractor]
    caches: list[EmbeddingCache | None]
    branch_views: list[int]
    labels: list[str]

    @classmethod
    def open(cls, settings: RunSettings) -> Views:
        """Open every view's model (a model that does not load stops here, before any audio)."""
        if not settings.branches:
            extractor = settings.extractor().fit()
            return cls([extractor], [open_cache(settings, extractor)], [0], [""])
        seen: dict[tuple[str, str, str], int] = {}
        extractors, caches, labels = [], [], []
        for branch in settings.branches:
            if branch.view not in seen:
                seen[branch.view] = len(extractors)
                extractor = settings.extractor(branch).fit()
                extractors.append(extractor)
                caches.append(open_cache(settings, extractor))
                labels.append(f"{branch.model} {branch.pooling}")
        return cls(extractors, caches, [seen[b.view] for b in settings.branches], labels)

    def embed(
        self, clips: Sequence[Clip], *, progress: bool = True, desc: str = "clips"
    ) -> tuple[Embedded, tuple[int, ...]]:
        """Embed ``clips`` in every view; the clips usable in all, each branch's columns side by side.

        Returns the joined embeddings and the column bounds of the branches (branch ``k`` reads
        ``bounds[k]:bounds[k + 1]``). A clip unusable in any view is skipped, with that view's reason;
        each reason is reported once.
        """
        told: set[str] = set()

        def warn_once(message: str) -> None:
            if message not in told:
                told.add(message)
                tqdm.write(printable(message), file=sys.stderr)

        per_view = [
            embed_clips(
                extractor,
                clips,
                cache=cache,
                progress=progress,
                desc=f"{desc} {label}".rstrip(),
                warn=warn_once,
            )
            for extractor, cache, label in zip(self.extractors, self.caches, self.labels, strict=True)
        ]
        if len(per_view) == 1:
            only = per_view[0]
            width = only.embeddings.shape[1] if only.clips else 0
            return only, (0, width)
        rows = [{clip: i for i, clip in enumerate(e.clips)} for e in per_view]
        usable = [c for c in clips if all(c in r for r in rows)]
        reasons: dict[Clip, str] = {}
        for e in per_view:
            for clip, reason in e.skipped:
                reasons.setdefault(clip, reason)
        skipped = [(c, reasons[c]) for c in clips if c in reasons]
        long_clips = {c for e in per_view for c in e.cut}
        cut = [c for c in clips if c in long_clips and c not in reasons]
        if not usable:
            return Embedded([], np.empty((0, 0), dtype=np.float32), skipped, cut), (0,)
        blocks = [per_view[v].embeddings[[rows[v][c] for c in usable]] for v in self.branch_views]
        bounds = tuple(int(b) for b in np.cumsum([0] + [b.shape[1] for b in blocks]))
        return Embedded(usable, np.hstack(blocks), skipped, cut), bounds

    def records(self) -> list[dict[str, Any]]:
        """Per view: its encoder's metadata, frontend and pooling, for the run's record."""
        return [
            {
                "model_file": str(e.model_path),
                "encoder": e.metadata_.get("model", {}),
                "frontend": e.frontend_,
                "pooling": e.pooling_,
                "normalise": e.normalise,
            }
            for e in self.extractors
        ]


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
    return EmbeddingCache(settings.cache_dir, file_sha256(extractor.model_path), shaping)


def run_machine(
    data_root: Path,
    machine: str,
    out_dir: Path,
    settings: RunSettings,
    views: Views | None = None,
    submission_dir: Path | None = None,
) -> MachineReport:
    """Score one machine's test clips and write scores.csv, metrics.txt, roc.png and run.json.

    With ``submission_dir``, also the DCASE ``anomaly_score_*`` and ``decision_result_*`` files there;
    the decision threshold is the settings' (default: the 90th percentile of a gamma distribution
    fitted to the training scores).
    """
    views = views or Views.open(settings)
    (train, bounds), (test, _) = (
        views.embed(
            list_clips(data_root, machine, split), progress=settings.progress, desc=f"{machine} {split}"
        )
        for split in ("train", "test")
    )
    pipe, threshold = fit_on_normals(
        train, settings, data_root / machine / "train", [c.domain for c in train.clips], bounds
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
        out_dir,
        pipe,
        test.embeddings,
        paths,
        scores,
        labels,
        getattr(views.extractors[0], "frame_hop_", None),
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
        "detector": settings.detector_name,
        "encoder": views.extractors[0].metadata_.get("model", {}),
        "frontend": views.extractors[0].frontend_,
        "views": views.records(),
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
    train: Embedded,
    settings: RunSettings,
    where: object,
    domains: Sequence[str | None],
    bounds: Sequence[int] | None = None,
) -> tuple[Pipeline, float]:
    """The scoring pipeline fitted on the usable training clips, and its decision threshold.

    The threshold is the settings' fixed one, or the gamma threshold (``threshold_percentile``, default
    90) of the training scores, each cross-fitted (the scaler and the detector fitted without the clip;
    see ``ScoringPipeline``), so it comes from training clips only and a normal unseen clip exceeds it
    about as often as the percentile says. The detectors' own ``offset_`` is not used: the threshold
    applies to the pipeline's output (after its MinMaxScaler), which is what is saved and compared.
    With fusion ``branches``, ``bounds`` gives each branch's columns (see ``Views.embed``). Too few
    clips, or a detector that cannot be fitted to them, raise FrozenASDError naming ``where``.
    """
    needed = max(2, settings.n_components)
    if len(train.clips) < needed:
        raise LayoutError(
            f"{where}: {len(train.clips)} usable training clips; the detector needs at least {needed}"
        )
    if settings.branches:
        detector = FusionDetector(
            tuple(bounds or ()),
            tuple(b.detector for b in settings.branches),
            rule=settings.fusion_rule,
            n_components=settings.n_components,
            random_state=settings.random_state,
        )
    else:
        params = detector_params(settings.detector, train.frame_dim)
        detector = make_detector(settings.detector, settings.n_components, settings.random_state, **params)
    pipe = scoring_pipeline(detector)
    try:
        train_scores = pipe.fit_transform(train.embeddings, detector__domains=list(domains))[:, 0]
        return pipe, decision_threshold(train_scores, settings.threshold_percentile, settings.threshold)
    except ValueError as exc:  # e.g. too few target clips for a bank, identical clips
        raise FrozenASDError(f"{where}: cannot fit {settings.detector_name}: {exc}") from exc


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
    views = Views.open(settings)  # a model that does not load stops the run before any audio
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
                views,
                submission_dir=Path(out_root),
            )
            reports.append(report)
            results[machine] = report.metrics
        except (FrozenASDError, ValueError, OSError) as exc:  # e.g. too few usable training clips
            print(printable(f"error: {machine}: {exc}"), file=sys.stderr)
            results[machine] = str(exc)
            _remove_outputs(Path(out_root), out_dir_for(Path(out_root), machine), machine)
    failed = {m: r for m, r in results.items() if isinstance(r, str)}
    write_run_summary(Path(out_root), reports, settings, views, failed)
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
    views: Views,
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
        "detector": settings.detector_name,
        "encoder": views.extractors[0].metadata_.get("model", {}),
        "frontend": views.extractors[0].frontend_,
        "views": views.records(),
        "versions": versions(),
    }
    write_report(out_root / "report.html", reports, config, official_score=official)
    (out_root / "summary.md").write_text(printable(text), encoding="utf-8")  # last: the run is complete
