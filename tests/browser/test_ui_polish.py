"""What a researcher sees first, in a real headless Chromium at 1400 x 900 against a real service: the run
table readable (one line per run, eight or more in view) and the launch form's descriptions clean."""

from __future__ import annotations

import time

import pytest

from conftest import tiny_vision
from tests.browser.test_ui import CHROMIUM
from tests.support.service import launch_run, start_service

pytestmark = pytest.mark.slow
N_RUNS = 9


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    s = start_service(tmp_path_factory.mktemp("polish"), workers=1, ui=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def runs(svc) -> list[str]:
    """Nine tiny runs, finished: every column of the table filled (accuracies, start, duration)."""
    with svc.client() as c:
        ids = [launch_run(c, tiny_vision("cls" if i % 3 else "re", max_steps=2, eval_every=2, checkpoint_every=2))
               for i in range(N_RUNS)]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            states = {r["id"]: r["state"] for r in c.get("/api/runs").json()}
            if all(states.get(i) == "completed" for i in ids):
                return ids
            time.sleep(1)
    raise AssertionError(f"the runs did not finish: {states}")


@pytest.fixture(scope="module")
def page(svc):
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set REKD_CHROMIUM)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        pg.set_default_timeout(30_000)
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg
        browser.close()
        assert not errors, f"JavaScript errors in the page: {errors}"


# each shown run: its row's box, the id cell's box and line height, as the browser laid them out
ROWS_JS = """() => {
  const table = document.querySelector('#runs-table');
  const wrap = table.querySelector('.table-wrap') || table;
  const view = wrap.getBoundingClientRect();
  const rows = [...table.querySelectorAll('[role=row]')].filter(r => r.querySelector('.rk-id'));
  return rows.map(r => {
    const box = r.getBoundingClientRect(), id = r.querySelector('.rk-id'), idBox = id.getBoundingClientRect();
    const style = getComputedStyle(id);
    return {id: id.title, shown: id.innerText, top: box.top, bottom: box.bottom, height: box.height,
            inView: box.height > 0 && box.top >= view.top - 1 && box.bottom <= view.bottom + 1,
            idHeight: idBox.height, lineHeight: parseFloat(style.lineHeight) || 1.3 * parseFloat(style.fontSize)};
  });
}"""


def test_the_run_table_shows_eight_runs_on_one_line_each(page, svc, runs):
    page.goto(svc.base + "/")
    page.wait_for_function(f"() => document.querySelectorAll('#runs-table .rk-id[title]').length >= {N_RUNS}",
                           timeout=60_000)
    page.wait_for_timeout(500)  # the table settles its column widths
    rows = [r for r in page.evaluate(ROWS_JS) if r["id"] in runs]
    shown = [r for r in rows if r["inView"]]
    assert len(shown) >= 8, f"only {len(shown)} runs in view at 1400 x 900: {rows}"
    for r in shown:
        # one line: the id cell is no taller than a line and a half, and so is the row (padding aside)
        assert r["idHeight"] <= 1.5 * r["lineHeight"], f"run id {r['id']} wraps: {r}"
        assert r["height"] <= 2.5 * r["lineHeight"], f"the row of {r['id']} wraps: {r}"
        assert r["shown"] == r["id"]  # the whole id is in the cell (cut by CSS only) and on hover
    # the columns a researcher reads are not cut to nothing
    headers = page.locator("#runs-table th").all_inner_texts()
    assert any("dev" in h for h in headers) and any("test" in h for h in headers)


def test_the_launch_form_describes_alpha_in_plain_symbols(page, svc):
    page.goto(svc.base + "/")
    info = page.locator("#f-loss-alpha .info-text")
    info.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#f-loss-alpha .info-text').innerText.includes('L_RE')")
    text = info.inner_text()
    assert "\\" not in text and "*" not in text, text
    assert "α · L_RE + (1 − α) · L_KD" in text, text
    assert info.locator("em, strong").count() == 0  # no stray markup turned part of the formula italic
    # and no other field of the form shows an escape or a star
    for other in page.locator("[id^=f-] .info-text").all_inner_texts():
        assert "\\" not in other and "*" not in other, other


def test_a_person_explains_as_before_and_can_read_the_data(page, svc, runs, tmp_path):
    from PIL import Image

    from tests.browser.test_ui import explain_with, pick, tab

    with svc.client() as c:
        rid = next(r for r in c.get("/api/runs").json() if r["id"] in runs and r["mode"] == "re")["id"]
    page.goto(svc.base + "/")
    page.wait_for_selector("#rk-health", state="attached")
    tab(page, "Explain")
    pick(page, "exp-run", rid[-4:])
    path = tmp_path / "item.png"
    Image.new("L", (28, 28), 90).save(path)
    out = explain_with(page, path=path)
    assert "rk-explain" in out and "what the predictor saw" in out
    result = page.locator("#exp-out")
    assert result.locator("svg.rk-overlay").count() == 1, out  # the rationale over the upload
    assert result.locator("img.rk-masked").count() == 1  # and exactly what the predictor saw
    # a second upload replaces the first answer (it is cleared while the new one is computed)
    from tests.browser.test_ui import clear_file

    clear_file(page)
    second = tmp_path / "other.png"
    Image.new("L", (28, 28), 200).save(second)
    again = explain_with(page, path=second)
    assert again != out and result.locator("svg.rk-overlay").count() == 1, again
    # the same explanation as data, folded away under the picture
    page.locator("#exp-data-acc").get_by_text("The explanation as data").first.click()
    data = page.locator("#exp-data")
    data.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#exp-data').innerText.includes('selected_positions')")
    assert "probabilities" in data.inner_text() and rid in data.inner_text()
