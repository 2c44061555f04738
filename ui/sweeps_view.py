"""Sweeps view: launch a named sweep, follow its runs, read the aggregated table and chart."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import charts, form
from .client import ApiClient, ApiError
from .monitor import DRAW_JS
from .render import esc, message
from .runs_table import progress_bar
from .scripting import PRIVATE

TABLE_HEADERS = ["cell", "n (done / all)", "test accuracy %", "macro-F1 %", "selected %", "paper %",
                 "plausibility F1 %", "distinct masks %", "mask-only probe %"]
QUALITY_FIGURES = ("plausibility_f1", "distinct_share", "probe_accuracy")
WARNING_WORDS = {"constant_rationale": "same mask for every input", "mask_code": "the mask encodes the label"}
RUN_HEADERS = ["cell", "seed", "state", "test acc %", "worker", "run id"]


@dataclass
class SweepsView:
    figures: gr.JSON
    watch_run: gr.Button
    picked_run: gr.State
    init_fn: Any
    init_outputs: list[Any]


def _pm(mean: float | None, std: float | None) -> str:
    return "–" if mean is None else f"{100 * mean:.1f} ± {100 * (std or 0):.1f}"


def _figure(row: dict[str, Any], key: str) -> str:
    """mean ± std of a rationale figure; "(n=k)" when fewer of the cell's finished runs have it."""
    cell = _pm(row.get(f"{key}_mean"), row.get(f"{key}_std"))
    k = row.get(f"{key}_n")
    return cell if row.get(f"{key}_mean") is None or not k or k == row["n"] else f"{cell} (n={k})"


def table_rows(table: list[dict[str, Any]]) -> list[list[Any]]:
    """The API's aggregated cells, with the test split's "is it real?" figures ("–" where a cell has none:
    CLS runs, data without ground truth)."""
    return [[row["label"] or "(all)", f"{row['n']} / {row['n_total']}", _pm(row.get("accuracy_mean"),
             row.get("accuracy_std")), _pm(row.get("macro_f1_mean"), row.get("macro_f1_std")),
             _pm(row.get("selected_mean"), row.get("selected_std")),
             "–" if row.get("reference") is None else f"{100 * row['reference']:.1f}",
             *[_figure(row, k) for k in QUALITY_FIGURES]] for row in table]


def _state(run: dict[str, Any]) -> str:
    codes = run.get("warnings") or []
    return run["state"] + (f" ⚠ {', '.join(WARNING_WORDS.get(c, c) for c in codes)}" if codes else "")


def run_rows(detail: dict[str, Any]) -> list[list[Any]]:
    rows = [["teacher", t["seed"], _state(t), "–" if t.get("test_accuracy") is None else
             f"{100 * t['test_accuracy']:.1f}", t.get("worker") or "–", t["id"]] for t in detail["teachers"]]
    rows += [[r["label"] or "(all)", r["seed"], _state(r), "–" if r.get("test_accuracy") is None else
              f"{100 * r['test_accuracy']:.1f}", r.get("worker") or "–", r["id"]] for r in detail["runs"]]
    return rows


def sweep_choices(sweeps: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, id) for the sweep picker: name, state and a short id suffix."""
    return [(f"{s['name']} · {s['state']} · {s['id'][-4:]}", s["id"]) for s in sweeps]


def header(detail: dict[str, Any]) -> str:
    sid = esc(detail["id"])
    ended = [f"{detail[k]} {k}" for k in ("failed", "cancelled") if detail.get(k)]  # the API counts them apart
    failed = f", {', '.join(ended)}" if ended else ""
    links = " · ".join(f'<a href="/api/sweeps/{sid}/table?format={f}" download>{label}</a>'
                       for f, label in (("md", "Markdown"), ("csv", "CSV"), ("tex", "LaTeX")))
    return (f'<div class="rk-sweep-head"><b>{esc(detail["name"])}</b> · <span class="rk-state">{esc(detail["state"])}'
            f'</span> · {progress_bar(detail["progress"])} · {detail["done"]} of {detail["n_runs"]} runs done'
            f'{failed} · table as {links}</div>')


def build(api: ApiClient) -> SweepsView:
    presets_state = gr.State({})
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340):
            gr.Markdown("### Launch a sweep\nA base config × axes (seeds, modes, ablations), one run per cell and "
                        "seed; REKD students wait for their teacher (trained once per teacher seed). The paper's "
                        "protocol (`paper-*`) needs GPUs and a network; `sweep-*` run here.")
            # any value: a script names a preset without the page having listed them (the API checks it)
            preset = gr.Dropdown(label="sweep preset", choices=[], elem_id="sw-preset", interactive=True,
                                 allow_custom_value=True)
            about = gr.Markdown("", elem_id="sw-about")
            overrides = gr.Textbox(label="overrides for every run, one key.path=value per line", lines=2,
                                   elem_id="sw-overrides", placeholder="train.max_steps=200")
            launch_msg = gr.HTML("", elem_id="sw-launch-msg", label="message")
            launch_btn = gr.Button("Launch sweep", variant="primary", elem_id="btn-sweep-launch")
        with gr.Column(scale=3, min_width=480):
            with gr.Row():
                picked = gr.Dropdown(label="sweep", choices=[], elem_id="sw-pick", scale=4, allow_custom_value=True)
                cancel_btn = gr.Button("Cancel sweep", variant="stop", elem_id="btn-sweep-cancel", scale=1)
            head = gr.HTML(message("Launch a sweep, or pick one: its table fills in as runs finish.", "info"),
                           elem_id="sw-head", label="sweep state")
            table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, elem_id="sw-table",
                             label="aggregated table", show_label=False)
    gr.HTML('<div id="rk-chart-sweep" class="rk-chart"></div>', elem_id="plot-sweep")
    gr.Markdown("#### Runs (select one, then watch it in Monitor)")
    runs = gr.Dataframe(headers=RUN_HEADERS, value=[], interactive=False, elem_id="sw-runs", max_height=360,
                        label="runs", show_label=False)
    with gr.Row():
        picked_run = gr.State(None)
        chosen = gr.Markdown("", elem_id="sw-chosen")
        watch_run = gr.Button("Watch in Monitor", size="sm", elem_id="btn-sweep-watch")
    figures = gr.JSON(None, visible=False, label="chart (Plotly JSON)")
    drawn = gr.State(None)

    def init():
        try:
            presets = {p["name"]: p for p in api.sweep_presets()}
            sweeps = api.sweeps()
        except ApiError as err:
            return gr.skip(), {}, gr.skip(), message(err.message)
        ordered = sorted(presets.values(), key=lambda p: (not p["offline"], p["name"]))
        return (gr.update(choices=[(f"{p['name']}{'' if p['offline'] else '  (GPU + network)'}", p["name"])
                                   for p in ordered], value=ordered[0]["name"] if ordered else None),
                presets, gr.update(choices=sweep_choices(sweeps)), gr.skip())

    def describe(name: str | None, presets: dict[str, Any]) -> str:
        p = presets.get(name or "")
        if not p:
            return ""
        axes = ", ".join(f"`{k}` × {len(v)}" for k, v in p["spec"].get("axes", {}).items())
        teacher = p["spec"].get("teacher") or {}
        return (f"{p['summary']}  \nAxes: {axes}; teacher `{teacher.get('preset', '–')}` for seeds "
                f"{teacher.get('seeds', '–')}")

    preset.change(describe, [preset, presets_state], about, show_progress="hidden", **PRIVATE)

    def show(sweep_id: str | None, last: Any, force: bool = False):
        if not sweep_id:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), last
        try:
            d = api.sweep(sweep_id)
        except ApiError as err:
            return message(err.message), gr.skip(), gr.skip(), gr.skip(), last
        key = (d["id"], d["state"], d["done"], d["failed"], tuple(r["state"] for r in d["runs"]))
        if key == last and not force:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), last
        fig = charts.sweep_bars(d["table"], d["id"])
        return header(d), table_rows(d["table"]), run_rows(d), {"sweep": json.loads(fig.to_json())}, key

    def refresh_list(sig: Any):
        # sweeps launched elsewhere (the CLI, the API, another browser) appear without a reload
        try:
            sweeps = api.sweeps()
        except ApiError:
            return gr.skip(), sig
        new = tuple((s["id"], s["state"]) for s in sweeps)
        if new == sig:
            return gr.skip(), sig
        return gr.update(choices=sweep_choices(sweeps)), new

    listed = gr.State(None)
    gr.Timer(3.0).tick(refresh_list, listed, [picked, listed], show_progress="hidden", queue=False, **PRIVATE)

    outputs = [head, table, runs, figures, drawn]
    def sweep(sweep_id: str | None, last: Any = None):
        """One sweep: its state, the aggregated table (mean ± std per cell), its runs and the chart (Plotly JSON)."""
        return show(sweep_id, last, force=True)

    picked.change(sweep, [picked, drawn], outputs, show_progress="hidden", api_name="sweep")
    gr.Timer(2.0).tick(show, [picked, drawn], outputs, show_progress="hidden", queue=False, **PRIVATE)
    figures.change(None, figures, None, js=DRAW_JS)

    def launch(preset: str | None, overrides: str | None = None):
        """Queue a named sweep (`sweep-*` offline, `paper-*`): overrides for every run, one key.path=value per line."""
        name, text = preset, overrides
        if not name:
            return message("pick a sweep preset"), gr.skip()
        try:
            created = api.launch_sweep(name, form.parse_advanced(text or ""))
            sweeps = api.sweeps()
        except ValueError as err:
            return message(str(err)), gr.skip()
        except ApiError as err:
            return message(f"the sweep was not launched: {err.message}"), gr.skip()
        return (message(f"queued sweep {created['id']}: {created['runs']} runs", "ok-msg"),
                gr.update(choices=sweep_choices(sweeps),
                          value=created["id"]))

    launch_btn.click(launch, [preset, overrides], [launch_msg, picked], api_name="launch_sweep")

    def cancel(sweep_id: str | None):
        """Cancel every unfinished run of a sweep."""
        if not sweep_id:
            return message("pick a sweep first")
        try:
            out = api.cancel_sweep(sweep_id)
        except ApiError as err:
            return message(err.message)
        return message(f"cancel requested for {len(out['runs'])} unfinished runs of {out['id']}", "info")

    cancel_btn.click(cancel, picked, launch_msg, api_name="cancel_sweep")

    def on_row(evt: gr.SelectData, rows: Any):
        try:
            rid = rows.iloc[evt.index[0], RUN_HEADERS.index("run id")]
        except (AttributeError, IndexError, KeyError, TypeError):
            return gr.skip(), gr.skip()
        return rid, f"selected `{rid}`"

    runs.select(on_row, [runs], [picked_run, chosen], show_progress="hidden", **PRIVATE)
    return SweepsView(figures=figures, watch_run=watch_run, picked_run=picked_run, init_fn=init,
                      init_outputs=[preset, presets_state, picked, launch_msg])
