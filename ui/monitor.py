"""Monitor view: live charts of the selected runs, overlaid, and their final numbers.

The charts are not gr.Plot components: Gradio re-creates a Plot's element on every update, so
the user's zoom and legend choices would be lost every second. Instead each chart is a div that
stays, and the figures travel as JSON to `Plotly.react`, which with a fixed `uirevision` keeps
what the user did (plotly.min.js is served by the app: no CDN).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import charts, render
from .client import ApiClient, ApiError
from .render import message
from .runs_table import ACTIVE, choices, newest_first
from .scripting import PRIVATE

MAX_RUNS = 6


CHARTS = ("losses", "accuracy", "selection", "faithfulness", "reality")
# draws every figure in the JSON into its persistent div; called on each update and when the tab shows
DRAW_JS = """(figs) => {
  if (!window.Plotly || !figs) return;
  setTimeout(() => {
    for (const [name, fig] of Object.entries(figs)) {
      const el = document.getElementById('rk-chart-' + name);
      if (!el) continue;
      if (!fig) { window.Plotly.purge(el); el.innerHTML = ''; continue; }
      window.Plotly.react(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
    }
  }, 30);
}"""


@dataclass
class MonitorView:
    runs: gr.Dropdown
    choice_outputs: list[Any]
    figures: gr.JSON
    draw_js: str = DRAW_JS


def default_selection(runs: list[dict[str, Any]]) -> list[str]:
    """Active runs first, then the newest: what a user opening the page wants to see."""
    ordered = newest_first(runs)
    active = [r["id"] for r in ordered if r["state"] in ACTIVE]
    rest = [r["id"] for r in ordered if r["state"] not in ACTIVE]
    return (active + rest)[:4]


def refresh_choices(runs: list[dict[str, Any]], watched: list[str] | None) -> list[Any]:
    ids = {r["id"] for r in runs}
    kept = [w for w in (watched or []) if w in ids]
    return [gr.update(choices=choices(runs), value=kept or default_selection(runs))]


def build(api: ApiClient) -> MonitorView:
    with gr.Row():
        picked = gr.Dropdown(label="runs to compare (each keeps its colour in every chart)", multiselect=True,
                             choices=[], max_choices=MAX_RUNS, elem_id="monitor-runs", scale=5,
                             allow_custom_value=True)  # a script names runs the page has not listed
        live = gr.Checkbox(value=True, label="live (refresh every second)", elem_id="monitor-live", scale=1)
    note = gr.HTML("", elem_id="monitor-msg", label="notes")
    for name in CHARTS[:3]:
        gr.HTML(f'<div id="rk-chart-{name}" class="rk-chart"></div>', elem_id=f"plot-{name}")
    with gr.Row(equal_height=False):  # is the rationale real? beside its faithfulness
        gr.HTML('<div id="rk-chart-faithfulness" class="rk-chart"></div>', elem_id="plot-faithfulness", scale=3)
        gr.HTML('<div id="rk-chart-reality" class="rk-chart"></div>', elem_id="plot-reality", scale=2)
    figures = gr.JSON(None, visible=False, label="charts (Plotly JSON)")
    gr.Markdown("#### Final numbers (test = the best-dev checkpoint on the test split; plausibility, distinct "
                "masks and the probe from the test split once tested, else the latest dev evaluation)")
    summary = gr.Dataframe(headers=charts.SUMMARY_HEADERS, value=[], interactive=False, elem_id="monitor-summary",
                           wrap=True, column_widths=charts.SUMMARY_WIDTHS, label="final numbers", show_label=False)
    downloads = gr.HTML("", elem_id="monitor-downloads")
    drawn = gr.State(None)

    def draw(run_ids: list[str] | None, last: Any, force: bool = False):
        run_ids = list(run_ids or [])
        if not run_ids:
            return (message("pick one or more runs above (launch one in Experiments first)", "info"),
                    dict.fromkeys(CHARTS), [], None)
        series, states, missing = [], {}, []
        for i, rid in enumerate(run_ids):
            try:
                m = api.metrics(rid)
                detail = api.run(rid)
            except ApiError as err:
                missing.append(f"{rid}: {err.message}")
                continue
            states[rid] = detail
            cfg = detail.get("config") or {}
            p = (cfg.get("loss") or {}).get("p_target") if cfg.get("mode") != "cls" else None
            series.append(charts.RunSeries(run_id=rid, label=charts.run_label(detail), log=m["log"], eval=m["eval"],
                                           test=m.get("test"), p_target=p, color=charts.colour(i)))
        # redraw only when something new arrived: a redraw resets nothing (uirevision) but costs bandwidth
        key = tuple((s.run_id, len(s.log), len(s.eval), s.test is not None, states[s.run_id]["state"],
                     len(states[s.run_id].get("warnings") or [])) for s in series)
        if key == last and not force:
            return (gr.skip(),) * 3 + (last,)
        revision = "|".join(run_ids)
        text = (message("; ".join(missing)) if missing else "") + "".join(
            render.warnings_banner(states[s.run_id].get("warnings"), s.label) for s in series)
        figs = {"losses": charts.losses(series, revision), "accuracy": charts.accuracy_and_tau(series, revision),
                "selection": charts.selection_and_agreement(series, revision),
                "faithfulness": charts.faithfulness(series, revision), "reality": charts.reality(series, revision)}
        return (text, {k: json.loads(f.to_json()) for k, f in figs.items()}, charts.summary_rows(series, states), key)

    outputs = [note, figures, summary, drawn]
    def monitor(run_ids: list[str] | None, last: Any = None):
        """Charts (Plotly JSON) and the final-numbers table of up to six runs."""
        return draw(run_ids, last, force=True)

    picked.change(monitor, [picked, drawn], outputs, show_progress="hidden", api_name="monitor")

    def links(ids: list[str] | None) -> str:
        ids = list(ids or [])
        if not ids:
            return ""
        return render.download_links([(f"{rid}: metrics CSV", api.link(f"/api/runs/{rid}/metrics", format="csv"))
                                      for rid in ids])

    picked.change(links, picked, downloads, show_progress="hidden", **PRIVATE)

    def tick(ids: list[str] | None, last: Any, on: bool):
        if not on:
            return (gr.skip(),) * 3 + (last,)
        return draw(ids, last)

    gr.Timer(1.0).tick(tick, [picked, drawn, live], outputs, show_progress="hidden", queue=False, **PRIVATE)
    figures.change(None, figures, None, js=DRAW_JS)
    return MonitorView(runs=picked, choice_outputs=[picked], figures=figures)
