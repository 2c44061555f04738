"""The rekd web UI: Gradio Blocks over the HTTP API (launch, monitor, rationales, compare, explain, sweeps).

`build_ui(api)` returns the Blocks; `rekd.app` mounts it at `/` of the API server. Every
handler goes through `ApiClient`, so the UI works the same against a remote backend.
"""

from __future__ import annotations

import gradio as gr

from . import compare_view, experiments, explain_view, monitor, rationales, scripting, sweeps_view
from .client import ApiClient, ApiError
from .runs_table import choices, signature
from .scripting import PRIVATE

INTRO = """# rekd — faithful, explainable small models
Train **rationale extraction** models (a generator picks patches or tokens; the predictor sees only those)
and distil small ones from a big RE teacher with **REKD**. What you see highlighted *is* what the model used."""

PLOTLY_JS = "/ui-assets/plotly.min.js"  # served by rekd.app from the plotly package
HEAD = f'<script src="{PLOTLY_JS}"></script>'
THEME = gr.themes.Default(primary_hue="amber", secondary_hue="blue", neutral_hue="slate")


def _dot(colour: str) -> str:
    return f'<span style="color:{colour}">●</span>'


def _health_line(api: ApiClient) -> str:
    try:
        h = api.health()
    except ApiError as err:
        return f"{_dot('#dc2626')} API unreachable: {err.message}"
    if not h["redis"]:
        return f"{_dot('#dc2626')} {h.get('detail') or 'Redis unreachable'}"
    n = len(h["workers"])
    dot = _dot("#16a34a" if n else "#f59e0b")
    extra = "" if n else " — start one with `rekd worker`"
    return f"{dot} {n} worker{'s' if n != 1 else ''} alive · {h['queue_depth'] or 0} queued{extra}"


def build_ui(api: ApiClient) -> gr.Blocks:
    # uploads are copied into Gradio's cache: drop them after an hour rather than let the disk fill
    with gr.Blocks(title="rekd", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        with gr.Row():
            gr.Markdown(INTRO)
            health = gr.Markdown("", elem_id="rk-health")
        with gr.Tabs(elem_id="rk-tabs") as tabs:
            with gr.Tab("Experiments", id="experiments", elem_id="tab-experiments"):
                exp = experiments.build(api)
            with gr.Tab("Monitor", id="monitor", elem_id="tab-monitor") as monitor_tab:
                mon = monitor.build(api)
            with gr.Tab("Rationales", id="rationales", elem_id="tab-rationales"):
                rat = rationales.build(api)
            with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                cmp = compare_view.build(api)
            with gr.Tab("Explain", id="explain", elem_id="tab-explain"):
                exv = explain_view.build(api)
            with gr.Tab("Sweeps", id="sweeps", elem_id="tab-sweeps") as sweeps_tab:
                swv = sweeps_view.build(api)

        runs_state = gr.State([])  # the last GET /api/runs, shared by every view
        sig_state = gr.State(None)

        def tick(old: tuple | None, watched: list[str] | None):
            n_exp, n_pick = len(exp.table_outputs), len(pickers)
            try:
                runs = api.runs()
            except ApiError as err:
                return (gr.skip(), old, f"{_dot('#dc2626')} {err.message}", *[gr.skip()] * (n_exp + n_pick))
            # the pickers change only when a run appears or changes state, not at every step, so an open
            # dropdown or a chosen selection is not reset under the user's hand
            table_sig, pick_sig = signature(runs), tuple((r["id"], r["state"]) for r in runs)
            old_table, old_pick = old or (None, None)
            health_text = _health_line(api)
            table = experiments.refresh(runs) if table_sig != old_table else [gr.skip()] * n_exp
            picks = ([*experiments.refresh_choices(runs), *monitor.refresh_choices(runs, watched),
                      *rationales.refresh_choices(runs), *compare_view.refresh_choices(runs),
                      *explain_view.refresh_choices(runs)]
                     if pick_sig != old_pick else [gr.skip()] * n_pick)
            return (runs, (table_sig, pick_sig), health_text, *table, *picks)

        pickers = [*exp.choice_outputs, *mon.choice_outputs, *rat.choice_outputs, *cmp.choice_outputs,
                   *exv.choice_outputs]
        refresh_outputs = [runs_state, sig_state, health, *exp.table_outputs, *pickers]
        timer = gr.Timer(2.0)
        # what keeps the page in step is no action of its own: hidden from the API page and gradio_client
        timer.tick(tick, [sig_state, mon.runs], refresh_outputs, show_progress="hidden", queue=False, **PRIVATE)
        demo.load(tick, [sig_state, mon.runs], refresh_outputs, show_progress="hidden", queue=False, **PRIVATE)
        demo.load(exp.init_fn, None, exp.init_outputs, show_progress="hidden", **PRIVATE)
        demo.load(swv.init_fn, None, swv.init_outputs, show_progress="hidden", **PRIVATE)
        sweeps_tab.select(None, swv.figures, None, js=mon.draw_js)

        # a tab's content mounts when it is first shown: draw the charts into it then
        monitor_tab.select(None, mon.figures, None, js=mon.draw_js)

        # cross-view actions: a launch goes to the monitor with its runs selected
        def watch(created: list[str] | None, current: list[str] | None):
            if not created:
                return gr.skip(), gr.skip()
            runs = api.runs()
            keep = [r for r in (current or []) if r not in created]
            return (gr.update(choices=choices(runs), value=(created + keep)[:6]),
                    gr.Tabs(selected="monitor"))

        exp.launched.change(watch, [exp.launched, mon.runs], [mon.runs, tabs], show_progress="hidden",
                            **PRIVATE)

        def open_in(view: str, run_id: str | None):
            if not run_id:
                return gr.skip(), gr.skip()
            try:
                listed = choices(api.runs())
            except ApiError:
                listed = [(run_id, run_id)]
            return gr.update(choices=listed, value=run_id), gr.Tabs(selected=view)

        # moving between tabs is navigation, not an action a script calls
        exp.to_rationales.click(lambda rid: open_in("rationales", rid), exp.selected, [rat.run, tabs], **PRIVATE)
        exp.to_explain.click(lambda rid: open_in("explain", rid), exp.selected, [exv.run, tabs], **PRIVATE)
        exp.to_monitor.click(lambda rid, cur: watch([rid] if rid else [], cur), [exp.selected, mon.runs],
                             [mon.runs, tabs], **PRIVATE)
        swv.watch_run.click(lambda rid, cur: watch([rid] if rid else [], cur), [swv.picked_run, mon.runs],
                            [mon.runs, tabs], **PRIVATE)
        scripting.register(api)
    return demo
