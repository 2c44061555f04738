"""Monitor view: live charts of the selected runs, overlaid, and their final numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import charts
from .client import ApiClient, ApiError
from .render import message
from .runs_table import ACTIVE, choices, newest_first

MAX_RUNS = 6


@dataclass
class MonitorView:
    runs: gr.Dropdown
    choice_outputs: list[Any]


def choices_for(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return choices(runs)


def default_selection(runs: list[dict[str, Any]]) -> list[str]:
    """Active runs first, then the newest: what a user opening the page wants to see."""
    ordered = newest_first(runs)
    active = [r["id"] for r in ordered if r["state"] in ACTIVE]
    rest = [r["id"] for r in ordered if r["state"] not in ACTIVE]
    return (active + rest)[:4]


def refresh_choices(runs: list[dict[str, Any]], watched: list[str] | None) -> list[Any]:
    ids = {r["id"] for r in runs}
    kept = [w for w in (watched or []) if w in ids]
    return [gr.update(choices=choices_for(runs), value=kept or default_selection(runs))]


def build(api: ApiClient) -> MonitorView:
    with gr.Row():
        picked = gr.Dropdown(label="runs to compare (each keeps its colour in every chart)", multiselect=True,
                             choices=[], max_choices=MAX_RUNS, elem_id="monitor-runs", scale=5)
        live = gr.Checkbox(value=True, label="live (refresh every second)", elem_id="monitor-live", scale=1)
    note = gr.HTML("", elem_id="monitor-msg")
    loss_plot = gr.Plot(label="loss terms", elem_id="plot-losses")
    with gr.Row():
        acc_plot = gr.Plot(label="accuracy and τ", elem_id="plot-accuracy")
    with gr.Row():
        sel_plot = gr.Plot(label="selection and agreement", elem_id="plot-selection")
    gr.Markdown("#### Final numbers (test = the best-dev checkpoint on the test split)")
    summary = gr.Dataframe(headers=charts.SUMMARY_HEADERS, value=[], interactive=False, elem_id="monitor-summary")
    drawn = gr.State(None)

    def draw(run_ids: list[str] | None, last: Any, force: bool = False):
        run_ids = list(run_ids or [])
        if not run_ids:
            return (message("pick one or more runs above (launch one in Experiments first)", "info"),
                    None, None, None, [], None)
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
        key = tuple((s.run_id, len(s.log), len(s.eval), s.test is not None, states[s.run_id]["state"])
                    for s in series)
        if key == last and not force:
            return (gr.skip(),) * 5 + (last,)
        revision = "|".join(run_ids)
        text = message("; ".join(missing)) if missing else ""
        return (text, charts.losses(series, revision), charts.accuracy_and_tau(series, revision),
                charts.selection_and_agreement(series, revision), charts.summary_rows(series, states), key)

    outputs = [note, loss_plot, acc_plot, sel_plot, summary, drawn]
    picked.change(lambda ids, last: draw(ids, last, force=True), [picked, drawn], outputs, show_progress="hidden")

    def tick(ids: list[str] | None, last: Any, on: bool):
        if not on:
            return (gr.skip(),) * 5 + (last,)
        return draw(ids, last)

    gr.Timer(1.0).tick(tick, [picked, drawn, live], outputs, show_progress="hidden", queue=False)
    return MonitorView(runs=picked, choice_outputs=[picked])
