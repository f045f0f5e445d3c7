"""The official DCASE Task 2 data sets (2020-2026): Zenodo record ids and archive names per machine.

Every list below is taken from the download lists of the official baseline,
``nttcslab/dcase2023_task2_baseline_ae`` (branch ``2026t2/v5.x.x``):

- 2020-2022: ``datasets/download_path_legacy.yaml`` (sections ``DCASE2020T2``, ``DCASE2021T2``,
  ``DCASE2022T2``). For 2021 the baseline's README of that year writes ``eval_data_train_<machine>.zip``,
  but the list and the download script of that year use ``eval_data_<machine>_train.zip``; the list is
  followed here. 2021 archives keep the test clips in ``source_test/`` and ``target_test/``.
- 2023: ``datasets/download_path_2023.yaml`` and ``data_download_2023{dev,add,eval}.sh``. The development
  set is record 7882613 ("fixed attributes", 2023-05-01), which replaced records 7690148 and 7690157.
- 2024: ``datasets/download_path_2024.yaml`` and ``data_download_2024{dev,add,eval}.sh``. The additional
  training set is record 11259435, where ``3DPrinter`` and ``RoboticArm`` come as ``*_train_r2.zip``
  (they replaced record 11183284).
- 2025: ``datasets/download_path_2025.yaml`` and ``data_download_2025{dev,add,eval}.sh``; the archives
  also hold the ``supplemental/`` clips.
- 2026: ``datasets/download_path_2026.yaml`` and ``data_download_2026{dev,add}.sh``. ``dev_ToyCar_r2.zip``
  replaced ``dev_ToyCar.zip`` (2026-04-09). 2026 clips are two-channel. The evaluation *test* archives
  are not in the baseline's lists yet, so ``dcase2026-eval`` holds the additional training data only.

Archive names are checked against the Zenodo record at download time; a name the record does not list
fails with the record's actual file list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from frozenasd.errors import FrozenASDError

SOURCE_REPO = "nttcslab/dcase2023_task2_baseline_ae"


@dataclass(frozen=True)
class Archive:
    """One zip file of a Zenodo record; ``part`` says what it holds: dev, train (eval) or test (eval)."""

    record: str
    filename: str
    part: str


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable data set: its archives per machine type, where the list came from, and caveats."""

    name: str
    year: int
    kind: str
    machines: Mapping[str, tuple[Archive, ...]] = field(hash=False)
    source: str
    note: str = ""

    @property
    def records(self) -> list[str]:
        """The Zenodo record ids the archives come from, in order of first use."""
        seen: dict[str, None] = {}
        for archives in self.machines.values():
            for archive in archives:
                seen.setdefault(archive.record, None)
        return list(seen)

    def select(self, machines: Iterable[str] | None) -> list[str]:
        """The machine types to fetch (all when ``machines`` is None); matches ignore case.

        Raises :class:`FrozenASDError` naming the valid machine types for an unknown one.
        """
        if machines is None:
            return list(self.machines)
        by_lower = {m.lower(): m for m in self.machines}
        chosen: list[str] = []
        for wanted in machines:
            found = wanted if wanted in self.machines else by_lower.get(wanted.lower())
            if found is None:
                raise FrozenASDError(
                    f"{self.name}: unknown machine type {wanted!r}; valid: {', '.join(self.machines)}"
                )
            if found not in chosen:
                chosen.append(found)
        return chosen


def _dev(
    year: int, record: str, machines: Iterable[str], pattern: str, source: str, **named: str
) -> DatasetSpec:
    """A development set: one archive per machine, ``pattern`` formatted with the machine name."""
    table = {m: (Archive(record, named.get(m, pattern.format(m=m)), "dev"),) for m in machines}
    return DatasetSpec(f"dcase{year}-dev", year, "dev", table, source)


def _eval(
    year: int,
    train: tuple[str, str],
    test: tuple[str, str] | None,
    machines: Iterable[str],
    source: str,
    note: str = "",
    train_names: Mapping[str, str] | None = None,
) -> DatasetSpec:
    """An evaluation set: the additional training archive and (when published) the test archive."""
    table: dict[str, tuple[Archive, ...]] = {}
    for m in machines:
        archives = [Archive(train[0], (train_names or {}).get(m, train[1].format(m=m)), "train")]
        if test is not None:
            archives.append(Archive(test[0], test[1].format(m=m), "test"))
        table[m] = tuple(archives)
    return DatasetSpec(f"dcase{year}-eval", year, "eval", table, source, note)


_LEGACY = f"{SOURCE_REPO}: datasets/download_path_legacy.yaml"
_M2020 = ("ToyCar", "ToyConveyor", "fan", "pump", "slider", "valve")
_M2021 = ("fan", "gearbox", "pump", "slider", "ToyCar", "ToyTrain", "valve")
_M2022 = ("bearing", "fan", "gearbox", "slider", "ToyCar", "ToyTrain", "valve")
_E2023 = ("bandsaw", "grinder", "shaker", "ToyDrone", "ToyNscale", "ToyTank", "Vacuum")
_E2024 = (
    "3DPrinter",
    "AirCompressor",
    "Scanner",
    "ToyCircuit",
    "HoveringDrone",
    "HairDryer",
    "ToothBrush",
    "RoboticArm",
    "BrushlessMotor",
)
_M2025 = ("ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve")
_E2025 = (
    "ToyRCCar",
    "ToyPet",
    "HomeCamera",
    "AutoTrash",
    "Polisher",
    "ScrewFeeder",
    "BandSealer",
    "CoffeeGrinder",
)
_M2026 = ("ToyCar", "ToyCarEmu", "bearingEmu", "fan", "gearboxEmu", "sliderEmu", "valveEmu")
_E2026 = ("ToyDrone", "ToothBrush", "SewingMachine", "BlowerDustCollector", "Sander")


def _src(year: int, scripts: str) -> str:
    return f"{SOURCE_REPO}: datasets/download_path_{year}.yaml, {scripts}"


_SPECS = (
    _dev(2020, "3678171", _M2020, "dev_data_{m}.zip", _LEGACY),
    _eval(
        2020, ("3727685", "eval_data_train_{m}.zip"), ("3841772", "eval_data_test_{m}.zip"), _M2020, _LEGACY
    ),
    _dev(2021, "4562016", _M2021, "dev_data_{m}.zip", _LEGACY),
    _eval(
        2021, ("4660992", "eval_data_{m}_train.zip"), ("4884786", "eval_data_{m}_test.zip"), _M2021, _LEGACY
    ),
    _dev(2022, "6355122", _M2022, "dev_{m}.zip", _LEGACY),
    _eval(
        2022, ("6462969", "eval_data_{m}_train.zip"), ("6586456", "eval_data_{m}_test.zip"), _M2022, _LEGACY
    ),
    _dev(2023, "7882613", _M2022, "dev_{m}.zip", _src(2023, "data_download_2023dev.sh")),
    _eval(
        2023,
        ("7830345", "eval_data_{m}_train.zip"),
        ("7860847", "eval_data_{m}_test.zip"),
        _E2023,
        _src(2023, "data_download_2023add.sh, data_download_2023eval.sh"),
    ),
    _dev(2024, "10902294", _M2022, "dev_{m}.zip", _src(2024, "data_download_2024dev.sh")),
    _eval(
        2024,
        ("11259435", "eval_data_{m}_train.zip"),
        ("11363076", "eval_data_{m}_test.zip"),
        _E2024,
        _src(2024, "data_download_2024add.sh, data_download_2024eval.sh"),
        train_names={m: f"eval_data_{m}_train_r2.zip" for m in ("3DPrinter", "RoboticArm")},
    ),
    _dev(2025, "15097779", _M2025, "dev_{m}.zip", _src(2025, "data_download_2025dev.sh")),
    _eval(
        2025,
        ("15392814", "eval_data_{m}_train.zip"),
        ("15519362", "eval_data_{m}_test.zip"),
        _E2025,
        _src(2025, "data_download_2025add.sh, data_download_2025eval.sh"),
    ),
    _dev(
        2026,
        "19336329",
        _M2026,
        "dev_{m}.zip",
        _src(2026, "data_download_2026dev.sh"),
        ToyCar="dev_ToyCar_r2.zip",
    ),
    _eval(
        2026,
        ("20151556", "eval_data_{m}_train.zip"),
        None,
        _E2026,
        _src(2026, "data_download_2026add.sh"),
        note="additional training data only: the evaluation test archives are not in the official list yet",
    ),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def get_dataset(name: str) -> DatasetSpec:
    """The spec named ``name``; an unknown name raises :class:`FrozenASDError` listing the valid ones."""
    spec = DATASETS.get(name.strip().lower())
    if spec is None:
        raise FrozenASDError(f"unknown data set {name!r}; valid: {', '.join(DATASETS)}")
    return spec


def format_datasets_table() -> str:
    """A plain-text table of the downloadable data sets (for ``frozenasd download --list``)."""
    rows = [("name", "machines", "Zenodo records", "note")]
    for spec in DATASETS.values():
        rows.append((spec.name, " ".join(spec.machines), " ".join(spec.records), spec.note))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"{row[0]:<{width[0]}}  {row[1]:<{width[1]}}  {row[2]:<{width[2]}}  {row[3]}".rstrip() for row in rows
    ]
    lines.append("")
    lines.append(f"Archive lists: the official baseline's download lists ({SOURCE_REPO}).")
    return "\n".join(lines)
