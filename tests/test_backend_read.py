"""The read side of the API on real (tiny) runs: per-example rationales, metric series, and
upload-to-explain with its refusals (size, format, corruption, bombs, bad ids, wrong modality)."""

import base64
import csv
import io
import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from backend.routes import examples, explain
from backend.routes import faithfulness as faithfulness_views
from backend.routes import metrics as metrics_views
from backend.routes import quality as quality_views
from conftest import tiny_vision
from rekd_core.config import parse_config
from rekd_core.store.runstore import RunStore
from rekd_core.train.trainer import train
from service.settings import Settings, get_settings


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, teacher_runs):
    """teacher-vision (RE, snapshots at 3 and 6), teacher-text (RE), rekd-vision (distilled from
    teacher-vision, snapshots at 2 and 4), queued (created, never trained)."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(teacher_runs["vision"], root / "teacher-vision")
    shutil.copytree(teacher_runs["text"], root / "teacher-text")
    cfg = tiny_vision("rekd", max_steps=4, eval_every=2, checkpoint_every=2, log_every=2)
    cfg["model"]["teacher_run"] = str(root / "teacher-vision")
    train(parse_config(cfg), root / "rekd-vision")
    RunStore.create(root / "queued", parse_config(tiny_vision("re")))
    return root


def make_client(runs_dir, **settings) -> TestClient:
    app = FastAPI()
    for views in (examples, metrics_views, quality_views, faithfulness_views):  # as backend.main mounts them
        app.include_router(views.router)
    app.include_router(explain.router)
    fixed = Settings(runs_dir=runs_dir, **settings)
    app.dependency_overrides[get_settings] = lambda: fixed
    return TestClient(app)


@pytest.fixture(scope="module")
def client(runs_dir):
    return make_client(runs_dir)


def decode_data_url(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))


def image_bytes(fmt: str = "PNG", size=(28, 28), mode: str = "L") -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]), dtype=np.uint8)
    buf = io.BytesIO()
    img = Image.fromarray(arr).convert(mode)
    img.save(buf, format=fmt)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def post_image(client, run_id, data, name="x.png", **form):
    return client.post("/api/explain", data={"run_id": run_id, **form}, files={"file": (name, data, "image/png")})


# --- examples ----------------------------------------------------------------------------------
def test_examples_latest_step_paging_and_images(client, runs_dir):
    r = client.get("/api/runs/teacher-vision/examples", params={"offset": 2, "limit": 3})
    assert r.status_code == 200, r.text
    page = r.json()
    snap = json.loads((runs_dir / "teacher-vision" / "examples" / "step-0000006.json").read_text())
    assert page["steps"] == [3, 6] and page["step"] == 6 and page["tau"] == pytest.approx(snap["tau"])
    assert page["modality"] == "vision" and len(page["class_names"]) == 10
    assert page["total"] == 8 and page["grid"] == [4, 4] and page["image_size"] == [28, 28]
    assert len(page["patches"]) == 16 and page["patches"][5]["box"] == [7, 7, 14, 14]
    assert page["has_teacher"] is False
    items = page["items"]
    assert [it["index"] for it in items] == [2, 3, 4]
    for it in items:
        assert it["label"] == snap["labels"][it["index"]]
        assert it["student"]["pred"] == snap["student"]["pred"][it["index"]]
        assert len(it["student"]["mask"]) == len(it["student"]["sel_prob"]) == 16
        assert it["teacher"] is None and it["agree"] is None and it["text"] is None
        img = decode_data_url(it["image"])
        assert img.size == (28, 28) and img.mode == "L"
    # the page's images are the saved inputs, pixel for pixel
    from safetensors.numpy import load_file
    saved = load_file(str(runs_dir / "teacher-vision" / "examples" / "inputs.safetensors"))["images"]
    assert np.array_equal(np.asarray(decode_data_url(items[0]["image"])), saved[2, 0])
    # past the end: an empty page, the total unchanged
    r = client.get("/api/runs/teacher-vision/examples", params={"offset": 8})
    assert r.json()["items"] == [] and r.json()["total"] == 8


def test_examples_earlier_step_and_unknown_step(client):
    r = client.get("/api/runs/teacher-vision/examples", params={"step": 3})
    assert r.status_code == 200 and r.json()["step"] == 3
    r = client.get("/api/runs/teacher-vision/examples", params={"step": 4})
    assert r.status_code == 404 and "no snapshot at step 4" in r.json()["detail"]


def test_examples_filters(client):
    base = "/api/runs/teacher-vision/examples"
    every = client.get(base, params={"limit": 200}).json()["items"]
    correct = client.get(base, params={"filter": "correct", "limit": 200}).json()
    wrong = client.get(base, params={"filter": "wrong", "limit": 200}).json()
    assert correct["total"] + wrong["total"] == len(every) == 8
    assert all(it["correct"] for it in correct["items"]) and not any(it["correct"] for it in wrong["items"])
    label = every[0]["label"]
    same = client.get(base, params={"label": label, "limit": 200}).json()
    assert same["total"] == sum(it["label"] == label for it in every)
    assert all(it["label"] == label for it in same["items"])
    assert client.get(base, params={"label": 10}).status_code == 422  # 10 classes: 0..9
    assert client.get(base, params={"filter": "odd"}).status_code == 422
    assert client.get(base, params={"limit": 0}).status_code == 422
    # no teacher: nothing disagrees with it
    assert client.get(base, params={"filter": "disagree"}).json()["total"] == 0


def test_examples_of_a_distilled_run_show_the_teacher(client):
    page = client.get("/api/runs/rekd-vision/examples", params={"limit": 200}).json()
    assert page["steps"] == [2, 4] and page["has_teacher"] is True
    for it in page["items"]:
        s, t = it["student"], it["teacher"]
        assert t is not None and len(t["mask"]) == 16
        inter = sum(a and b for a, b in zip(s["mask"], t["mask"]))
        union = sum(a or b for a, b in zip(s["mask"], t["mask"]))
        assert it["agree"] == pytest.approx(inter / union if union else 1.0)
    dis = client.get("/api/runs/rekd-vision/examples", params={"filter": "disagree", "limit": 200}).json()
    assert dis["total"] == sum(it["student"]["pred"] != it["teacher"]["pred"] for it in page["items"])
    assert all(it["student"]["pred"] != it["teacher"]["pred"] for it in dis["items"])


def test_examples_of_a_text_run_carry_tokens_and_spans(client):
    page = client.get("/api/runs/teacher-text/examples").json()
    assert page["modality"] == "text" and page["class_names"] == ["rotten", "fresh"]
    assert page["grid"] is None and page["patches"] is None
    assert page["total"] == 6
    for it in page["items"]:
        text, pos = it["text"], it["positions"]
        assert it["image"] is None and text
        assert [p["index"] for p in pos] == list(range(len(pos)))
        assert pos[0]["token"] == "[CLS]" and not pos[0]["selectable"]
        words = [p for p in pos if p["selectable"]]
        assert all(text[p["span"][0]:p["span"][1]].lower() == p["token"].removeprefix("##") for p in words)
        assert len(it["student"]["mask"]) == len(it["student"]["sel_prob"]) == len(pos)  # padding cut


def test_examples_before_any_snapshot_is_409(client, runs_dir):
    r = client.get("/api/runs/queued/examples")
    assert r.status_code == 409 and "no saved examples" in r.json()["detail"]
    # inputs written (training started) but no eval yet
    started = runs_dir / "started"
    (started / "examples").mkdir(parents=True)
    shutil.copy(runs_dir / "teacher-vision" / "examples" / "inputs.json", started / "examples")
    shutil.copy(runs_dir / "teacher-vision" / "config.json", started)  # every run directory holds its config
    r = client.get("/api/runs/started/examples")
    assert r.status_code == 409 and "no rationale snapshot" in r.json()["detail"]


@pytest.mark.parametrize("route", ["examples", "metrics"])
# a literal ".." segment never leaves the client (URLs are normalised), so it is spelled encoded
@pytest.mark.parametrize("run_id", ["...", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a%2Fb", ".hidden",
                                    "x" * 200])
def test_bad_run_ids_are_422(client, route, run_id):
    r = client.get(f"/api/runs/{run_id}/{route}")
    assert r.status_code == 422, (run_id, r.status_code, r.text)
    assert "invalid run id" in r.json()["detail"]


def test_unknown_run_and_escaping_symlink_are_404(client, runs_dir, tmp_path):
    assert client.get("/api/runs/nope/examples").status_code == 404
    assert client.get("/api/runs/nope/metrics").status_code == 404
    shutil.copytree(runs_dir / "teacher-vision", tmp_path / "outside")
    (runs_dir / "escape").symlink_to(tmp_path / "outside")
    r = client.get("/api/runs/escape/examples")
    assert r.status_code == 404 and r.json()["detail"] == "no run 'escape'"


# --- metrics -----------------------------------------------------------------------------------
def test_metrics_json(client):
    r = client.get("/api/runs/rekd-vision/metrics")
    assert r.status_code == 200, r.text
    m = r.json()
    assert [p["step"] for p in m["log"]] == [2, 4] and [p["step"] for p in m["eval"]] == [2, 4]
    for p in m["log"]:
        for key in ("epoch", "tau", "train_acc", "samples_per_s", "loss_ce", "loss_select", "loss_re", "loss_kd_r",
                    "loss_kd_y", "loss_kd", "loss_total", "selected_mean", "selected_std", "selected_min",
                    "selected_max", "iou"):
            assert isinstance(p[key], (int, float)), key
    for p in m["eval"]:
        for key in ("tau", "accuracy", "macro_f1", "selected_mean", "selected_max", "iou"):
            assert isinstance(p[key], (int, float)), key
    assert m["test"]["step"] == 4 and 0 <= m["test"]["accuracy"] <= 1 and m["test"]["checkpoint_step"] in (2, 4)
    empty = client.get("/api/runs/queued/metrics").json()
    assert empty == {"run_id": "queued", "log": [], "eval": [], "test": None}


def test_metrics_csv(client):
    r = client.get("/api/runs/teacher-vision/metrics", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    header = r.text.splitlines()[0].split(",")
    assert header[:2] == ["kind", "step"] and "loss_total" in header and "accuracy" in header
    assert [(row["kind"], row["step"]) for row in rows] == [("log", "2"), ("log", "4"), ("log", "6"),
                                                            ("eval", "3"), ("eval", "6")]
    assert rows[0]["accuracy"] == "" and rows[3]["loss_total"] == ""
    assert float(rows[3]["accuracy"]) >= 0
    assert client.get("/api/runs/teacher-vision/metrics", params={"format": "xml"}).status_code == 422


# --- explain: happy paths ----------------------------------------------------------------------
def test_explain_png(client):
    r = post_image(client, "teacher-vision", image_bytes("PNG"))
    assert r.status_code == 200, r.text
    ex = r.json()
    assert ex["modality"] == "vision" and ex["label"] in ex["probabilities"]
    assert sum(ex["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert len(ex["mask"]) == len(ex["selection_prob"]) == len(ex["positions"]) == 16
    assert ex["positions"][5]["box"] == [7, 7, 14, 14]
    assert ex["run"] == "teacher-vision" and ex["teacher"] is None and ex["checkpoint_step"] == 6
    assert decode_data_url(ex["masked_input"]).size == (28, 28)


@pytest.mark.parametrize("fmt, mode", [("JPEG", "L"), ("GIF", "L"), ("BMP", "RGB"), ("WEBP", "RGB"), ("PNG", "RGBA"),
                                       ("GIF", "P")])
def test_explain_accepts_every_allowed_format(client, fmt, mode):
    data = image_bytes(fmt, size=(56, 42), mode=mode)
    r = post_image(client, "teacher-vision", data, name="upload.bin")  # the bytes decide, not the name
    assert r.status_code == 200, r.text
    assert decode_data_url(r.json()["masked_input"]).size == (56, 42)


def test_explain_with_the_teacher_for_a_distilled_run(client):
    r = post_image(client, "rekd-vision", image_bytes(), checkpoint="last")
    assert r.status_code == 200, r.text
    ex = r.json()
    assert ex["run"] == "rekd-vision" and ex["checkpoint_step"] == 4
    t = ex["teacher"]
    assert t is not None and t["run"] == "teacher-vision" and len(t["mask"]) == 16 and t["teacher"] is None
    assert decode_data_url(t["masked_input"]).size == (28, 28)


def test_explain_text(client):
    text = "A gorgeous, witty film; the ending drags though."
    r = client.post("/api/explain", data={"run_id": "teacher-text", "text": text})
    assert r.status_code == 200, r.text
    ex = r.json()
    assert ex["modality"] == "text" and set(ex["probabilities"]) == {"rotten", "fresh"}
    toks = [p for p in ex["positions"] if p["selectable"]]
    assert toks and all(text[p["span"][0]:p["span"][1]].lower() == p["token"].removeprefix("##") for p in toks)
    assert isinstance(ex["masked_input"], str)
    assert len(ex["mask"]) == len(ex["positions"])


# --- explain: refusals -------------------------------------------------------------------------
def test_oversized_body_is_413_before_parsing(runs_dir):
    small = make_client(runs_dir, max_upload_bytes=2000)
    r = post_image(small, "teacher-vision", image_bytes("BMP", size=(64, 64)))  # ~5 kB
    assert r.status_code == 413 and "at most 2000 bytes" in r.json()["detail"]
    # a body without Content-Length (chunked) is counted as it arrives
    body = b"--b\r\nContent-Disposition: form-data; name=\"run_id\"\r\n\r\nteacher-vision\r\n" + b"x" * 5000

    def chunks():
        yield from (body[i:i + 512] for i in range(0, len(body), 512))

    r = small.post("/api/explain", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "at most 2000 bytes" in r.json()["detail"]
    # under the cap, the same client works
    assert post_image(small, "teacher-vision", image_bytes("PNG")).status_code == 200


def test_non_image_is_415(client):
    r = post_image(client, "teacher-vision", b"hello, this is plain text and not a picture at all")
    assert r.status_code == 415 and "PNG, JPEG, GIF, BMP or WEBP" in r.json()["detail"]
    r = post_image(client, "teacher-vision", image_bytes("TIFF"), name="x.png")  # a real image, refused format
    assert r.status_code == 415


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, image_bytes("PNG")[:60],
                                  image_bytes("JPEG")[:200]], ids=["bad-header", "truncated-png", "truncated-jpeg"])
def test_corrupt_image_is_422(client, data):
    r = post_image(client, "teacher-vision", data)
    assert r.status_code == 422 and "corrupt" in r.json()["detail"]


def test_decompression_bombs_are_422(client, runs_dir):
    r = post_image(client, "teacher-vision", png_claiming(100_000, 100_000))
    assert r.status_code == 422 and "too large" in r.json()["detail"]
    # between max_image_pixels and twice that PIL only warns: the warning is an error here
    strict = make_client(runs_dir, max_image_pixels=500)  # 28 x 28 = 784
    r = post_image(strict, "teacher-vision", image_bytes("PNG"))
    assert r.status_code == 422 and "too large" in r.json()["detail"]


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "..", "/etc", "..%2F..%2Fetc%2Fpasswd", "", "ok\n"])
def test_explain_bad_run_id_is_422(client, run_id):
    r = client.post("/api/explain", data={"run_id": run_id, "text": "fine"})
    assert r.status_code == 422
    if run_id:  # an empty one is missing, and FastAPI says so
        assert "invalid run id" in r.json()["detail"]


def test_explain_unknown_run_404_and_untrained_run_409(client):
    r = client.post("/api/explain", data={"run_id": "nope", "text": "fine"})
    assert r.status_code == 404
    r = post_image(client, "queued", image_bytes())
    assert r.status_code == 409 and "no checkpoint" in r.json()["detail"]


def test_modality_mismatch_is_422(client):
    r = post_image(client, "teacher-text", image_bytes())
    assert r.status_code == 422 and "explains texts" in r.json()["detail"]
    r = client.post("/api/explain", data={"run_id": "teacher-vision", "text": "a fine film"})
    assert r.status_code == 422 and "explains images" in r.json()["detail"]


def test_text_and_input_choice_rules(client, runs_dir):
    def post(**kw):
        return client.post("/api/explain", **kw)

    r = post(data={"run_id": "teacher-text", "text": "  \n "})
    assert r.status_code == 422 and r.json()["detail"] == "the text is empty"
    r = post(data={"run_id": "teacher-text"})
    assert r.status_code == 422 and "exactly one input" in r.json()["detail"]
    r = post(data={"run_id": "teacher-text", "text": "good"}, files={"file": ("x.png", image_bytes(), "image/png")})
    assert r.status_code == 422 and "exactly one input" in r.json()["detail"]
    r = post(files={"file": ("x.png", image_bytes(), "image/png")})
    assert r.status_code == 422  # run_id is required
    short = make_client(runs_dir, max_text_chars=10)
    r = short.post("/api/explain", data={"run_id": "teacher-text", "text": "far more than ten characters"})
    assert r.status_code == 422 and "text too long" in r.json()["detail"]
    r = post(data={"run_id": "teacher-text", "text": "ok", "checkpoint": "worst"})
    assert r.status_code == 422


def test_openapi_documents_every_response(client):
    spec = client.get("/openapi.json").json()
    ex = spec["paths"]["/api/explain"]["post"]
    assert {"200", "404", "409", "413", "415", "422"} <= set(ex["responses"])
    assert ex["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    props = spec["components"]["schemas"]["Body_explain_input_api_explain_post"]["properties"]
    assert {"run_id", "file", "text", "checkpoint"} <= set(props)
    page = spec["paths"]["/api/runs/{run_id}/examples"]["get"]
    assert {"200", "404", "409", "422"} <= set(page["responses"])
    assert page["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ExamplesPage")
    metrics = spec["paths"]["/api/runs/{run_id}/metrics"]["get"]
    assert "text/csv" in metrics["responses"]["200"]["content"]
