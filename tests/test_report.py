"""The HTML run report: content, escaping, copied audio, and what a real browser (headless Chromium) shows."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import numpy as np
import pytest
import scipy.stats
import soundfile as sf
from sklearn.metrics import roc_auc_score

from frozenasd.report import MachineReport, write_report

SR = 16000
EVIL = "<script>alert(1)</script>"
EVIL_FILE = "<img src=x onerror=\"parent.document.title='pwned'\">.wav"  # '/' cannot be in a file name
ODD_FILE = 'a&b #1?x=%41 "q".wav'  # characters that break unquoted URLs
CONFIG = {"detector": "kmeansNN", "n_components": 2, "model_path": Path("/models/eat.onnx"), "note": EVIL}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# ---------------------------------------------------------------- a minimal DOM for the assertions


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self, tag: str | None = None):
        for c in self.children:
            if isinstance(c, Node):
                if tag is None or c.tag == tag:
                    yield c
                yield from c.iter(tag)

    def find_all(self, tag: str, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter(tag) if cls is None or cls in (n.attrs.get("class") or "").split()]


class _TreeBuilder(HTMLParser):
    VOID = {"meta", "br", "img", "input", "source", "link", "hr", "wbr", "col", "area", "base", "embed"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in self.VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        node = self.cur
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.cur = node.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(path: Path) -> Node:
    builder = _TreeBuilder()
    builder.feed(path.read_text(encoding="utf-8"))
    builder.close()
    return builder.root


def machine_sections(doc: Node) -> dict[str, Node]:
    return {s.find_all("h2")[0].text(): s for s in doc.find_all("section", "machine")}


# ---------------------------------------------------------------- test data and independent metrics


def dcase_metrics(labels: list[int], scores: np.ndarray, domains: list[str]) -> dict[str, float]:
    """The DCASE definitions, written out here with scikit-learn and scipy."""
    y, d = np.asarray(labels), np.asarray(domains)
    out = {"auc": roc_auc_score(y, scores), "pauc": roc_auc_score(y, scores, max_fpr=0.1)}
    for dom in ("source", "target"):
        keep = (d == dom) | (y == 1)
        out[f"auc_{dom}"] = roc_auc_score(y[keep], scores[keep])
    out["hmean"] = scipy.stats.hmean([out["auc_source"], out["auc_target"], out["pauc"]])
    return {k: float(v) for k, v in out.items()}


def write_clip(path: Path, seconds: float, rng: np.random.Generator) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * rng.standard_normal(int(SR * seconds))).astype(np.float32), SR)
    return str(path)


def labelled_machine(root: Path, machine: str, seed: int, n: int = 6, **kwargs) -> MachineReport:
    """``n`` clips per (domain, label) group with distinct scores; anomalies score higher on average."""
    rng = np.random.default_rng(seed)
    paths, scores, labels, domains = [], [], [], []
    for dom in ("source", "target"):
        for lab in ("normal", "anomaly"):
            for i in range(n):
                name = f"section_00_{dom}_test_{lab}_{i:04d}.wav"
                paths.append(write_clip(root / machine / "test" / name, 0.25 + 0.05 * i, rng))
                labels.append(int(lab == "anomaly"))
                domains.append(dom)
                scores.append(rng.normal(1.0 + (lab == "anomaly") + 0.3 * (dom == "target"), 0.6))
    s = np.asarray(scores)
    return MachineReport(machine, paths, s, labels, domains, dcase_metrics(labels, s, domains), **kwargs)


def unlabelled_machine(root: Path, machine: str, seed: int, n: int = 8) -> MachineReport:
    rng = np.random.default_rng(seed)
    paths = [write_clip(root / machine / "test" / f"section_00_{i:04d}.wav", 0.3, rng) for i in range(n)]
    metrics = dict.fromkeys(("auc", "pauc", "auc_source", "auc_target", "hmean"))
    return MachineReport(machine, paths, rng.gamma(2.0, 1.0, n), [None] * n, [None] * n, metrics)


@pytest.fixture
def two_machines(tmp_path: Path) -> list[MachineReport]:
    return [
        labelled_machine(
            tmp_path / "data", "fan", 1, threshold=1.8, skipped=[("fan/broken.wav", "not a WAV")]
        ),
        labelled_machine(tmp_path / "data", "valve", 2),
    ]


def expected_top(m: MachineReport, k: int) -> list[int]:
    return list(np.argsort(-np.asarray(m.scores), kind="stable")[:k])


def pct(v: float) -> str:
    return f"{100 * v:.2f}"


# ---------------------------------------------------------------- HTML content


def test_dcase_table_and_official_score(tmp_path: Path, two_machines: list[MachineReport]) -> None:
    report = write_report(tmp_path / "out" / "report.html", two_machines, CONFIG)
    doc = parse(report)
    [table] = doc.find_all("table", "dcase")
    rows = [
        [td.text().strip() for td in tr.find_all("td")] for tr in table.find_all("tbody")[0].find_all("tr")
    ]
    keys = ("auc_source", "auc_target", "pauc", "hmean")
    for row, m in zip(rows, two_machines, strict=False):
        assert row == [m.machine] + [pct(m.metrics[k]) for k in keys]
    values = [m.metrics[k] for m in two_machines for k in keys[:3]]
    official = scipy.stats.hmean(values)
    columns = [scipy.stats.hmean([m.metrics[k] for m in two_machines]) for k in keys[:3]]
    assert rows[2] == ["harmonic mean"] + [pct(v) for v in columns] + [pct(official)]
    assert len(rows) == 3
    assert [n.text() for n in doc.iter() if n.attrs.get("id") == "official-score"] == [f"{pct(official)} %"]


def test_given_official_score_is_shown_as_given(tmp_path: Path, two_machines: list[MachineReport]) -> None:
    doc = parse(write_report(tmp_path / "r.html", two_machines, {}, official_score=0.61234))
    assert [n.text() for n in doc.iter() if n.attrs.get("id") == "official-score"] == ["61.23 %"]


def test_machine_sections_plots_and_stats(tmp_path: Path, two_machines: list[MachineReport]) -> None:
    doc = parse(write_report(tmp_path / "r.html", two_machines, CONFIG, title="My run"))
    assert doc.find_all("title")[0].text() == "My run"
    assert doc.find_all("h1")[0].text() == "My run"
    sections = machine_sections(doc)
    assert list(sections) == ["fan", "valve"]
    for m in two_machines:
        sec = sections[m.machine]
        svgs = sec.find_all("svg")
        assert len(svgs) == 2  # ROC and histogram
        svg_text = " ".join(s.text() for s in svgs)
        # The ROC legend shows the AUC of the curve drawn; the histogram legend the clips per group.
        assert f"all clips ({m.metrics['auc']:.3f})" in svg_text
        assert f"source normals + all anomalies ({m.metrics['auc_source']:.3f})" in svg_text
        assert f"target normals + all anomalies ({m.metrics['auc_target']:.3f})" in svg_text
        for lab in ("normal", "anomaly"):
            for dom in ("source", "target"):
                assert f"{lab} · {dom} (6)" in svg_text
        stats = {dt.text(): dd.text() for dt, dd in zip(sec.find_all("dt"), sec.find_all("dd"), strict=True)}
        assert stats["AUC (all clips)"] == pct(m.metrics["auc"])
        assert stats["pAUC"] == pct(m.metrics["pauc"])
    assert "decision threshold" in " ".join(s.text() for s in sections["fan"].find_all("svg"))
    assert "decision threshold" not in " ".join(s.text() for s in sections["valve"].find_all("svg"))


def test_unlabelled_machine_has_histogram_but_no_roc(
    tmp_path: Path, two_machines: list[MachineReport]
) -> None:
    machines = [two_machines[0], unlabelled_machine(tmp_path / "data", "gearbox", 3)]
    doc = parse(write_report(tmp_path / "r.html", machines, CONFIG))
    sec = machine_sections(doc)["gearbox"]
    assert len(sec.find_all("svg")) == 1
    assert "unlabelled (8)" in sec.find_all("svg")[0].text()
    assert "Labels are unknown" in sec.text()
    assert not sec.find_all("dl", "stats")
    rows = doc.find_all("table", "dcase")[0].find_all("tr")
    gearbox = [[td.text() for td in tr.find_all("td")] for tr in rows if "gearbox" in tr.text()]
    assert gearbox[0][1:] == ["n/a"] * 4
    assert not any("harmonic mean" in tr.text() for tr in rows)
    assert [n.text() for n in doc.iter() if n.attrs.get("id") == "official-score"] == ["n/a"]


def test_top_clips_are_copied_and_linked_relatively(
    tmp_path: Path, two_machines: list[MachineReport]
) -> None:
    report = write_report(tmp_path / "out" / "run 50%#?.html", two_machines, CONFIG, top_k=3)
    doc = parse(report)
    sections = machine_sections(doc)
    for m in two_machines:
        top = expected_top(m, 3)
        table = sections[m.machine].find_all("table", "top")[0]
        rows = table.find_all("tbody")[0].find_all("tr")
        assert len(rows) == 3
        for row, i in zip(rows, top, strict=True):
            cells = [td.text() for td in row.find_all("td")]
            assert cells[1] == Path(m.paths[i]).name
            assert cells[2] == ("anomaly" if m.labels[i] else "normal")
            assert cells[3] == m.domains[i]
            assert float(cells[4].replace("above threshold", "")) == pytest.approx(m.scores[i], rel=1e-5)
            assert ("above threshold" in cells[4]) == (m.threshold is not None and m.scores[i] > m.threshold)
            [audio] = row.find_all("audio")
            src = audio.attrs["src"]
            assert not urlparse(src).scheme and not src.startswith("/") and ".." not in src
            assert src == f"run%2050%25%23%3F_audio/{m.machine}/{Path(m.paths[i]).name}"
            assert (report.parent / unquote(src)).read_bytes() == Path(m.paths[i]).read_bytes()
    copied = list((report.parent / "run 50%#?_audio").rglob("*.wav"))
    assert len(copied) == 6
    assert len(doc.find_all("audio")) == 6

    # The folder works after a move: every link is relative to the report.
    moved = shutil.move(str(report.parent), str(tmp_path / "elsewhere"))
    for audio in parse(Path(moved) / report.name).find_all("audio"):
        assert (Path(moved) / unquote(audio.attrs["src"])).is_file()


def test_hostile_names_are_escaped_and_files_still_linked(tmp_path: Path) -> None:
    m = labelled_machine(tmp_path / "data", EVIL, 4, skipped=[(f"x/{EVIL}.wav", EVIL)])
    rng = np.random.default_rng(0)
    for k, name in enumerate((EVIL_FILE, ODD_FILE)):  # rename two clips and make them the top scorers
        old = Path(m.paths[k])
        m.paths[k] = write_clip(old.parent / name, 0.2, rng)
        old.unlink()
        m.scores[k] = 100.0 - k
    m.metrics = dcase_metrics(m.labels, m.scores, m.domains)
    report = write_report(tmp_path / "out" / "report.html", [m], CONFIG, title=EVIL, top_k=2)
    doc = parse(report)
    assert not doc.find_all("script") and not doc.find_all("img")
    assert not any(k.startswith("on") for n in doc.iter() for k in n.attrs)
    text = doc.text()
    assert text.count(EVIL) >= 5  # title, heading, table row, skipped path and reason, configuration
    assert EVIL_FILE in text and ODD_FILE in text
    audios = doc.find_all("audio")
    assert len(audios) == 2
    for audio, original in zip(audios, m.paths[:2], strict=True):
        target = report.parent / unquote(audio.attrs["src"])
        assert target.is_file() and target.read_bytes() == Path(original).read_bytes()
        assert target.parent.parent == report.parent / "report_audio"  # no escape from the audio folder
        assert not set('<>"&#?% ') & set(target.parent.name + target.name)  # portable names


def test_large_or_unplayable_recordings_are_linked_as_wav_excerpts(tmp_path: Path, monkeypatch) -> None:
    from frozenasd.report import sections

    m = labelled_machine(tmp_path / "data", "pump", 5, n=2)
    rng = np.random.default_rng(1)
    big = write_clip(tmp_path / "data" / "big.wav", 2.0, rng)  # 64 kB: over the limit set below
    aiff = Path(m.paths[1]).with_suffix(".aiff")
    sf.write(aiff, rng.standard_normal((SR // 4, 4)).astype(np.float32) * 0.1, SR, format="AIFF")
    m.paths[0], m.paths[1] = big, str(aiff)
    m.scores[0], m.scores[1], m.scores[2] = 30.0, 20.0, 10.0  # the top three
    monkeypatch.setattr(sections, "MAX_COPY_BYTES", 40_000)
    monkeypatch.setattr(sections, "EXCERPT_SECONDS", 1.5)
    report = write_report(tmp_path / "out" / "r.html", [m], CONFIG, top_k=3)
    rows = machine_sections(parse(report))["pump"].find_all("table", "top")[0].find_all("tr")[1:]
    played = []
    for row in rows:
        [audio] = row.find_all("audio")
        played.append((report.parent / unquote(audio.attrs["src"]), row.find_all("td")[-1].text()))
    (excerpt, note0), (converted, note1), (copied, note2) = played
    assert excerpt.name == "big.wav" and "first 1.5 s" in note0
    info = sf.info(excerpt)
    assert info.duration == pytest.approx(1.5) and info.subtype == "PCM_16"
    assert converted.suffix == ".wav" and "converted to WAV" in note1
    assert sf.info(converted).channels == 1 and sf.info(converted).frames == SR // 4
    assert copied.read_bytes() == Path(m.paths[2]).read_bytes() and note2.strip() == ""


def test_skipped_clips_and_configuration(tmp_path: Path, two_machines: list[MachineReport]) -> None:
    doc = parse(write_report(tmp_path / "r.html", two_machines, CONFIG))
    sec = machine_sections(doc)["fan"]
    [skipped] = sec.find_all("table", "skipped")
    assert [
        [td.text() for td in tr.find_all("td")] for tr in skipped.find_all("tbody")[0].find_all("tr")
    ] == [["fan/broken.wav", "not a WAV"]]
    assert not machine_sections(doc)["valve"].find_all("table", "skipped")
    [pre] = doc.find_all("pre", "config")
    assert json.loads(pre.text()) == {**CONFIG, "model_path": "/models/eat.onnx"}


def test_no_external_resources(tmp_path: Path, two_machines: list[MachineReport]) -> None:
    doc = parse(write_report(tmp_path / "r.html", two_machines, CONFIG))
    assert not doc.find_all("link") and not doc.find_all("script") and not doc.find_all("iframe")
    for node in doc.iter():
        for key in ("src", "href", "xlink:href"):
            value = node.attrs.get(key)
            if value is not None:
                assert not urlparse(value).scheme and not value.startswith("//"), (key, value)


def test_missing_clip_and_top_k_zero(tmp_path: Path) -> None:
    m = labelled_machine(tmp_path / "data", "fan", 5)
    best = expected_top(m, 1)[0]
    Path(m.paths[best]).unlink()
    doc = parse(write_report(tmp_path / "r.html", [m], {}, top_k=2))
    rows = doc.find_all("table", "top")[0].find_all("tbody")[0].find_all("tr")
    assert "audio not available" in rows[0].text() and not rows[0].find_all("audio")
    assert len(rows[1].find_all("audio")) == 1
    doc = parse(write_report(tmp_path / "r0.html", [m], {}, top_k=0))
    assert not doc.find_all("audio") and not doc.find_all("table", "top")


def test_bad_input_is_rejected(tmp_path: Path) -> None:
    m = labelled_machine(tmp_path / "data", "fan", 6, n=2)
    short = MachineReport("fan", m.paths, m.scores[:-1], m.labels, m.domains, m.metrics)
    with pytest.raises(ValueError, match="'fan'.*scores"):
        write_report(tmp_path / "r.html", [short], {})
    scores = m.scores.copy()
    scores[0] = np.nan
    nan = MachineReport("fan", m.paths, scores, m.labels, m.domains, m.metrics)
    with pytest.raises(ValueError, match="nan or inf"):
        write_report(tmp_path / "r.html", [nan], {})
    bad_label = MachineReport("fan", m.paths, m.scores, [2] + m.labels[1:], m.domains, m.metrics)
    with pytest.raises(ValueError, match="label of .*section_00_source_test_normal_0000.wav"):
        write_report(tmp_path / "r.html", [bad_label], {})
    bad_domain = MachineReport("fan", m.paths, m.scores, m.labels, ["east"] + m.domains[1:], m.metrics)
    with pytest.raises(ValueError, match="domain of"):
        write_report(tmp_path / "r.html", [bad_domain], {})
    with pytest.raises(ValueError, match="unique"):
        write_report(tmp_path / "r.html", [m, m], {})
    with pytest.raises(ValueError, match="top_k"):
        write_report(tmp_path / "r.html", [m], {}, top_k=-1)
    assert not (tmp_path / "r.html").exists()


# ---------------------------------------------------------------- in a real browser

# Loads the report in a frame (file access allowed by a flag), waits for every audio player to read its
# file's header, and writes what the page shows into #result for --dump-dom.
HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><pre id="result">pending</pre>
<audio id="control" src="no_such_file.wav" preload="metadata"></audio>
<iframe id="frame" src="REPORT" style="width:1280px;height:2000px;border:0"></iframe>
<script>
const meta = (a) => new Promise((resolve) => {
  const done = () => resolve({src: a.currentSrc, duration: a.duration, error: a.error ? a.error.code : null});
  if (a.readyState >= 1 || a.error) { done(); return; }
  a.addEventListener("loadedmetadata", done);
  a.addEventListener("error", done);
});
window.addEventListener("load", async () => {
  const out = document.getElementById("result");
  try {
    const doc = document.getElementById("frame").contentDocument;
    const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
    const texts = (sel) => [...doc.querySelectorAll(sel)].map((e) => e.textContent.trim());
    out.textContent = JSON.stringify({
      title: doc.title,
      headings: texts("section.machine > h2"),
      table: [...doc.querySelectorAll("table.dcase tbody tr")].map(
        (tr) => [...tr.cells].map((td) => td.textContent.trim())),
      official: texts("#official-score"),
      svgs: [...doc.querySelectorAll("svg")].map(box),
      svgText: [...doc.querySelectorAll("svg")].map((s) => s.textContent),
      audios: await Promise.all([...doc.querySelectorAll("audio")].map(meta)),
      control: await meta(document.getElementById("control")),
      active: doc.querySelectorAll("script, img, iframe, object, embed").length,
    });
  } catch (e) { out.textContent = "error: " + e; }
});
</script></body></html>
"""


def chromium() -> str:
    """The Chromium binary; a missing browser fails the test (CI installs it) unless told to skip."""
    if os.environ.get("FROZENASD_SKIP_BROWSER") == "1":
        pytest.skip("FROZENASD_SKIP_BROWSER=1: browser test of the HTML report skipped")
    for name in (os.environ.get("FROZENASD_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = name and shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Chromium not found (looked for $FROZENASD_CHROMIUM, chromium, chromium-browser, google-chrome). "
        "Install it with `apt-get update && apt-get install -y chromium`, or set FROZENASD_SKIP_BROWSER=1."
    )


def run_chromium(binary: str, profile: Path, *args: str) -> str:
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"Chromium did not finish within 30 s (a dialog opened by a script in the page?): {cmd}")
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    from PIL import Image

    binary = chromium()
    data = tmp_path / "data"
    fan = labelled_machine(data, "fan", 7, threshold=1.8)
    evil = labelled_machine(data, EVIL, 8)
    old = Path(evil.paths[0])
    evil.paths[0] = write_clip(old.parent / EVIL_FILE, 0.4, np.random.default_rng(1))
    old.unlink()
    evil.scores[0] = 50.0
    evil.metrics = dcase_metrics(evil.labels, evil.scores, evil.domains)
    gearbox = unlabelled_machine(data, "gearbox", 9)
    machines = [fan, evil, gearbox]
    report = write_report(tmp_path / "site" / "run #1.html", machines, CONFIG, top_k=3, title="browser run")
    harness = report.parent / "harness.html"
    harness.write_text(HARNESS.replace("REPORT", quote(report.name)), encoding="utf-8")

    dom = run_chromium(
        binary,
        tmp_path / "profile1",
        "--allow-file-access-from-files",
        "--virtual-time-budget=15000",
        "--dump-dom",
        harness.as_uri(),
    )
    pre = dom.split('<pre id="result">', 1)[1].split("</pre>", 1)[0]
    assert pre not in ("pending",) and not pre.startswith("error"), pre
    page = json.loads(html.unescape(pre))

    assert page["title"] == "browser run"  # an executed payload would have renamed it
    assert page["active"] == 0
    assert page["headings"] == ["fan", EVIL, "gearbox"]
    keys = ("auc_source", "auc_target", "pauc", "hmean")
    assert page["table"][0] == ["fan"] + [pct(fan.metrics[k]) for k in keys]
    assert page["table"][1] == [EVIL] + [pct(evil.metrics[k]) for k in keys]
    assert page["table"][2] == ["gearbox (labels unknown)"] + ["n/a"] * 4
    assert page["official"] == ["n/a"]

    assert len(page["svgs"]) == 5  # ROC + histogram for two machines, histogram only for gearbox
    for width, height in page["svgs"]:
        assert width > 300 and height > 200
    assert any(f"all clips ({fan.metrics['auc']:.3f})" in t for t in page["svgText"])

    assert page["control"]["error"] is not None  # the harness does notice a missing file
    expected = [m.paths[i] for m in machines for i in expected_top(m, 3)]
    assert len(page["audios"]) == len(expected) == 9
    for audio, original in zip(page["audios"], expected, strict=True):
        assert audio["error"] is None, audio
        played = Path(unquote(urlparse(audio["src"]).path))
        assert played.is_file() and played.is_relative_to(report.parent / "run #1_audio")
        assert played.read_bytes() == Path(original).read_bytes()
        assert audio["duration"] == pytest.approx(sf.info(original).duration, abs=1e-3)

    shot = tmp_path / "shot.png"
    run_chromium(
        binary, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri()
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert len(np.unique(pixels, axis=0)) > 50  # text, tables and plots, not a blank page

    def share(rgb: str) -> float:
        target = np.array([int(rgb[i : i + 2], 16) for i in (1, 3, 5)])
        return float((np.abs(pixels - target).max(axis=1) <= 12).mean())

    assert share("#1d3557") > 0.01  # header band
    assert share("#d62728") > 1e-4  # anomaly histogram outlines and the pAUC limit line
    assert share("#1f77b4") > 1e-4  # normal-source histogram and the source ROC curve


def test_frame_scores_of_the_top_clips_are_plotted_over_time(tmp_path: Path) -> None:
    from frozenasd.report.model import FrameTrace

    fan = labelled_machine(tmp_path / "data", "fan", 3, threshold=1.8)
    scores = np.r_[np.zeros(40), 2.5, np.zeros(9)]
    fan.frames = [FrameTrace(fan.paths[0], scores, np.arange(50) * 0.01, 1)]
    page = write_report(tmp_path / "report.html", [fan], CONFIG).read_text()
    assert page.count("<svg") == 3 and 'aria-label="frame scores over time"' in page
    assert "time in the clip (s)" in page and "frame_scores.csv" in page
    plain = labelled_machine(tmp_path / "data2", "fan", 3)
    assert "frame scores over time" not in write_report(tmp_path / "plain.html", [plain], CONFIG).read_text()
    fan.frames = [FrameTrace(fan.paths[0], scores, np.arange(49) * 0.01, 1)]
    with pytest.raises(ValueError, match="has 50 frame scores but 49 starts"):
        write_report(tmp_path / "bad.html", [fan], CONFIG)
