"""The web UI scripted the way Gradio apps are: `gradio_client.Client` against the real service (redis-server,
a Celery worker, uvicorn with the UI mounted), each test from a fresh client that never loaded the page."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from conftest import tiny_text, tiny_vision
from tests.support.service import launch_run, sse_events, start_service
from ui.scripting import ENDPOINTS


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    s = start_service(tmp_path_factory.mktemp("gc"), workers=1, ui=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def trained(svc) -> dict[str, str]:
    """A tiny trained image run and text run (trained through the API, as a person's would be)."""
    with svc.client() as c:
        ids = {"vision": launch_run(c, tiny_vision("re", max_steps=2, eval_every=2, checkpoint_every=2)),
               "text": launch_run(c, tiny_text("re", max_steps=2, eval_every=2, checkpoint_every=2))}
        for rid in ids.values():
            assert sse_events(c, rid, timeout=300)[-1]["state"] == "completed"
    return ids


def client(svc):
    from gradio_client import Client

    return Client(svc.base + "/", verbose=False, download_files=False)


def test_the_api_page_lists_named_actions_with_named_parameters(svc):
    info = client(svc).view_api(return_format="dict", print_info=False)
    named = info["named_endpoints"]
    assert not info["unnamed_endpoints"]
    assert set(named) == set(ENDPOINTS), f"missing {set(ENDPOINTS) - set(named)}, extra {set(named) - set(ENDPOINTS)}"
    for name, ep in named.items():
        assert not any(word in name for word in ("lambda", "tick", "init", "fill", "on_row")), name
        params = [p["parameter_name"] for p in ep["parameters"]]
        assert all(p and not p.startswith("param_") for p in params), (name, params)
        returns = [r["label"] for r in ep["returns"]]
        assert all(r and not r.startswith("value_") for r in returns), (name, returns)
        assert ep.get("description"), f"{name} has no description"
    # the launch form's fields by their config keys; explain by what it takes
    assert {"preset", "overrides", "alpha", "max_steps", "batch_size", "seed"} <= {
        p["parameter_name"] for p in named["/launch_run"]["parameters"]}
    assert [p["parameter_name"] for p in named["/explain"]["parameters"]] == [
        "run_id", "image", "review", "baseline_run", "evidence_mask", "rationale"]


def test_explain_a_review_from_a_fresh_client(svc, trained):
    review = "Too long by half, but the final act is devastating and beautifully shot."
    picture, data = client(svc).predict(run_id=trained["text"], review=review, api_name="/explain")
    assert 'class="rk-explain' in picture
    assert data["modality"] == "text" and data["label"] in data["probabilities"]
    assert math.isclose(sum(data["probabilities"].values()), 1.0, abs_tol=1e-4)
    n = len(data["positions"])
    assert n > 2 and len(data["mask"]) == n and len(data["selection_prob"]) == n and len(data["tokens"]) == n
    assert data["selected_positions"] == [i for i, m in enumerate(data["mask"]) if m]
    assert data["selected_tokens"] == [data["tokens"][i] for i in data["selected_positions"]]
    assert data["run"] == trained["text"] and data["text"] == review


def test_explain_an_image_from_a_fresh_client(svc, trained, tmp_path):
    from gradio_client import handle_file

    path = tmp_path / "shirt.png"
    Image.new("L", (28, 28), 40).save(path)
    picture, data = client(svc).predict(run_id=trained["vision"], image=handle_file(str(path)), api_name="/explain")
    assert "data:image/png" in picture
    assert data["modality"] == "vision" and data["label"] in data["probabilities"]
    assert math.isclose(sum(data["probabilities"].values()), 1.0, abs_tol=1e-4)
    assert len(data["mask"]) == len(data["positions"]) == 16  # 28 px in 7 px patches
    assert [p["index"] for p in data["positions"]] == list(range(16)) and all(len(p["box"]) == 4
                                                                         for p in data["positions"])
    assert data["masked_input"].startswith("data:image/png")


def test_explain_refuses_clearly(svc, trained):
    c = client(svc)
    picture, data = c.predict(run_id="no-such-run", review="fine", api_name="/explain")
    assert "rk-error" in picture and "no-such-run" in picture and data is None
    picture, data = c.predict(run_id=trained["text"], api_name="/explain")
    assert "upload an image or paste a review" in picture and data is None


def test_list_and_launch_from_a_fresh_client(svc, trained):
    c = client(svc)
    listed = {r["id"]: r for r in c.predict(api_name="/list_runs")}
    assert {trained["vision"], trained["text"]} <= set(listed)
    assert listed[trained["vision"]]["state"] == "completed"

    # fields left out keep the preset's values; the run is cancelled before it costs anything
    out = c.predict(preset="demo-fmnist-teacher", overrides="data.max_train=64", alpha=0.25, max_steps=3,
                    api_name="/launch_run")
    message, queued = out[0], out[-1]
    assert "queued" in message and len(queued) == 1, message
    run_id = queued[0]
    c.predict(run_id=run_id, api_name="/cancel_run")
    with svc.client() as h:
        cfg = h.get(f"/api/runs/{run_id}").json()["config"]
        preset = next(p for p in h.get("/api/presets").json() if p["name"] == "demo-fmnist-teacher")["config"]
    assert cfg["loss"]["alpha"] == 0.25 and cfg["train"]["max_steps"] == 3 and cfg["data"]["max_train"] == 64
    assert cfg["train"]["batch_size"] == preset["train"]["batch_size"]
    assert cfg["train"]["seed"] == preset["train"].get("seed", 0) and cfg["mode"] == preset["mode"]

    # a refused value names its field, and nothing is queued
    before = len(c.predict(api_name="/list_runs"))
    out = c.predict(preset="demo-fmnist-teacher", alpha=3, api_name="/launch_run")
    assert "not launched" in out[0] and "loss.alpha" in out[0], out[0]
    assert len(c.predict(api_name="/list_runs")) == before
    assert "no preset named" in c.predict(preset="no-such-preset", api_name="/launch_run")[0]


def test_read_views_from_a_fresh_client(svc, trained):
    c = client(svc)
    slider, header, grid, *_ = c.predict(run_id=trained["vision"], api_name="/rationales")
    assert "step 2" in header and "rk-card" in grid
    _, header, *_ = c.predict(run_id=trained["vision"], evaluation=0, api_name="/rationales_at")
    assert "step 2" in header  # the only evaluation
    note, figures, summary = c.predict(run_ids=[trained["vision"], trained["text"]], api_name="/monitor")
    assert set(figures) >= {"losses", "accuracy"} and len(summary["data"]) == 2
    faith = c.predict(run_id=trained["vision"], api_name="/faithfulness")
    assert "comprehensiveness" in faith
