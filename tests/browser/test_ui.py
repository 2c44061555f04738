"""The web UI in a real headless Chromium, against a real service (redis-server, a Celery worker, uvicorn).

Tests run in file order on one service: an empty start, a refused form, a run launched from the
form and watched live, the demo pipeline, its rationales teacher beside student, and explanations.
Screenshots go to $REKD_SCREENSHOTS (bash scripts/screenshots.sh writes docs/), else a temp folder.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from rekd.testing import start_service

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("REKD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    s = start_service(tmp_path_factory.mktemp("ui"), workers=1, ui=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("REKD_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def page(svc):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set REKD_CHROMIUM)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(30_000)
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(svc.base + "/")
        pg.wait_for_selector("#rk-health", state="attached")
        yield pg
        browser.close()
        assert not errors, f"JavaScript errors in the page: {errors}"


def tab(pg, name: str) -> None:
    pg.get_by_role("tab", name=name).click()


def pick(pg, elem_id: str, text: str) -> None:
    """Choose the option containing `text` in the Gradio dropdown `elem_id`."""
    pg.click(f"#{elem_id} input")
    pg.locator("[role=option]", has_text=text).first.click()


def set_number(pg, elem_id: str, value: str) -> None:
    box = pg.locator(f"#{elem_id} input")
    box.fill(value)
    box.press("Tab")


def wait_until(cond, timeout: float, what: str, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def runs(svc) -> list[dict]:
    with svc.client() as c:
        return c.get("/api/runs").json()


def wait_finished(svc, ids: list[str], timeout: float = 300) -> dict[str, dict]:
    def done():
        by_id = {r["id"]: r for r in runs(svc)}
        ended = all(by_id.get(i, {}).get("state") in ("completed", "failed", "cancelled") for i in ids)
        return by_id if ended else None
    return wait_until(done, timeout, f"runs {ids} to finish", every=1.0)


CHART = "#plot-losses .js-plotly-plot"


def trace_points(pg, elem_id: str) -> int:
    """Points in the first trace of a Plotly chart, as the browser has drawn it."""
    return pg.evaluate(f"""() => {{
        const el = document.querySelector('#{elem_id} .js-plotly-plot');
        return el && el.data && el.data.length ? el.data[0].x.length : 0; }}""")


def test_empty_start_offers_the_demos(page, shots):
    hero = page.locator("#rk-hero")
    hero.wait_for(state="visible")
    assert page.locator("#btn-demo-fmnist").is_visible() and page.locator("#btn-demo-rt").is_visible()
    assert "No runs yet" in hero.inner_text()
    # the form is filled from the default preset and the schema (bounds shown under the field)
    wait_until(lambda: page.locator("#f-train-max-steps input").input_value() != "", 30, "the form to fill")
    assert "≤ 1" in page.locator("#f-loss-alpha").inner_text()
    page.screenshot(path=str(shots / "experiments-empty.png"), full_page=True)


def test_a_bad_field_is_refused_next_to_the_field(page, svc):
    set_number(page, "f-loss-alpha", "2")
    page.click("#btn-launch")
    wait_until(lambda: "⚠" in page.locator("#f-loss-alpha").inner_text(), 15, "the field error")
    assert "less than or equal to 1" in page.locator("#f-loss-alpha").inner_text()
    assert "not launched" in page.locator("#launch-msg").inner_text()
    assert runs(svc) == []  # nothing was queued
    set_number(page, "f-loss-alpha", "0.5")


def test_launch_from_the_form_and_watch_it_live(page, svc, shots):
    with svc.client() as c:
        preset = next(p for p in c.get("/api/presets").json() if p["name"] == "demo-fmnist-student")
    steps = str(preset["config"]["train"]["max_steps"])
    pick(page, "f-preset", "demo-fmnist-student")
    wait_until(lambda: page.locator("#f-train-max-steps input").input_value() == steps, 15, "the preset to load")
    set_number(page, "f-train-max-steps", "400")
    set_number(page, "f-train-seed", "3")
    page.locator("#f-advanced-acc").get_by_text("Advanced").first.click()
    adv = page.locator("#f-advanced textarea")
    adv.wait_for(state="visible")
    time.sleep(1.0)  # the accordion mounts its content as it opens
    adv.fill("train.log_every=5\ntrain.eval_every=100\ndata.max_train=800")
    adv.press("Tab")
    wait_until(lambda: "data.max_train=800" in adv.input_value(), 5, "the advanced overrides to be typed")
    page.click("#btn-launch")
    # a launch takes the user to the monitor with the new run selected
    page.locator("#monitor-runs").get_by_text("demo-fmnist-student").first.wait_for(timeout=20_000)
    launched = runs(svc)
    assert len(launched) == 1
    run_id = launched[0]["id"]
    with svc.client() as c:
        cfg = c.get(f"/api/runs/{run_id}").json()["config"]
    assert cfg["train"]["max_steps"] == 400 and cfg["train"]["seed"] == 3 and cfg["train"]["log_every"] == 5
    assert cfg["data"]["max_train"] == 800

    # the charts grow while the run trains: several distinct sizes seen before it finished
    seen = set()
    zoomed_at = None
    while runs(svc)[0]["state"] in ("queued", "running"):
        n = trace_points(page, "plot-losses")
        seen.add(n)
        if n >= 3 and zoomed_at is None:  # the user zooms in while it trains
            page.evaluate(f"() => Plotly.relayout(document.querySelector({CHART!r}), {{'xaxis.range': [5, 25]}})")
            zoomed_at = n
        time.sleep(0.3)
    assert len(seen - {0}) >= 3, f"the loss chart did not update live (sizes seen: {sorted(seen)})"
    # ... and the updates that followed kept the zoom (the chart element persists; uirevision)
    assert zoomed_at is not None and max(seen) > zoomed_at
    assert page.evaluate(f"() => document.querySelector({CHART!r}).layout.xaxis.range") == [5, 25]
    with svc.client() as c:
        n_log = len(c.get(f"/api/runs/{run_id}/metrics").json()["log"])
    wait_until(lambda: trace_points(page, "plot-losses") == n_log, 5, "the chart to show every log event")
    summary = page.locator("#monitor-summary")
    wait_until(lambda: "completed" in summary.inner_text(), 10, "the summary table")
    page.screenshot(path=str(shots / "monitor-single.png"), full_page=True)


def test_the_demo_pipeline_trains_teacher_then_students(page, svc, shots):
    tab(page, "Experiments")
    page.click("#btn-again-demo-fmnist")
    page.locator("#monitor-runs").get_by_text("demo-fmnist-rekd").first.wait_for(timeout=20_000)
    roles = {"demo-fmnist-teacher", "demo-fmnist-cls", "demo-fmnist-re", "demo-fmnist-rekd"}
    demo = {r["name"]: r for r in runs(svc) if r.get("name") in roles}
    assert set(demo) == roles
    done = wait_finished(svc, [r["id"] for r in demo.values()])
    assert all(done[r["id"]]["state"] == "completed" for r in demo.values()), done
    # REKD, RE and CLS overlaid: one legend entry per run in the loss chart, IoU drawn for the REKD run
    wait_until(lambda: "demo-fmnist-rekd" in page.locator("#monitor-summary").inner_text()
               and page.locator("#monitor-summary").inner_text().count("completed") >= 4, 20, "the summary")
    legend = page.evaluate("""() => document.querySelector('#plot-losses .js-plotly-plot').data
                                    .filter(t => t.showlegend !== false).map(t => t.name)""")
    assert sum("demo-fmnist-" in n for n in legend) >= 4
    page.screenshot(path=str(shots / "monitor.png"), full_page=True)


def test_rationales_teacher_beside_student(page, svc, shots):
    tab(page, "Rationales")
    pick(page, "rat-run", "demo-fmnist-rekd")
    grid = page.locator("#rat-grid")
    grid.locator(".rk-card").first.wait_for()
    card = grid.locator(".rk-card").first
    assert card.locator(".rk-student svg.rk-overlay").count() == 1
    assert card.locator(".rk-teacher svg.rk-overlay").count() == 1
    assert card.locator("rect.rk-patch").count() == 2 * 49  # the 7x7 grid drawn on both
    assert grid.locator("rect.rk-kept").count() > 0  # some patches selected
    assert "IoU" in card.inner_text() and "true" in card.inner_text()
    assert "teacher beside student" in page.locator("#rat-header").inner_text()
    page.screenshot(path=str(shots / "rationales.png"), full_page=True)

    # filters: only the student's mistakes
    page.locator("#rat-filter").get_by_text("student wrong").click()
    wait_until(lambda: "student wrong" in page.locator("#rat-filter").inner_text(), 5, "the filter")
    time.sleep(1.5)
    heads = grid.locator(".rk-student .rk-side-head").all_inner_texts()
    assert heads and all("✗" in h for h in heads), heads

    # the step slider goes back to the first evaluation (tau at its highest)
    rekd = next(r for r in runs(svc) if r["name"] == "demo-fmnist-rekd")
    with svc.client() as c:
        steps = c.get(f"/api/runs/{rekd['id']}/examples", params={"limit": 1}).json()["steps"]
    assert len(steps) >= 2 and f"step {steps[-1]}" in page.locator("#rat-header").inner_text()
    slider = page.locator("#rat-step input[type=range]")
    slider.focus()
    slider.press("Home")
    wait_until(lambda: f"step {steps[0]}" in page.locator("#rat-header").inner_text(), 10, "the first snapshot")
    assert "τ = " in page.locator("#rat-header").inner_text()


def _fmnist_png(tmp: Path) -> Path:
    import gzip

    import numpy as np

    raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
    img = np.frombuffer(raw, np.uint8, offset=16, count=28 * 28).reshape(28, 28)
    path = tmp / "ankle-boot.png"
    Image.fromarray(img).resize((112, 112), Image.NEAREST).save(path)
    return path


def clear_file(page) -> None:
    clear = page.locator("#exp-file button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator("#exp-file input[type=file]").wait_for(state="attached")


def explain_with(page, path: Path | None = None, text: str | None = None) -> str:
    before = page.locator("#exp-out").inner_html()
    if path is not None:
        page.set_input_files("#exp-file input[type=file]", str(path))
        page.locator(f'#exp-file [aria-label="{path.name}"]').first.wait_for()
    if text is not None:
        page.locator("#exp-text textarea").fill(text)
    page.click("#btn-explain")
    out = page.locator("#exp-out")

    def answered():
        idle = out.locator("[data-testid=status-tracker].hide").count() == 1
        done = idle and out.locator(".rk-explain, .rk-msg").count() > 0
        html = out.inner_html()
        return html if done and html != before else None

    return wait_until(answered, 60, "the explanation")


def test_explain_an_uploaded_image(page, svc, shots, tmp_path):
    tab(page, "Explain")
    pick(page, "exp-run", "demo-fmnist-rekd")
    out = explain_with(page, path=_fmnist_png(tmp_path))
    result = page.locator("#exp-out")
    assert result.locator(".rk-student svg.rk-overlay").count() == 1, out[:600]  # the rationale over the upload
    assert result.locator(".rk-teacher svg.rk-overlay").count() == 1  # and the teacher's, for REKD
    assert result.locator("img.rk-masked").count() == 2  # exactly what each predictor saw
    assert result.locator(".rk-bar").count() >= 5 and "what the predictor saw" in out
    page.screenshot(path=str(shots / "explain.png"), full_page=True)

    # a corrupt file and an unsupported one: clear messages, nothing else disturbed
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    clear_file(page)
    out = explain_with(page, path=bad)
    assert "rk-error" in out and "refused" in out
    txt = tmp_path / "notes.txt"
    txt.write_text("not an image")
    clear_file(page)
    out = explain_with(page, path=txt)
    assert "rk-error" in out and "not supported" in out

    # a review for an image run: the modality mismatch is named
    clear_file(page)
    out = explain_with(page, text="A gorgeous, witty film.")
    assert "rk-error" in out and "image" in out.lower()


def test_oversized_upload_is_refused(page, svc, tmp_path):
    big = tmp_path / "huge.png"
    buf = io.BytesIO()
    rng = __import__("numpy").random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (2600, 2600, 3), dtype="uint8")).save(buf, format="PNG", compress_level=0)
    big.write_bytes(buf.getvalue())
    assert big.stat().st_size > 10 * 1024 * 1024
    clear_file(page)
    page.locator("#exp-text textarea").fill("")
    out = explain_with(page, path=big)
    assert "rk-error" in out and "too large" in out


TINY_SWEEP = {"name": "tiny-sweep", "axes": {"train.seed": [0, 1], "mode": ["re", "rekd"]},
              "base": {"preset": "demo-fmnist-student", "overrides": ["train.max_steps=40", "train.eval_every=20",
                                                                      "data.max_train=600"]},
              "teacher": {"preset": "demo-fmnist-teacher", "overrides": ["train.max_steps=100"], "seeds": [0]}}


def test_sweeps_view_shows_the_aggregated_table_chart_and_runs(page, svc, shots):
    with svc.client() as c:
        r = c.post("/api/sweeps", json={"spec": TINY_SWEEP})
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
    tab(page, "Sweeps")
    pick(page, "sw-pick", "tiny-sweep")
    wait_until(lambda: "completed" in page.locator("#sw-head").inner_text(), 240, "the sweep to complete", every=1)
    with svc.client() as c:
        detail = c.get(f"/api/sweeps/{sweep_id}").json()
        csv_text = c.get(f"/api/sweeps/{sweep_id}/table", params={"format": "csv"}).text
    wait_until(lambda: page.locator("#sw-table").inner_text().count("2 / 2") == 2, 10, "the table")
    shown = page.locator("#sw-table").inner_text()
    for row in detail["table"]:  # the numbers the API aggregated, as the user reads them
        mean, std = 100 * row["accuracy_mean"], 100 * row["accuracy_std"]
        assert f"{mean:.1f} ± {std:.1f}" in shown and row["label"] in shown
    runs_text = page.locator("#sw-runs").inner_text()
    assert runs_text.count("completed") == 5 and "teacher" in runs_text  # 1 teacher + 2 seeds x 2 modes
    bars = page.evaluate("""() => { const d = document.querySelector('#plot-sweep .js-plotly-plot').data[0];
                                    return [d.x, d.error_y.array.length]; }""")
    assert sorted(bars[0]) == sorted(r["label"] for r in detail["table"]) and bars[1] == 2
    # the downloads point at the table endpoint
    href = page.locator("#sw-head a", has_text="CSV").get_attribute("href")
    assert href == f"/api/sweeps/{sweep_id}/table?format=csv" and "mode=re" in csv_text
    page.screenshot(path=str(shots / "sweeps.png"), full_page=True)


def test_launch_and_cancel_a_sweep_from_the_ui(page, svc):
    tab(page, "Sweeps")
    pick(page, "sw-preset", "sweep-fmnist")
    page.locator("#sw-overrides textarea").fill("train.max_steps")
    page.click("#btn-sweep-launch")
    wait_until(lambda: "line 1" in page.locator("#sw-launch-msg").inner_text(), 10, "the refused override")
    page.locator("#sw-overrides textarea").fill("train.max_steps=30\ndata.max_train=600")
    page.locator("#sw-overrides textarea").press("Tab")
    page.click("#btn-sweep-launch")
    wait_until(lambda: "queued sweep" in page.locator("#sw-launch-msg").inner_text(), 20, "the launch")
    sweep_id = page.locator("#sw-launch-msg").inner_text().split("queued sweep ")[1].split(":")[0]
    page.click("#btn-sweep-cancel")
    wait_until(lambda: "cancel requested" in page.locator("#sw-launch-msg").inner_text(), 10, "the cancel")

    def ended():
        with svc.client() as c:
            d = c.get(f"/api/sweeps/{sweep_id}").json()
        return d if d["state"] == "cancelled" else None

    d = wait_until(ended, 120, "the sweep to be cancelled", every=1)
    assert d["n_runs"] == 16 and d["done"] < 16  # 1 teacher + 5 seeds x 3 modes, stopped before the end
