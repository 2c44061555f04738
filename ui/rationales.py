"""Rationales view: the saved eval snapshots, example by example, teacher beside student."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import render
from .client import ApiClient, ApiError
from .runs_table import choices
from .scripting import PRIVATE

PAGE = 12
FILTERS = [("all", "all"), ("student correct", "correct"), ("student wrong", "wrong"),
           ("teacher and student disagree", "disagree")]
ALL_CLASSES = "all classes"
# the slider's range before a run is picked, which a fresh gradio_client session checks /rationales_at against:
# any index up to this passes (clamped to the run's evaluations), and the default, this, is the latest
LAST_EVALUATION = 10_000


@dataclass
class RationalesView:
    run: gr.Dropdown
    choice_outputs: list[Any]


def refresh_choices(runs: list[dict[str, Any]]) -> list[Any]:
    # a run has snapshots once it has evaluated; queued ones have nothing to show yet
    return [gr.update(choices=choices(runs, lambda r: r["state"] != "queued" and r.get("mode") != "cls")),
            gr.update(choices=choices(runs, lambda r: r.get("mode") == "cls" and r["state"] == "completed"))]


def faithfulness_table(rep: dict[str, Any]) -> str:
    """The rationale's dev scores beside a post-hoc explainer's at the same sparsity (Markdown)."""
    def num(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}"

    rows = [("rationale (this run's generator)", rep["rationale"])]
    if rep.get("baseline"):
        b = rep["baseline"]
        rows.append((f"integrated gradients top-k on CLS run {b['run_id']}", b))
    body = "\n".join(f"| {name} | {num(r['comprehensiveness'])} | {num(r['sufficiency'])} | "
                     f"{100 * r['selected_fraction']:.1f} |" for name, r in rows)
    return (f"**Faithfulness at step {rep['step']}** over the {rep['n']} saved dev examples (ERASER: "
            "comprehensiveness = p(ŷ|x) − p(ŷ|x without the selection), higher is better; sufficiency = "
            "p(ŷ|x) − p(ŷ|the selection only), lower is better)\n\n"
            "| selection | comprehensiveness ↑ | sufficiency ↓ | kept % |\n|---|---|---|---|\n" + body)


def build(api: ApiClient) -> RationalesView:
    with gr.Row():
        # any run id (the API refuses an unknown one): a gradio_client session has no list of runs yet
        run = gr.Dropdown(label="run", choices=[], elem_id="rat-run", scale=3, allow_custom_value=True)
        flt = gr.Radio(FILTERS, value="all", label="show", elem_id="rat-filter", scale=3)
        cls = gr.Dropdown([ALL_CLASSES], value=ALL_CLASSES, label="true class", elem_id="rat-class", scale=1,
                          allow_custom_value=True)
    # hidden until a run is shown: its range before then is only for a script's call
    step = gr.Slider(0, LAST_EVALUATION, value=LAST_EVALUATION, step=1, visible=False, elem_id="rat-step",
                     label="evaluation (drag to see the rationale change as τ falls)")
    header = gr.Markdown("", elem_id="rat-header", label="header")
    with gr.Row():
        prev_btn = gr.Button("◀ previous", size="sm", elem_id="rat-prev")
        next_btn = gr.Button("next ▶", size="sm", elem_id="rat-next")
        refresh_btn = gr.Button("↻ latest snapshot", size="sm", elem_id="rat-refresh")
    with gr.Accordion("Faithfulness: the rationale vs. a post-hoc explainer", open=False, elem_id="rat-faith-acc"):
        with gr.Row():
            baseline = gr.Dropdown(label="integrated gradients on this CLS run (same data), at the rationale's "
                                         "sparsity", choices=[], elem_id="rat-baseline", scale=3,
                                   allow_custom_value=True)
            faith_btn = gr.Button("Score both", size="sm", elem_id="btn-rat-faith", scale=1)
        faith = gr.Markdown("", elem_id="rat-faith", label="faithfulness")
    downloads = gr.HTML("", elem_id="rat-downloads", label="downloads")
    quality = gr.HTML("", elem_id="rat-quality", label="rationale quality")
    grid = gr.HTML(render.message("Pick a run above: its saved dev examples show here, the student's rationale "
                                  "beside the teacher's for a distilled run.", "info"), elem_id="rat-grid",
                   label="examples")
    steps_state = gr.State([])
    shown_step = gr.State(None)  # [run id, training step] of the evaluation on display; None before any
    offset_state = gr.State(0)

    def show(run_id: str | None, step_idx: float | None, filter_: str, label: str, offset: int,
             steps: list[int], latest: bool = False):
        if not run_id:
            return (gr.skip(), "", render.message("pick a run (one that has evaluated at least once)", "info"),
                    steps, 0, gr.skip(), "", "", gr.skip())
        try:
            if not latest and not steps and step_idx is not None:
                steps = api.examples(run_id, limit=1)["steps"]  # a script's call: no page has listed them
            names_page = None
            want = None if latest or not steps else steps[min(int(step_idx or 0), len(steps) - 1)]
            label_idx = None
            if label and label != ALL_CLASSES:
                names_page = api.examples(run_id, limit=1, step=want)
                label_idx = names_page["class_names"].index(label)
            page = api.examples(run_id, step=want, offset=offset, limit=PAGE, filter=filter_, label=label_idx)
        except ApiError as err:
            return (gr.skip(), "", render.message(err.message, "info" if err.status == 409 else "error"),
                    steps, 0, gr.skip(), "", "", gr.skip())
        except ValueError:
            return show(run_id, step_idx, filter_, ALL_CLASSES, 0, steps)
        new_steps = page["steps"]
        idx = new_steps.index(page["step"])
        tau = "" if page["tau"] is None else f" · τ = {page['tau']:.3g}"
        shown = f"{page['offset'] + 1}–{page['offset'] + len(page['items'])}" if page["items"] else "0"
        teacher = "teacher beside student" if page["has_teacher"] else "no teacher (not a distilled run)"
        outline = ""
        if render.has_evidence(page["items"]):
            what = ("your annotation" if page.get("ground_truth") == "annotations"
                    else "the ground truth (where the evidence is)")
            outline = f", cyan {'underline' if page['modality'] != 'vision' else 'dashed outline'} = {what}"
        head = (f"**step {page['step']}**{tau} · {page['total']} examples match · showing {shown} · {teacher} · "
                f"amber = selected{outline}; hover a patch or token for its keep probability")
        slider = gr.update(minimum=0, maximum=max(len(new_steps) - 1, 1), value=idx, interactive=len(new_steps) > 1,
                           visible=True,
                           label=f"evaluation {idx + 1} of {len(new_steps)} (step {page['step']}{tau}); "
                                 "drag to see the rationale change as τ falls")
        classes = gr.update(choices=[ALL_CLASSES, *page["class_names"]])
        links = render.download_links([(f"rationales at step {page['step']} (JSONL)",
                                        api.link(f"/api/runs/{run_id}/rationales", step=page["step"]))])
        return (slider, head, render.examples_grid(page), new_steps, page["offset"], classes, links,
                render.examples_quality(page), [run_id, page["step"]])

    outputs = [step, header, grid, steps_state, offset_state, cls, downloads, quality, shown_step]

    def rationales(run_id: str | None, which: str = "all", true_class: str = ALL_CLASSES):
        """The run's saved dev examples at its latest evaluation, each with its rationale (the teacher's
        beside it for a distilled run). `which`: all, correct, wrong or disagree."""
        return show(run_id, None, which, true_class, 0, [], latest=True)

    def rationales_at(run_id: str | None, evaluation: float | None, which: str = "all",
                      true_class: str = ALL_CLASSES, steps: list[int] | None = None):
        """The same at one evaluation: 0 is the first, as the slider counts (past the last: the latest)."""
        return show(run_id, evaluation, which, true_class, 0, steps or [])

    run.change(rationales, [run, flt, cls], outputs, show_progress="hidden", api_name="rationales")
    # input, not change: a slider moved by show() itself must not call show() again
    step.input(rationales_at, [run, step, flt, cls, steps_state], outputs, show_progress="hidden",
               trigger_mode="always_last", api_name="rationales_at")
    flt.change(lambda r, s, f, c, st: show(r, s, f, c, 0, st), [run, step, flt, cls, steps_state], outputs,
               show_progress="hidden", **PRIVATE)
    cls.input(lambda r, s, f, c, st: show(r, s, f, c, 0, st), [run, step, flt, cls, steps_state], outputs,
              show_progress="hidden", **PRIVATE)
    prev_btn.click(lambda r, s, f, c, o, st: show(r, s, f, c, max(o - PAGE, 0), st),
                   [run, step, flt, cls, offset_state, steps_state], outputs, show_progress="hidden", **PRIVATE)
    next_btn.click(lambda r, s, f, c, o, st: show(r, s, f, c, o + PAGE, st),
                   [run, step, flt, cls, offset_state, steps_state], outputs, show_progress="hidden", **PRIVATE)
    refresh_btn.click(lambda r, f, c: show(r, None, f, c, 0, [], latest=True), [run, flt, cls], outputs,
                      show_progress="hidden", **PRIVATE)

    def faithfulness(run_id: str | None, baseline_run: str | None = None, shown: list[Any] | None = None):
        """Comprehensiveness and sufficiency of the run's rationales on its saved dev examples (at the evaluation
        on display; from a script, the latest), beside integrated gradients on a CLS run at the same sparsity."""
        if not run_id:
            return "pick a run first"
        try:
            # the evaluation on display, if it is this run's (a script has none: the latest)
            want = shown[1] if shown and shown[0] == run_id else None
            return faithfulness_table(api.faithfulness(run_id, baseline=baseline_run or None, step=want))
        except ApiError as err:
            return f"⚠ {err.message}"

    faith_btn.click(faithfulness, [run, baseline, shown_step], faith, api_name="faithfulness")
    return RationalesView(run=run, choice_outputs=[run, baseline])
