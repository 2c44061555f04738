"""Bring your own data: image folders, CSV / JSONL texts, HF ids; end-to-end tiny runs, the
inspect summary, and one refusal per malformed case whose message names the file, row or column."""

import json
import re

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from backend.main import app
from conftest import tiny_text, tiny_vision
from rekd_core import cli
from rekd_core.config import ConfigError, DataConfig, parse_config
from rekd_core.data.load import inspect_dataset, load_dataset, load_for_config
from rekd_core.data.spec import DatasetError, DatasetSpec
from rekd_core.data.userdata import LoadOptions, from_hf, options_for
from rekd_core.train.trainer import train
from service.settings import Settings, get_settings

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
GOOD = ["a great, wonderful film", "truly wonderful acting", "great fun and a joy", "a joy to watch, great",
        "wonderful and moving", "great story, great cast", "a wonderful joy", "fun, great, moving",
        "moving and wonderful", "a great joy"]
BAD = ["an awful, boring mess", "boring and dull", "truly awful acting", "a dull, awful plot", "awful and boring",
       "dull from start to end", "a boring awful film", "awful, dull, boring", "boring mess", "a dull mess"]


def _png(path, rgb, size=(20, 16), seed=0):
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(rgb)[None, None] + rng.normal(0, 25, (*size[::-1], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


def make_folder(root, per_class=12, classes=COLORS):
    for c, rgb in classes.items():
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            _png(root / c / f"{c}{i}.png", rgb, size=(16 + i, 16), seed=i)
    return root


def texts(n=40):
    return [(GOOD[i % 10] + f" #{i}", "pos") if i % 2 else (BAD[i % 10] + f" #{i}", "neg") for i in range(n)]


def make_csv(path, rows=None, header="text,label"):
    lines = [header] + [f'"{t}",{y}' for t, y in (rows or texts())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_jsonl(path, rows=None):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def vision_cfg(spec, **train_kw):
    cfg = tiny_vision("re", max_steps=20, eval_every=10, checkpoint_every=10, **train_kw)
    cfg["data"] = {"dataset": spec}
    cfg["model"]["student"].update(img_size=16, patch_size=4, in_chans=3)
    return cfg


def text_cfg(spec, **data):
    cfg = tiny_text("re", max_steps=20, eval_every=10, checkpoint_every=10)
    cfg["data"] = {"dataset": spec, "max_len": 16, **data}
    return cfg


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_folder_trains_end_to_end(tmp_path):
    folder = make_folder(tmp_path / "colors")
    cfg = parse_config(vision_cfg(f"folder:{folder}"))
    res = train(cfg, tmp_path / "run")
    assert res["state"] == "completed" and 0.0 <= res["test"]["accuracy"] <= 1.0
    b = load_for_config(cfg)
    assert b.name == "colors (folder)" and b.class_names == ["blue", "green", "red"]
    assert tuple(b.train.x.shape[1:]) == (3, 16, 16)  # resized to the student's img_size, its channels


@pytest.mark.slow
def test_jsonl_trains_end_to_end_with_its_split_column(tmp_path):
    rows = [{"review": t, "stars": int(y == "pos"), "part": "test" if i % 5 == 0 else "train"}
            for i, (t, y) in enumerate(texts())]
    path = make_jsonl(tmp_path / "reviews.jsonl", rows)
    cfg = parse_config(text_cfg(f"jsonl:{path}", text_column="review", label_column="stars", split_column="part"))
    res = train(cfg, tmp_path / "run")
    assert res["state"] == "completed" and res["test"]["n"] == 8
    b = load_for_config(cfg)
    assert b.class_names == ["0", "1"] and len(b.test) == 8 and len(b.train) + len(b.dev) == 32


@pytest.mark.slow
def test_cli_trains_on_a_csv_given_by_set(tmp_path, capsys):
    path = make_csv(tmp_path / "reviews.csv")
    conf = tmp_path / "cfg.yaml"
    conf.write_text(yaml.safe_dump(text_cfg("rotten_tomatoes")))
    rc = cli.main(["train", str(conf), "--set", f"data.dataset=csv:{path}", "--run-dir", str(tmp_path / "run")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "completed"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["dataset"] == f"csv:{path}"


def test_cli_train_refuses_a_bad_csv_before_making_a_run(tmp_path, capsys):
    path = make_csv(tmp_path / "bad.csv", texts()[:5] + [("", "pos")])
    conf = tmp_path / "cfg.yaml"
    conf.write_text(yaml.safe_dump(text_cfg(f"csv:{path}")))
    assert cli.main(["train", str(conf), "--run-dir", str(tmp_path / "run")]) == 2
    assert "row 6 (line 7), column 'text': the text is empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ loading and inspecting


def test_inspect_folder_summary(tmp_path):
    folder = make_folder(tmp_path / "colors", per_class=10)
    s = inspect_dataset(DataConfig(dataset=f"folder:{folder}"), "vision", image_size=8, in_chans=1)
    assert s["kind"] == "folder" and s["name"] == "colors (folder)" and s["modality"] == "vision"
    assert s["class_names"] == ["blue", "green", "red"]
    assert s["counts"] == {"train": 24, "dev": 3, "test": 3}
    assert all(sum(per.values()) == 10 for per in s["per_class"].values())
    assert {e["source"].split("/")[0] for e in s["examples"]} <= set(COLORS)


def test_folder_official_split_and_gray(tmp_path):
    make_folder(tmp_path / "d" / "train", per_class=8, classes={"a": (10, 10, 10), "b": (240, 240, 240)})
    make_folder(tmp_path / "d" / "test", per_class=3, classes={"a": (10, 10, 10), "b": (240, 240, 240)})
    b = load_dataset(f"folder:{tmp_path / 'd'}", options=LoadOptions(image_size=8, in_chans=1))
    assert len(b.test) == 6 and len(b.train) + len(b.dev) == 16
    assert b.train.x.shape[1:] == (1, 8, 8)
    dark = b.train.x[b.train.y == 0].float().mean()
    assert dark < 60 < 200 < b.train.x[b.train.y == 1].float().mean()


def test_inspect_csv_summary_and_string_labels(tmp_path):
    path = make_csv(tmp_path / "r.csv")
    s = inspect_dataset(DataConfig(dataset=f"csv:{path}"), "text")
    assert s["name"] == "r.csv (csv)" and s["class_names"] == ["neg", "pos"]
    assert s["counts"] == {"train": 32, "dev": 4, "test": 4}
    assert s["per_class"]["pos"] == {"train": 16, "dev": 2, "test": 2}
    assert s["examples"][0]["text"] and s["examples"][0]["source"].startswith("row ")


def test_integer_labels_sort_numerically(tmp_path):
    rows = [(t, 1 + i % 3 * 5) for i, (t, _) in enumerate(texts(30))]  # labels 1, 6, 11
    b = load_dataset(f"csv:{make_csv(tmp_path / 'r.csv', rows)}")
    assert b.class_names == ["1", "6", "11"]


def test_hf_conversion_from_a_mapping_of_columns():
    # the same code path a datasets.DatasetDict takes (ds[split][column], .keys()), without the library
    ds = {"train": {"sentence": [t for t, _ in texts(30)], "label": [int(y == "pos") for _, y in texts(30)]},
          "validation": {"sentence": ["great", "awful"], "label": [1, 0]},
          "test": {"sentence": ["x", "y"], "label": [-1, -1]}}  # unlabelled test (GLUE): carved instead
    out = from_hf(ds, DatasetSpec("hf", "glue", "sst2"), LoadOptions(text_column="sentence"))
    assert out.label == "glue:sst2 (hf)" and out.raw.class_names == ("0", "1")
    assert len(out.raw.dev_y) == 2 and out.raw.test_y is None and len(out.raw.train_y) == 30


def test_hf_without_the_library_says_what_to_install():
    with pytest.raises(DatasetError, match=r"'datasets' library is not installed.*pip install 'rekd\[hf\]'"):
        load_dataset("hf:imdb")
    with pytest.raises(DatasetError, match="pip install"):
        inspect_dataset(DataConfig(dataset="hf:glue:sst2"), "text")


# ------------------------------------------------------------------ spec and config refusals


@pytest.mark.parametrize("spec, words", [
    ("nope", ["unknown dataset 'nope'", "fashion_mnist", "folder:/abs/dir", "csv:", "jsonl:", "hf:<id>"]),
    ("zip:/x.zip", ["unknown kind 'zip:'", "folder:/abs/dir"]),
    ("csv:data/x.csv", ["absolute server-side path"]),
    ("folder:", ["absolute server-side path"]),
    ("hf:bad id!", ["hf:<id> or hf:<id>:<config>"]),
])
def test_malformed_spec_is_refused_naming_data_dataset(spec, words):
    with pytest.raises(ConfigError) as exc:
        parse_config(text_cfg(spec))
    assert exc.value.errors[0]["field"] == "data.dataset"
    for w in words:
        assert w in exc.value.errors[0]["message"]


def test_modality_must_match_the_task(tmp_path):
    with pytest.raises(ConfigError, match=r"data.dataset 'csv:/x.csv' holds texts \(text\) but task is 'vision'"):
        parse_config(vision_cfg("csv:/x.csv"))
    with pytest.raises(ConfigError, match=r"holds images \(vision\) but task is 'text'"):
        parse_config(text_cfg("folder:/x"))


def test_parsed_config_round_trips_as_plain_json(tmp_path):
    cfg = parse_config(text_cfg("csv:/data/r.csv", text_column="review"))
    assert json.loads(cfg.model_dump_json())["data"]["dataset"] == "csv:/data/r.csv"
    assert options_for(cfg).text_column == "review"  # what the trainer's load_for_config passes on
    assert parse_config(json.loads(cfg.model_dump_json())) == cfg


# ------------------------------------------------------------------ one refusal per malformed case


def _folder_case(tmp_path, case):
    root = tmp_path / "imgs"
    if case == "missing":
        return root, "imgs: no such folder"
    make_folder(root, per_class=3, classes={"a": (0, 0, 0), "b": (255, 255, 255)})
    if case == "one class":
        import shutil

        shutil.rmtree(root / "b")
        return root, "found 1 class folder(s) (a); need at least 2"
    if case == "empty class":
        (root / "c").mkdir()
        return root, "class folder 'c' holds no images"
    if case == "corrupt":
        (root / "a" / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        return root, "a/zz.png: "
    if case == "not an image":
        (root / "b" / "notes.txt").write_text("hello")
        return root, "b/notes.txt: not an image file (allowed: png, jpg, jpeg, bmp, gif, webp)"
    if case == "renamed text":
        (root / "b" / "fake.jpg").write_text("hello, not a jpeg")
        return root, "b/fake.jpg: not a PNG, JPEG, GIF, BMP or WEBP image"
    if case == "nested":
        (root / "a" / "more").mkdir()
        _png(root / "a" / "more" / "x.png", (0, 0, 0))
        return root, "a/more: a folder inside class folder a; images of a class must sit directly in a/"
    if case == "loose image":
        _png(root / "stray.png", (0, 0, 0))
        return root, "stray.png: an image directly in"
    if case == "unknown test class":
        import shutil

        shutil.move(root, tmp_path / "train")
        root.mkdir()
        shutil.move(tmp_path / "train", root / "train")
        make_folder(root / "test", per_class=1, classes={"zebra": (1, 2, 3)})
        return root, "class 'zebra' is not among the train classes (a, b)"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "one class", "empty class", "corrupt", "not an image", "renamed text",
                                  "nested", "loose image", "unknown test class"])
def test_folder_refusals_name_the_file(tmp_path, case):
    root, words = _folder_case(tmp_path, case)
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"folder:{root}", options=LoadOptions(image_size=8))
    assert words in str(exc.value)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    from rekd_core.data import userdata

    make_folder(tmp_path / "imgs", per_class=2, classes={"a": (0, 0, 0), "b": (9, 9, 9)})
    monkeypatch.setattr(userdata, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DatasetError, match=r"a0\.png: 16x16 image is over the 100-pixel limit"):
        load_dataset(f"folder:{tmp_path / 'imgs'}", options=LoadOptions(image_size=8))


CSV_CASES = {
    "missing column": ("body,label\nhi,pos\n", {},
                       "no column 'text' (data.text_column); columns found: 'body', 'label'"),
    "empty text": ("text,label\nhi,pos\n  ,neg\n", {}, "row 2 (line 3), column 'text': the text is empty"),
    "empty label": ("text,label\nhi,pos\nho,\n", {}, "row 2 (line 3), column 'label': the label is empty"),
    "wrong field count": ("text,label\nhi,pos\nhi, there,neg\n", {},
                          "row 2 (line 3): 3 fields, but the header has 2 (text, label)"),
    "one class": ("text,label\nhi,pos\nho,pos\n", {}, "column 'label' has 1 distinct label(s) ('pos'); a classifier "
                                                      "needs at least 2"),
    "bad split": ("text,label,split\nhi,pos,train\nho,neg,holdout\n", {},
                  "row 2 (line 3), column 'split': split must be train, dev (or validation) or test, got 'holdout'"),
    "other label column": ("text,y\nhi,pos\n", {"label_column": "sentiment"},
                           "no column 'sentiment' (data.label_column); columns found: 'text', 'y'"),
    "empty file": ("", {}, "the file is empty"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_csv_refusals_name_row_and_column(tmp_path, case):
    text, opts, words = CSV_CASES[case]
    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"csv:{tmp_path / 't.csv'}", options=LoadOptions(**opts))
    assert words in str(exc.value) and "t.csv" in str(exc.value)


def test_not_utf8_names_the_byte_offset(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"text,label\nna\xefve caf\xe9,pos\n")
    with pytest.raises(DatasetError, match=r"t\.csv: not UTF-8 at byte offset 13 \(line 2"):
        load_dataset(f"csv:{tmp_path / 't.csv'}")


JSONL_CASES = {
    "not json": ('{"text": "hi", "label": "pos"}\n{"text": "ho", label: "neg"}\n', "line 2 is not JSON"),
    "not an object": ('{"text": "hi", "label": "pos"}\n["ho", "neg"]\n', "row 2 (line 2): expected a JSON object"),
    "missing field": ('{"text": "hi", "label": "pos"}\n\n{"txt": "ho", "label": "neg"}\n',
                      "row 2 (line 3): no column 'text' (data.text_column); columns found: 'txt', 'label'"),
    "float label": ('{"text": "hi", "label": 0.5}\n', "row 1 (line 1), column 'label': a label must be a string or "
                                                       "an integer, got float"),
    "null label": ('{"text": "hi", "label": null}\n', "row 1 (line 1), column 'label': the label is empty"),
    "number text": ('{"text": 7, "label": "a"}\n', "row 1 (line 1), column 'text': the text must be a string"),
}


@pytest.mark.parametrize("case", list(JSONL_CASES))
def test_jsonl_refusals_name_line_and_column(tmp_path, case):
    text, words = JSONL_CASES[case]
    (tmp_path / "t.jsonl").write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"jsonl:{tmp_path / 't.jsonl'}")
    assert words in str(exc.value)


def test_too_few_examples_to_split(tmp_path):
    path = make_csv(tmp_path / "t.csv", [("a", "x"), ("b", "y"), ("c", "x")])
    with pytest.raises(DatasetError, match=r"too few examples \(3 in all\): train/dev/test would hold"):
        load_dataset(f"csv:{path}")


def test_special_files_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="/dev/zero: not a regular file"):
        load_dataset("csv:/dev/zero")


def test_edits_to_the_file_are_seen(tmp_path):
    path = make_csv(tmp_path / "t.csv")
    assert load_dataset(f"csv:{path}").class_names == ["neg", "pos"]
    make_csv(path, [(t, y.upper()) for t, y in texts()])
    assert load_dataset(f"csv:{path}").class_names == ["NEG", "POS"]


# ------------------------------------------------------------------ API and CLI


@pytest.fixture()
def client(tmp_path):
    fixed = Settings(runs_dir=tmp_path / "runs", data_roots=str(tmp_path))  # the API reads data only there
    app.dependency_overrides[get_settings] = lambda: fixed
    yield TestClient(app)
    app.dependency_overrides.clear()


def test_api_create_run_refuses_a_bad_file_with_row_and_column(client, tmp_path):
    path = make_csv(tmp_path / "bad.csv", texts()[:5] + [("fine", "")])
    r = client.post("/api/runs", json={"config": text_cfg(f"csv:{path}")})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "config", "data", "dataset"]
    assert "row 6 (line 7), column 'label': the label is empty" in err["msg"]
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())  # nothing queued


def test_api_create_run_refuses_a_malformed_spec(client):
    r = client.post("/api/runs", json={"config": text_cfg("csv:relative.csv")})
    assert r.status_code == 422
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "config", "data", "dataset"] and "absolute" in err["msg"]


def test_api_lists_the_builtin_datasets_with_the_benchmarks_marked(client):
    body = client.get("/api/datasets").json()
    by_name = {d["name"]: d for d in body}
    assert by_name["fashion_mnist_clutter"]["ground_truth"] and by_name["rotten_tomatoes_needle"]["modality"] == "text"
    assert not by_name["fashion_mnist"]["ground_truth"] and by_name["mnist_5k_clutter"]["num_classes"] == 10


def test_api_inspect(client, tmp_path):
    path = make_jsonl(tmp_path / "t.jsonl", [{"text": t, "label": y} for t, y in texts()])
    r = client.post("/api/datasets/inspect", json={"dataset": f"jsonl:{path}", "task": "text"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "jsonl" and body["class_names"] == ["neg", "pos"] and body["counts"]["test"] == 4
    assert body["ground_truth"] == {"train": 0, "dev": 0, "test": 0}
    folder = make_folder(tmp_path / "colors", per_class=8)
    r = client.post("/api/datasets/inspect", json={"dataset": f"folder:{folder}", "task": "vision",
                                                   "image_size": 8, "in_chans": 1})
    assert r.status_code == 200 and r.json()["counts"] == {"train": 20, "dev": 2, "test": 2}
    masked = make_masked_folder(tmp_path / "masked")
    r = client.post("/api/datasets/inspect", json={"dataset": f"folder:{masked}", "task": "vision", "image_size": 8})
    assert r.status_code == 200 and sum(r.json()["ground_truth"].values()) == 15
    rows = [{"text": t, "label": y, "why": [t[:4]] if i % 2 else None} for i, (t, y) in enumerate(texts())]
    path = make_jsonl(tmp_path / "why.jsonl", rows)
    r = client.post("/api/datasets/inspect", json={"dataset": f"jsonl:{path}", "task": "text",
                                                   "rationale_column": "why"})
    assert r.status_code == 200 and sum(r.json()["ground_truth"].values()) == 20


def test_api_documents_ground_truth(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["DatasetSummary"]["properties"]
    assert "plausibility" in schema["ground_truth"]["description"]


@pytest.mark.parametrize("body, words", [
    ({"dataset": "csv:rel.csv", "task": "text"}, "absolute server-side path"),
    ({"dataset": "csv:/no/such.csv", "task": "text"}, "/no/such.csv is outside the folders this server reads"),
    ({"dataset": "folder:/x", "task": "text"}, "holds images (vision) but task is 'text'"),
    ({"dataset": "hf:imdb", "task": "text"}, "pip install"),
])
def test_api_inspect_refusals(client, body, words):
    r = client.post("/api/datasets/inspect", json=body)
    assert r.status_code == 422
    assert words in r.json()["detail"][0]["msg"]


def test_api_inspect_needs_the_token_when_one_is_set(tmp_path):
    fixed = Settings(runs_dir=tmp_path, api_token="s3cret", data_roots=str(tmp_path))
    app.dependency_overrides[get_settings] = lambda: fixed
    try:
        c = TestClient(app)
        path = make_csv(tmp_path / "t.csv")
        body = {"dataset": f"csv:{path}", "task": "text"}
        assert c.post("/api/datasets/inspect", json=body).status_code == 401
        ok = c.post("/api/datasets/inspect", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    finally:
        app.dependency_overrides.clear()


def test_cli_data_inspect(tmp_path, capsys):
    path = make_csv(tmp_path / "r.csv")
    assert cli.main(["data", "inspect", f"csv:{path}"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"r\.csv \(csv\): text, 2 classes, 32 train, 4 dev, 4 test", out)
    assert cli.main(["data", "inspect", f"csv:{path}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["per_class"]["neg"]["train"] == 16
    bad = make_csv(tmp_path / "bad.csv", header="body,label")
    assert cli.main(["data", "inspect", f"csv:{bad}"]) == 2
    assert "no column 'text' (data.text_column); columns found: 'body', 'label'" in capsys.readouterr().err


# ------------------------------------------------------------------ your own ground truth


def _half_png(path, rgb, size=(20, 16)):
    """The class colour on the left half (the evidence), black on the right."""
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:, : size[0] // 2] = rgb
    Image.fromarray(arr).save(path)


def _mask_png(path, size=(20, 16), mode="L"):
    arr = np.zeros((size[1], size[0]), np.uint8)
    arr[:, : size[0] // 2] = 255
    Image.fromarray(arr).convert(mode).save(path)


def make_masked_folder(root, per_class=10, classes=COLORS):
    """Every even image has a mask of its left half: some as x.png + x.mask.png, one a JPEG image with
    a PNG mask, one an RGB mask, one drawn at half the image's resolution."""
    for c, rgb in classes.items():
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            name = f"{c}{i}.jpg" if i == 2 else f"{c}{i}.png"
            _half_png(root / c / name, rgb)
            if i % 2 == 0:
                _mask_png(root / c / f"{c}{i}.mask.png", size=(10, 8) if i == 4 else (20, 16),
                          mode="RGB" if i == 6 else "L")
    return root


def test_folder_masks_become_evidence_aligned_with_the_resized_image(tmp_path):
    folder = make_masked_folder(tmp_path / "colors")
    b = load_dataset(f"folder:{folder}", options=LoadOptions(image_size=8))
    splits = (b.train, b.dev, b.test)
    assert sum(len(s) for s in splits) == 30  # masks are not images of their class
    assert sum(s.evidence.n_known for s in splits) == 15
    for s in splits:
        assert s.evidence.pixels.shape == (len(s), 8, 8) and s.evidence.pixels.dtype.is_floating_point is False
        bright = s.x.float().amax(1) > 100  # the class colour, resized as the mask was
        for i in range(len(s)):
            if s.evidence.known[i]:
                assert set(s.evidence.pixels[i].unique().tolist()) == {0, 1}
                assert (s.evidence.pixels[i].bool() == bright[i]).all()
            else:
                assert not s.evidence.pixels[i].any()


def test_folder_without_masks_has_no_evidence(tmp_path):
    b = load_dataset(f"folder:{make_folder(tmp_path / 'colors', per_class=4)}", options=LoadOptions(image_size=8))
    assert b.train.evidence is None and b.test.evidence is None and not b.has_evidence


def test_a_changed_mask_is_seen(tmp_path):
    folder = make_masked_folder(tmp_path / "colors", per_class=4)
    spec, opts = f"folder:{folder}", LoadOptions(image_size=8)
    before = load_dataset(spec, options=opts).train.evidence.pixels.sum().item()
    for m in folder.rglob("*.mask.png"):
        Image.fromarray(np.full((16, 20), 255, np.uint8)).save(m)  # now the whole image
    assert load_dataset(spec, options=opts).train.evidence.pixels.sum().item() > before


SPAN_TEXT = "gorgeous, witty and sharp"


def test_csv_rationale_column_of_span_pairs(tmp_path):
    import csv

    path = tmp_path / "r.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "rationale"])
        for i, (t, y) in enumerate(texts()):
            w.writerow([t, y, "[[0, 5]]" if i % 4 == 0 else ""])
        w.writerow([SPAN_TEXT, "pos", "[[0, 8], [10, 15]]"])
        w.writerow([SPAN_TEXT + " ", "neg", "witty"])  # one plain substring
    b = load_dataset(f"csv:{path}")
    splits = (b.train, b.dev, b.test)
    assert sum(s.evidence.n_known for s in splits) == 12
    got = {t: sp for s in splits for t, sp, k in zip(s.x, s.evidence.spans, s.evidence.known.tolist()) if k}
    assert got[SPAN_TEXT] == [(0, 8), (10, 15)] and got[SPAN_TEXT + " "] == [(10, 15)]
    assert all(sp == [(0, 5)] for t, sp in got.items() if "#" in t)
    assert all(sp == [] for s in splits for sp, k in zip(s.evidence.spans, s.evidence.known.tolist()) if not k)


def test_jsonl_rationale_column_of_substrings(tmp_path):
    rows = [{"text": t, "label": y} for t, y in texts()]
    rows[0]["why"] = ["gorgeous", "witty"]
    rows[0]["text"] = SPAN_TEXT + ", gorgeous"  # the first occurrence is taken
    rows[1].update(text="sharp, and sharp #1", why='["sharp", "and"]')  # a JSON string holding the array
    rows[2]["why"] = None  # not annotated, as a row without the key
    path = make_jsonl(tmp_path / "t.jsonl", rows)
    b = load_dataset(f"jsonl:{path}", options=LoadOptions(rationale_column="why"))
    splits = (b.train, b.dev, b.test)
    assert sum(s.evidence.n_known for s in splits) == 2
    got = {t: sp for s in splits for t, sp, k in zip(s.x, s.evidence.spans, s.evidence.known.tolist()) if k}
    assert got[SPAN_TEXT + ", gorgeous"] == [(0, 8), (10, 15)]
    assert got["sharp, and sharp #1"] == [(0, 5), (7, 10)]


def test_a_table_without_the_rationale_column_has_no_evidence(tmp_path):
    b = load_dataset(f"csv:{make_csv(tmp_path / 'r.csv')}")
    assert b.train.evidence is None and not b.has_evidence


def _mask_case(root, case):
    make_masked_folder(root, per_class=3, classes={"a": (200, 0, 0), "b": (0, 0, 200)})
    if case == "mask without image":
        _mask_png(root / "b" / "ghost.mask.png")
        return "b/ghost.mask.png: a mask without its image: no ghost.png"
    if case == "corrupt mask":
        (root / "a" / "a1.mask.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        return "a/a1.mask.png: "
    if case == "mask of another shape":
        _mask_png(root / "a" / "a1.mask.png", size=(16, 20))
        return "a/a1.mask.png: the mask is 16x20 but its image a1.png is 20x16"
    if case == "two masks":
        _mask_png(root / "a" / "a0.mask.jpg")
        return "a/a0.mask.png: a0.png already has a mask (a0.mask.jpg)"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["mask without image", "corrupt mask", "mask of another shape", "two masks"])
def test_mask_refusals_name_the_file(tmp_path, case):
    words = _mask_case(tmp_path / "imgs", case)
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"folder:{tmp_path / 'imgs'}", options=LoadOptions(image_size=8))
    assert words in str(exc.value)


RATIONALE_CASES = {
    "substring not found": ('"Gorgeous"', "row 3 (line 4), column 'rationale': 'Gorgeous' is not in the text "
                                          "(substrings are matched exactly, case-sensitive)"),
    "span out of range": ('"[[10, 99]]"', "row 3 (line 4), column 'rationale': span [10, 99] is out of range: "
                                          "the text has 25 characters"),
    "reversed span": ('"[[8, 2]]"', "row 3 (line 4), column 'rationale': span [8, 2] is reversed or empty"),
    "not json": ('"[[0, 8]"', "row 3 (line 4), column 'rationale': not a JSON array"),
    "not a pair": ('"[[0, 8, 9]]"', "row 3 (line 4), column 'rationale': [0, 8, 9] is not a [start, end] pair"),
    "mixed": ('"[""witty"", [0, 8]]"', "row 3 (line 4), column 'rationale': 'witty' is not a [start, end] pair"),
    "number": ('"7"', "row 3 (line 4), column 'rationale': '7' is not in the text"),
}


@pytest.mark.parametrize("case", list(RATIONALE_CASES))
def test_csv_rationale_refusals_name_row_and_column(tmp_path, case):
    cell, words = RATIONALE_CASES[case]
    path = tmp_path / "t.csv"
    path.write_text(f"text,label,rationale\nhi,pos,\nho,neg,\n\"{SPAN_TEXT}\",pos,{cell}\n", encoding="utf-8")
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"csv:{path}")
    assert words in str(exc.value) and "t.csv" in str(exc.value)


@pytest.mark.parametrize("value, words", [
    (7, "row 2 (line 2), column 'rationale': expected [[start, end], ...]"),
    ({"start": 0}, "row 2 (line 2), column 'rationale': expected [[start, end], ...]"),
    ([[0, True]], "row 2 (line 2), column 'rationale': [0, True] is not a [start, end] pair"),
    (["witty", ""], "row 2 (line 2), column 'rationale': an empty substring marks nothing"),
    ([[-1, 3]], "row 2 (line 2), column 'rationale': span [-1, 3] is out of range"),
])
def test_jsonl_rationale_refusals_name_line_and_column(tmp_path, value, words):
    rows = [{"text": "hi", "label": "pos"}, {"text": SPAN_TEXT, "label": "neg", "rationale": value}]
    path = make_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"jsonl:{path}")
    assert words in str(exc.value) and "t.jsonl" in str(exc.value)


def test_inspect_counts_ground_truth(tmp_path, capsys):
    folder = make_masked_folder(tmp_path / "colors")
    s = inspect_dataset(DataConfig(dataset=f"folder:{folder}"), "vision", image_size=8)
    assert s["counts"] == {"train": 24, "dev": 3, "test": 3} and sum(s["ground_truth"].values()) == 15
    assert all(0 <= s["ground_truth"][k] <= n for k, n in s["counts"].items())
    assert all(not e["source"].endswith(".mask.png") for e in s["examples"])
    plain = inspect_dataset(DataConfig(dataset=f"csv:{make_csv(tmp_path / 'r.csv')}"), "text")
    assert plain["ground_truth"] == {"train": 0, "dev": 0, "test": 0}
    assert cli.main(["data", "inspect", f"folder:{folder}", "--image-size", "8"]) == 0
    gt = s["ground_truth"]
    assert (f"ground truth: {gt['train']} of 24 train, {gt['dev']} of 3 dev, {gt['test']} of 3 test examples "
            "(agreement with your annotations is reported as plausibility)") in capsys.readouterr().out


@pytest.mark.slow
def test_folder_with_masks_trains_and_reports_plausibility(tmp_path):
    folder = make_masked_folder(tmp_path / "colors")
    cfg = parse_config(vision_cfg(f"folder:{folder}"))
    res = train(cfg, tmp_path / "run")
    assert res["state"] == "completed"
    dev_known = load_for_config(cfg).dev.evidence.n_known
    assert dev_known > 0
    evals = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "eval"]
    assert evals and all(e["plausibility"]["ground_truth"] == "annotations" for e in evals)
    assert all(e["plausibility"]["n"] == dev_known for e in evals)
