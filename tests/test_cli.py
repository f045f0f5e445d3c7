"""The command line's vocabulary: one spelling per concept, the old ones hidden but accepted, an example
at the end of every --help; and `frozenasd score`'s exit status and --json."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest

from frozenasd.cli import build_parser, main
from frozenasd.cli.vocabulary import ALIASES
from frozenasd.workflows.run import RunResult

ROOT = Path(__file__).resolve().parents[1]
OLD_SPELLING = re.compile(r"(?<![\w-])(" + "|".join(s for old in ALIASES.values() for s in old) + r")\b")

# the concepts (by their primary spelling) each subcommand has
CONCEPTS = {
    "run": {"--out", "--machine", "--model", "--data"},
    "demo": {"--out", "--machine", "--model"},
    "evaluate": {"--data"},
    "fit": {"--out", "--machine", "--model", "--data"},
    "score": {"--model"},
    "embed": {"--machine", "--model", "--data"},
    "backbones": set(),
    "export": {"--out"},
    "download": {"--out", "--machine"},
    "synth": {"--out", "--machine"},
    "watch": {"--machine", "--model"},
    "history": {"--out", "--machine"},
    "serve": set(),
}

# (command, the other arguments it needs, primary spelling, values given to it)
SPELLINGS = [
    ("run", ["--data", "d"], "--out", ["r"]),
    ("run", ["--data", "d"], "--machine", ["fan", "valve"]),
    ("run", ["--data", "d"], "--model", ["logmel"]),
    ("run", [], "--data", ["d"]),
    ("demo", [], "--out", ["d"]),
    ("demo", [], "--machine", ["fan"]),
    ("demo", [], "--model", ["yamnet"]),
    ("evaluate", ["results"], "--data", ["d"]),
    ("fit", [], "--out", ["f.npz"]),
    ("fit", ["-o", "f.npz"], "--machine", ["fan"]),
    ("fit", ["-o", "f.npz"], "--model", ["aisfx"]),
    ("fit", ["-o", "f.npz"], "--data", ["d"]),
    ("score", ["x.wav", "--fitted", "f.npz"], "--model", ["m.onnx"]),
    ("embed", ["--data", "d"], "--machine", ["fan", "valve"]),
    ("embed", ["--data", "d"], "--model", ["logmel"]),
    ("embed", [], "--data", ["d"]),
    ("export", ["ckpt.pt"], "--out", ["e.onnx"]),
    ("download", ["dcase2024-dev"], "--out", ["here"]),
    ("download", ["dcase2024-dev"], "--machine", ["fan", "bearing"]),
    ("synth", [], "--out", ["s"]),
    ("synth", ["-o", "s"], "--machine", ["valve", "fan"]),
    ("watch", ["inbox", "--fitted", "f.npz"], "--machine", ["fan"]),
    ("watch", ["inbox", "--fitted", "f.npz"], "--model", ["m.onnx"]),
    ("history", ["h.sqlite"], "--out", ["t.html"]),
    ("history", ["h.sqlite"], "--machine", ["fan"]),
]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def seed_main() -> ModuleType:
    """The repository's main.py (the seed's quick start) as a module."""
    spec = importlib.util.spec_from_file_location("seed_main", ROOT / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_subcommand_spells_each_concept_one_way():
    commands = subcommands(build_parser())
    assert set(commands) == set(CONCEPTS)
    assert {(c, p) for c, _, p, _ in SPELLINGS} == {(c, p) for c, ps in CONCEPTS.items() for p in ps}
    for name, parser in commands.items():
        shown = {s for action in parser._actions for s in action.option_strings}
        assert shown & set(ALIASES) == CONCEPTS[name], name
        assert not OLD_SPELLING.search(" ".join(shown)), name
        if "--out" in shown:  # -o is its short form everywhere
            assert parser._option_string_actions["-o"] is parser._option_string_actions["--out"]


@pytest.mark.parametrize("command,others,primary,values", SPELLINGS)
def test_old_spellings_parse_to_the_same_value(command, others, primary, values):
    parser = build_parser()
    action = subcommands(parser)[command]._option_string_actions[primary]
    given = vars(parser.parse_args([command, *others, primary, *values]))
    expected = values if action.nargs == "+" else values[0]
    assert given[action.dest] == expected and action.default != expected
    for old in ALIASES[primary]:
        assert vars(parser.parse_args([command, *others, old, *values])) == given, old
    if primary == "--out":
        assert vars(parser.parse_args([command, *others, "-o", *values])) == given


def test_help_and_errors_show_only_the_primary_spellings(capsys):
    parser = build_parser()
    for name, sub in subcommands(parser).items():
        text = sub.format_help()
        assert not OLD_SPELLING.search(text), (name, OLD_SPELLING.search(text))
        for primary in CONCEPTS[name]:
            assert re.search(rf"(?<![\w-]){primary}\b", text), (name, primary)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "normals/"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "the following arguments are required: -o/--out" in error and not OLD_SPELLING.search(error)
    # wrapped between words only: names with hyphens stay whole
    assert "EAT-base_epoch30_ft.pt" in subcommands(parser)["export"].format_help()


def example_commands(text: str) -> list[str]:
    """The commands of the example block a help text ends with (empty when it ends otherwise)."""
    lines = text.rstrip().splitlines()
    heading = max((i for i, line in enumerate(lines) if line in ("example:", "examples:")), default=None)
    if heading is None:
        return []
    commands = [line.strip() for line in lines[heading + 1 :]]
    assert all(line.startswith("  ") for line in lines[heading + 1 :]) and commands
    return commands


def test_every_help_ends_with_example_commands_that_parse():
    parser = build_parser()
    assert all(c.startswith("frozenasd ") for c in example_commands(parser.format_help()))
    for name, sub in subcommands(parser).items():
        commands = example_commands(sub.format_help())
        assert commands, f"`frozenasd {name} --help` ends with no example"
        for command in commands:
            words = shlex.split(command.split(" | ")[0])  # the command, not what its output is piped to
            assert words[:2] == ["frozenasd", name], command
            parser.parse_args(words[1:])  # an example in today's spelling: it parses


def test_main_py_takes_the_same_spellings_and_ends_its_help_with_an_example(
    patch_encoder, monkeypatch, capsys
):
    seed = seed_main()
    with pytest.raises(SystemExit):
        seed.main(["--help"])
    text = capsys.readouterr().out
    assert [c.split()[:2] for c in example_commands(text)] == [["python", "main.py"]]
    assert "-o OUT, --out OUT" in text and not OLD_SPELLING.search(text)

    calls = []
    monkeypatch.setattr(seed, "run", lambda data, machines, out, settings, **_: calls.append(
        (data, machines, out, settings.model_path)) or RunResult({}, ""))  # fmt: skip
    new = ["--data", "d", "--machine", "pump", "--model", str(patch_encoder), "--out", "o"]
    old = ["--dataset", "d", "--machines", "pump", "--backbone", str(patch_encoder), "--output", "o"]
    assert seed.main(new) == 0 and seed.main(old) == 0 and seed.main([*new[:-2], "-o", "o"]) == 0
    assert calls[0] == calls[1] == calls[2] == (Path("d"), ["pump"], Path("o"), Path(patch_encoder))


@pytest.fixture(scope="module")
def fitted(tiny_dataset, patch_encoder, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fitted") / "fan.npz"
    train = tiny_dataset / "fan" / "train"
    assert main(["fit", str(train), "--model", str(patch_encoder), "-o", str(path), "--no-progress"]) == 0
    return path


def score(fitted: Path, encoder: Path, *args: str) -> int:
    return main(["score", *args, "--fitted", str(fitted), "--model", str(encoder), "--no-progress"])


def test_score_writes_json_and_exits_1_when_a_recording_is_anomalous(
    fitted, tiny_dataset, patch_encoder, tmp_path, capsys
):
    capsys.readouterr()
    anomalies = sorted((tiny_dataset / "fan" / "test").glob("*anomaly*.wav"))
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    args = [
        *map(str, anomalies),
        str(notes),
        "--json",
        str(tmp_path / "s.json"),
        "--csv",
        str(tmp_path / "s.csv"),
    ]
    assert score(fitted, patch_encoder, *args) == 1
    printed = capsys.readouterr().out.splitlines()

    record = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert set(record) == {"fitted", "threshold", "n_scored", "n_anomalous", "n_skipped", "clips", "skipped"}
    assert record["fitted"] == str(fitted)
    assert printed[-1].startswith(f"threshold {record['threshold']:.6f}; {record['n_anomalous']} of ")
    clips = record["clips"]
    assert [c["path"] for c in clips] == [str(p) for p in anomalies]
    assert (
        record["n_scored"] == len(clips) and record["n_anomalous"] == sum(c["anomalous"] for c in clips) > 0
    )
    assert all(c["anomalous"] == (c["score"] > record["threshold"]) for c in clips)
    skipped = {s["path"]: s["reason"] for s in record["skipped"]}
    assert record["n_skipped"] == len(skipped) and str(notes) in skipped and skipped[str(notes)]

    with open(tmp_path / "s.csv", newline="", encoding="utf-8") as f:  # the CSV and the table stay
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [c["path"] for c in clips]
    assert [float(r["score"]) for r in rows] == pytest.approx([c["score"] for c in clips], abs=1e-6)
    assert [r["anomalous"] for r in rows] == [str(int(c["anomalous"])) for c in clips]
    table = printed[:-1]
    assert len(table) == len(clips)
    for line, clip in zip(table, clips, strict=True):
        assert line.split() == [
            f"{clip['score']:.6f}",
            "ANOMALY" if clip["anomalous"] else "normal",
            clip["path"],
        ]


def test_score_exits_0_when_every_recording_is_normal(fitted, tiny_dataset, patch_encoder, tmp_path):
    normals = sorted((tiny_dataset / "fan" / "test").glob("*_normal_*.wav"))
    code = score(fitted, patch_encoder, *map(str, normals), "--json", str(tmp_path / "all.json"))
    record = json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))
    assert code == (1 if record["n_anomalous"] else 0)
    normal = [c["path"] for c in record["clips"] if not c["anomalous"]]
    assert normal, "no normal test clip scored below the threshold"
    assert score(fitted, patch_encoder, *normal, "--json", str(tmp_path / "normal.json")) == 0
    again = json.loads((tmp_path / "normal.json").read_text(encoding="utf-8"))
    assert again["n_anomalous"] == 0 and [c["path"] for c in again["clips"]] == normal


def test_score_json_on_stdout_is_the_whole_of_stdout(fitted, tiny_dataset, patch_encoder, tmp_path, capsys):
    clips = sorted((tiny_dataset / "fan" / "test").glob("*.wav"))[:6]
    capsys.readouterr()
    code = score(fitted, patch_encoder, *map(str, clips), "--json", "-")
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert code == (1 if record["n_anomalous"] else 0)
    assert len(record["clips"]) == 6 and f"threshold {record['threshold']:.6f}" in err
    assert score(fitted, patch_encoder, *map(str, clips), "--json", str(tmp_path / "s.json")) == code
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8")) == record


def test_score_errors_exit_2_and_write_no_json(fitted, tiny_dataset, patch_encoder, tmp_path, capsys):
    clip = str(sorted((tiny_dataset / "fan" / "test").glob("*.wav"))[0])
    assert score(tmp_path / "missing.npz", patch_encoder, clip, "--json", str(tmp_path / "s.json")) == 2
    assert not (tmp_path / "s.json").exists()
    assert score(fitted, patch_encoder, clip, "--json", str(tmp_path / "no" / "folder.json")) == 2
    assert "folder.json: cannot write the JSON scores" in capsys.readouterr().err


def test_score_exits_2_when_no_recording_given_could_be_scored(fitted, patch_encoder, tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(b"not audio")
    (tmp_path / "b.wav").write_bytes(b"RIFF")
    assert score(fitted, patch_encoder, str(tmp_path / "a.wav"), str(tmp_path / "b.wav")) == 2
    err = capsys.readouterr().err
    assert "a.wav" in err and "b.wav" in err and "no recording could be scored" in err


def test_score_help_documents_the_exit_status():
    text = subcommands(build_parser())["score"].format_help()
    status = text[text.index("exit status:") :].splitlines()[1:4]
    assert [line.split()[0] for line in status] == ["0", "1", "2"]
    assert "normal" in status[0] and "anomalous" in status[1] and "error" in status[2]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--detector", "knn"], "(--detector) shapes one model's view: give the model (--model)"),
        (
            ["--backbone", "logmel", "--preset", "spectral"],
            "give a model (--model, one view) or a preset (--preset",
        ),
    ],
)
def test_demo_names_its_options_in_their_current_spelling(args, message, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), *args]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "demo").exists()
