"""The scoring service over real HTTP: a uvicorn server on 127.0.0.1 and an httpx client.

Scores equal `frozenasd score`'s; no valid token → 401, oversized → 413, bad input → a 4xx JSON error
naming the problem, and the service keeps answering afterwards.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")
httpx = pytest.importorskip("httpx2")

from service_server import running  # noqa: E402

from frozenasd import ScoringModel  # noqa: E402
from frozenasd.cli import main  # noqa: E402
from frozenasd.hashing import file_sha256  # noqa: E402
from frozenasd.service import uploads  # noqa: E402
from frozenasd.service.config import ServiceConfig  # noqa: E402
from frozenasd.service.registry import Registry, Upload  # noqa: E402

TOKEN = "s3cret-token-for-the-tests-0123"


@pytest.fixture(scope="module")
def models(tiny_dataset, tmp_path_factory) -> dict[str, Path]:
    """fan.npz and pump.npz (the same log-mel encoder) and bank.npz (a frame detector)."""
    folder = tmp_path_factory.mktemp("served")
    train = tiny_dataset / "fan" / "train"
    ScoringModel.fit(train, "logmel", machine="fan", pooling="max", detector="mahalanobis").save(
        folder / "fan.npz"
    )
    shutil.copy(folder / "fan.npz", folder / "pump.npz")
    ScoringModel.fit(train, "logmel", machine="fan", detector="framebank").save(folder / "bank.npz")
    return {p.stem: p for p in folder.glob("*.npz")}


@pytest.fixture(scope="module")
def registry(models) -> Registry:
    return Registry.load([models["fan"], models["pump"], models["bank"]])


def config(models, **kw) -> ServiceConfig:
    return ServiceConfig(fitted=(models["fan"], models["pump"], models["bank"]), **kw)


@pytest.fixture(scope="module")
def service(registry, models):
    """The service with a token and a 1 MB upload limit."""
    with running(registry, config(models, token=TOKEN, max_upload_bytes=1_000_000)) as server:
        yield server


@pytest.fixture
def client(service):
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        yield c


def test_scores_equal_frozenasd_score_for_every_way_of_sending(client, models, tiny_dataset, tmp_path):
    files = sorted((tiny_dataset / "fan" / "test").glob("*_000[0-4]_*.wav"))
    assert (
        main(["score", *map(str, files), "--fitted", str(models["fan"]), "--json", str(tmp_path / "s.json")])
        == 1
    )
    expected = {Path(c["path"]).name: c for c in json.loads((tmp_path / "s.json").read_text())["clips"]}
    assert len(expected) == len(files) == 20
    threshold = ScoringModel.load(models["fan"]).threshold
    for f in files:
        multipart = client.post("/v1/models/fan/score", files={"file": (f.name, f.read_bytes())})
        raw = client.post(f"/v1/models/pump/score?filename={f.name}", content=f.read_bytes())
        for response in (multipart, raw):
            assert response.status_code == 200, response.text
            got = response.json()
            assert got["score"] == pytest.approx(expected[f.name]["score"], abs=1e-9, rel=0)
            assert got["anomalous"] == expected[f.name]["anomalous"] == (got["score"] > threshold)
            assert got["threshold"] == threshold and got["file"] == f.name
            assert got["duration_s"] == pytest.approx(1.0) and got["cut"] is None
            assert len(got["encoder_sha256"]) == 64 and got["elapsed_s"] > 0
        assert multipart.json()["model"] == "fan" and raw.json()["model"] == "pump"
    batch = client.post(
        "/v1/models/fan/score-batch", files=[("files", (f.name, f.read_bytes())) for f in files]
    )
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["n_scored"] == 20 and body["n_anomalous"] == sum(c["anomalous"] for c in expected.values())
    for result in body["results"]:
        assert result["score"] == pytest.approx(expected[result["file"]]["score"], abs=1e-9, rel=0)


def test_uploads_past_the_memory_budget_go_to_files_and_score_the_same(client, tiny_dataset, monkeypatch):
    files = sorted((tiny_dataset / "fan" / "test").glob("*_000[0-1]_*.wav"))[:6]
    sent = [("files", (f.name, f.read_bytes())) for f in files]
    held = client.post("/v1/models/fan/score-batch", files=sent).json()["results"]
    spilled: list[str] = []
    paths: list[Path] = []

    def target(folder: Path, name: str) -> Path:
        spilled.append(name)
        paths.append(make_target(folder, name))
        return paths[-1]

    make_target = uploads._target
    monkeypatch.setattr(uploads, "_target", target)
    size = files[0].stat().st_size
    monkeypatch.setattr(uploads, "MEMORY_BUDGET", 3 * size + size // 2)  # three files fit
    on_disk = client.post("/v1/models/fan/score-batch", files=sent).json()["results"]
    assert spilled == [f.name for f in files[3:]]
    assert [r["score"] for r in on_disk] == pytest.approx([r["score"] for r in held], abs=1e-12, rel=0)
    monkeypatch.setattr(uploads, "MEMORY_BUDGET", size // 2)  # a raw body past it: to a file midway
    raw = client.post(f"/v1/models/fan/score?filename={files[4].name}", content=files[4].read_bytes())
    assert spilled[-1] == files[4].name and len(spilled) == 4
    assert raw.json()["score"] == pytest.approx(held[4]["score"], abs=1e-12, rel=0)
    assert not [p for p in paths if p.exists()]  # every temporary file removed


def test_without_the_token_nothing_is_processed(service, registry, models, tiny_dataset, monkeypatch):
    calls = []
    monkeypatch.setattr(Registry, "score", lambda *a, **k: calls.append(a) or [])
    clip = next((tiny_dataset / "fan" / "test").glob("*.wav")).read_bytes()
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        with httpx.Client(base_url=service.url, headers=headers, timeout=30) as anonymous:
            for method, path in [
                ("POST", "/v1/models/fan/score"),
                ("POST", "/v1/models/fan/score-batch"),
                ("GET", "/v1/models"),
                ("GET", "/metrics"),
                ("POST", "/v1/models/nope/score"),
            ]:
                response = anonymous.request(
                    method, path, files={"file": ("a.wav", clip)} if method == "POST" else None
                )
                assert response.status_code == 401, (headers, path, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["error"] == "unauthorized"
            assert anonymous.get("/healthz").json() == {"status": "ok"}  # open, by design
            assert anonymous.get("/openapi.json").status_code == 200
    assert calls == []


def read_until_closed(sock: socket.socket, already: bytes = b"") -> bytes:
    """What the server sends until it closes the connection (the guard's refusals close it)."""
    sock.settimeout(10)
    data = already
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_uploads_over_the_limit_get_413_before_they_are_read(client, service, monkeypatch):
    calls = []
    monkeypatch.setattr(Registry, "score", lambda *a, **k: calls.append(a) or [])
    big = b"RIFF" + bytes(1_200_000)
    response = client.post("/v1/models/fan/score", files={"file": ("big.wav", big)})
    assert response.status_code == 413 and "limit of 1000000 bytes" in response.json()["detail"]
    # a declared length over the limit: refused before a byte of the body is sent
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/models/fan/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 50000000000\r\n\r\n".encode()
        )
        head = read_until_closed(sock).decode()
    assert head.startswith("HTTP/1.1 413") and "50000000000 bytes" in head
    # no length (chunked): counted as it arrives, refused once past the limit
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/models/fan/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"%x\r\n%s\r\n" % (100_000, bytes(100_000))
        answer = b""
        for _ in range(40):  # 4 MB at most; the service answers after 1 MB
            try:
                sock.sendall(chunk)
            except OSError:
                break
            sock.settimeout(0.05)
            try:
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            if answer:
                break
        answer = read_until_closed(sock, answer)
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than the service's limit" in answer, answer[:300]
    assert calls == []


def test_bad_input_gets_a_4xx_json_error_naming_the_problem(client, tiny_dataset, tmp_path):
    good = next((tiny_dataset / "fan" / "test").glob("*normal_0001*.wav")).read_bytes()
    sf.write(tmp_path / "short.wav", np.zeros(100, np.float32), 16000)
    cases = [
        (
            "/v1/models/fan/score",
            {"files": {"file": ("notes.txt", b"these are not samples\n" * 50)}},
            422,
            "notes.txt: cannot be read as audio",
        ),
        ("/v1/models/fan/score", {"content": b""}, 400, "empty upload"),
        ("/v1/models/fan/score", {"files": {"file": ("e.wav", b"")}}, 400, "e.wav: empty upload"),
        (
            "/v1/models/fan/score",
            {"files": {"file": ("cut.wav", good[:5000])}},
            422,
            "cut.wav: truncated WAV",
        ),
        (
            "/v1/models/fan/score",
            {"files": {"file": ("s.wav", b"RIFF")}},
            422,
            "s.wav:",
        ),
        (
            "/v1/models/fan/score",
            {"files": {"file": ("short.wav", (tmp_path / "short.wav").read_bytes())}},
            422,
            "short.wav: too short",
        ),
        ("/v1/models/fan/score", {"files": {"field": (None, "value")}}, 400, "the form holds no file"),
        ("/v1/models/fan/score", {"data": {"field": "value"}}, 400, "a URL-encoded form holds no file"),
        (
            "/v1/models/fan/score",
            {"files": [("a", ("a.wav", good)), ("b", ("b.wav", good))]},
            400,
            "this endpoint scores one",
        ),
        ("/v1/models/nope/score", {"files": {"file": ("a.wav", good)}}, 404, "no model named 'nope'"),
        (
            "/v1/models/fan/score?frames=true",
            {"files": {"file": ("a.wav", good)}},
            400,
            "no per-frame scores",
        ),
        ("/v1/models/fan/score?frames=maybe", {"files": {"file": ("a.wav", good)}}, 422, "frames"),
        ("/v1/models/fan/nothing", {"files": {"file": ("a.wav", good)}}, 404, "Not Found"),
    ]
    for path, request, status, words in cases:
        response = client.post(path, **request)
        assert response.status_code == status, (path, words, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert words in response.json()["detail"], (words, response.json())
    assert client.get("/v1/models/fan/score").status_code == 405
    assert client.post("/v1/models/fan/score", files={"file": ("a.wav", good)}).status_code == 200  # still up


def test_a_batch_scores_the_good_files_and_names_the_bad_ones(client, tiny_dataset):
    good = sorted((tiny_dataset / "fan" / "test").glob("*_0002_*.wav"))
    files = [("files", (f.name, f.read_bytes())) for f in good]
    files.insert(1, ("files", ("broken.wav", b"RIFF\x00\x00")))
    body = client.post("/v1/models/fan/score-batch", files=files).json()
    assert body["n_scored"] == len(good) and len(body["results"]) == len(good) + 1
    assert body["results"][1]["file"] == "broken.wav" and body["results"][1]["error"] == "unscorable"
    assert [r["file"] for r in body["results"] if "score" in r] == [f.name for f in good]
    too_many = client.post("/v1/models/fan/score-batch", files=[("f", ("a.wav", b"x"))] * 65)
    assert too_many.status_code == 400 and "Too many files" in too_many.json()["detail"]


def test_frame_scores_on_request_from_a_frame_detector(client, models, tiny_dataset):
    clip = next((tiny_dataset / "fan" / "test").glob("*anomaly_0003*.wav"))
    expected = ScoringModel.load(models["bank"]).score(clip)
    got = client.post(
        "/v1/models/bank/score?frames=true", files={"file": (clip.name, clip.read_bytes())}
    ).json()
    assert got["score"] == pytest.approx(float(expected.scores[0]), abs=1e-9, rel=0)
    np.testing.assert_allclose(got["frames"], expected.frames[0], rtol=0, atol=1e-9)
    assert got["frame_hop_s"] == pytest.approx(expected.frame_hop)
    assert (
        "frames"
        not in client.post("/v1/models/bank/score", files={"file": ("a.wav", clip.read_bytes())}).json()
    )


def test_recordings_over_max_seconds_are_cut_and_say_so(registry, models, tiny_dataset, tmp_path):
    wave = np.concatenate(
        [
            sf.read(f, dtype="float32")[0]
            for f in sorted((tiny_dataset / "fan" / "test").glob("*normal_000[0-2]*"))
        ]
    )
    sf.write(tmp_path / "long.wav", wave, 16000)
    cut = Registry(registry.models, registry.sessions, max_seconds=1.5)
    with running(cut, config(models, max_seconds=1.5)) as server, httpx.Client(base_url=server.url) as c:
        got = c.post("/v1/models/fan/score", content=(tmp_path / "long.wav").read_bytes()).json()
    assert got["duration_s"] == pytest.approx(wave.size / 16000)
    seconds = wave.size / 16000
    assert got["cut"] == (
        f"the recording is {seconds:.2f} s long; only its first 1.5 s were scored "
        "(the service's --max-seconds)"
    )
    first = ScoringModel.load(models["fan"]).score(wave[:24000] - wave[:24000].mean(), sample_rate=16000)
    assert got["score"] == pytest.approx(float(first.scores[0]), rel=1e-5)


def test_models_metrics_and_docs(client, models, tiny_dataset):
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(listed) == {"fan", "pump", "bank"}
    fan = ScoringModel.load(models["fan"])
    assert (
        listed["fan"]["threshold"] == fan.threshold
        and listed["fan"]["encoder_sha256"] == fan.info["encoder_sha256"]
    )
    assert listed["fan"]["fitted_at"] == fan.info["fitted_at"] and listed["bank"]["frames"] is True
    before = client.get("/metrics").text
    clip = next((tiny_dataset / "fan" / "test").glob("*anomaly_0004*.wav"))
    assert client.post("/v1/models/pump/score", files={"file": ("a.wav", clip.read_bytes())}).json()[
        "anomalous"
    ]
    client.post("/v1/models/pump/score", files={"file": ("b.txt", b"no audio")})
    text = client.get("/metrics").text

    def value(metrics: str, line: str) -> float:
        found = [ln for ln in metrics.splitlines() if ln.startswith(line + " ")]
        return float(found[0].split()[-1]) if found else 0.0

    for metric, grew in [
        ('frozenasd_recordings_scored_total{model="pump"}', 1),
        ('frozenasd_anomalies_total{model="pump"}', 1),
        ('frozenasd_errors_total{model="pump",kind="unscorable"}', 1),
        ('frozenasd_requests_total{endpoint="score",model="pump",status="200"}', 1),
        ('frozenasd_requests_total{endpoint="score",model="pump",status="422"}', 1),
        ('frozenasd_request_seconds_count{model="pump"}', 2),
    ]:
        assert value(text, metric) - value(before, metric) == grew, metric
    assert "# TYPE frozenasd_request_seconds histogram" in text and "frozenasd_queue_limit 16" in text
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path in ("/v1/models/{name}/score", "/v1/models/{name}/score-batch", "/v1/models", "/metrics"):
        operation = next(iter(paths[path].values()))
        assert operation["security"] == [{"HTTPBearer": []}], path
    assert "security" not in paths["/healthz"]["get"]
    assert {
        "/v1/models/{name}/score",
        "/v1/models/{name}/score-batch",
        "/v1/models",
        "/healthz",
        "/metrics",
    } <= set(paths)
    assert client.get("/docs").status_code == 200


def test_models_sharing_an_encoder_share_one_session(models, registry, patch_encoder, tiny_dataset, tmp_path):
    assert (
        registry.sessions.opened == 1 and registry.sessions.reused == 2
    )  # three models, one log-mel encoder
    fan, pump, bank = (registry.models[n].model._views.extractors[0] for n in ("fan", "pump", "bank"))
    assert fan.session_ is pump.session_ is bank.session_
    ScoringModel.fit(tiny_dataset / "fan" / "train", patch_encoder, machine="fan").save(
        tmp_path / "other.npz"
    )
    two = Registry.load([models["fan"], tmp_path / "other.npz"])
    assert two.sessions.opened == 2
    alone = ScoringModel.load(models["fan"])._views.extractors[0].session_
    assert alone is not fan.session_  # outside: its own


def test_one_thread_sessions_are_shared_too_and_score_the_same(models, tiny_dataset, tmp_path):
    both = Registry.load([models["fan"], models["pump"]], one_thread=True)
    assert both.sessions.opened == 2  # every core, and one thread: one session each for the two models
    fan, pump = both.models["fan"], both.models["pump"]
    one = fan.one_thread._views.extractors[0].session_
    assert one is pump.one_thread._views.extractors[0].session_
    assert one is not fan.model._views.extractors[0].session_
    assert one.get_session_options().intra_op_num_threads == 1
    assert fan.one_thread._views.executor.read_threads == 0  # no reader threads beside other workers
    assert Registry.load([models["fan"]]).models["fan"].one_thread is None
    clips = sorted((tiny_dataset / "fan" / "test").glob("*_000[0-3]_*.wav"))
    copies = [Upload(clips[0].name, data=clips[0].read_bytes())]  # held in memory, and in files
    for clip in clips[1:]:
        shutil.copy(clip, tmp_path / clip.name)
        copies.append(Upload(clip.name, path=tmp_path / clip.name))
    every_core = both.score(fan, copies)
    one_core = both.score(fan, copies, one_thread=True)
    assert [r["score"] for r in one_core] == pytest.approx([r["score"] for r in every_core], abs=1e-9, rel=0)


def test_the_command_refuses_what_would_be_unsafe_or_ambiguous(models, tmp_path, capsys):
    fan = str(models["fan"])
    assert main(["serve", "--fitted", fan, "--host", "0.0.0.0"]) == 2
    assert "refusing to listen beyond this machine without a token" in capsys.readouterr().err
    (tmp_path / "short.txt").write_text("abc\n")
    assert main(["serve", "--fitted", fan, "--token-file", str(tmp_path / "short.txt")]) == 2
    assert "use at least 16" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    shutil.copy(fan, tmp_path / "other" / "fan.npz")
    assert main(["serve", "--fitted", fan, "--fitted", str(tmp_path / "other" / "fan.npz")]) == 2
    assert "would both be served as 'fan'" in capsys.readouterr().err
    assert main(["serve", "--fitted", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz: no such file" in capsys.readouterr().err


def test_with_a_history_every_recording_posted_gets_one_row(models, tiny_dataset, tmp_path):
    from frozenasd.monitor.history import History

    history = History(tmp_path / "history.sqlite")
    served = Registry.load([models["fan"]], history=history)
    good = sorted((tiny_dataset / "fan" / "test").glob("*.wav"))[:3]
    with running(served, ServiceConfig(fitted=(models["fan"],))) as server:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            answers = [c.post("/v1/models/fan/score", files={"file": (f.name, f.read_bytes())}) for f in good]
            again = c.post("/v1/models/fan/score", files={"file": ("copy.wav", good[0].read_bytes())})
            bad = c.post("/v1/models/fan/score", files={"file": ("noise.wav", b"not audio at all")})
    assert all(a.status_code == 200 for a in answers) and again.status_code == 200
    assert bad.status_code == 422
    rows = {r.file: r for r in history.rows()}
    assert set(rows) == {f.name for f in good} | {"noise.wav"}  # the same recording again: no second row
    for f, answer in zip(good, answers, strict=True):
        row = rows[f.name]
        assert row.score == answer.json()["score"] and row.anomalous == answer.json()["anomalous"]
        assert row.source == "serve" and row.model == "fan.npz" and row.machine == "fan"
        assert row.identity == file_sha256(f) and row.size == f.stat().st_size  # as watch records a file
    assert rows["noise.wav"].score is None and "noise.wav" in rows["noise.wav"].reason
