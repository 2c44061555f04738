"""Compare view: two to four runs on one dataset, example by example — who is right where, and why.

The filter choices carry their counts (from the API's summary), so "only A right (7)" says how
many examples it will show before it is picked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import render
from .client import ApiClient, ApiError
from .runs_table import choices
from .scripting import PRIVATE

PAGE = 8


@dataclass
class CompareView:
    runs: gr.Dropdown
    choice_outputs: list[Any]


def refresh_choices(runs: list[dict[str, Any]]) -> list[Any]:
    # a run can be compared once it has evaluated (its examples are saved at each evaluation)
    return [gr.update(choices=choices(runs, lambda r: r["state"] != "queued"))]


def filter_choices(page: dict[str, Any]) -> list[tuple[str, str]]:
    summ = page["summary"]
    tags = render.letters(len(page["runs"]))
    out = [(f"predictions differ ({summ['disagree']})", "disagree"), (f"all ({summ['n']})", "all")]
    out += [(f"{render.pattern_label(p, tags)} ({n})", p) for p, n in summ["patterns"].items()]
    return out


def links(api: ApiClient, run_ids: list[str]) -> str:
    table = [(f"comparison table ({fmt.upper() if fmt != 'md' else 'Markdown'})",
              api.link("/api/compare/table", runs=run_ids, format=fmt)) for fmt in ("md", "csv", "tex")]
    per_run = [(f"{tag}: rationales JSONL", api.link(f"/api/runs/{rid}/rationales"))
               for tag, rid in zip(render.letters(len(run_ids)), run_ids)]
    return render.download_links(table + per_run)


def build(api: ApiClient) -> CompareView:
    gr.Markdown("Pick **two to four runs on one dataset** (say the CLS, RE and REKD students of a demo "
                "pipeline): the examples where they disagree, each run's rationale and prediction side by side.")
    with gr.Row():
        runs = gr.Dropdown(label="runs to compare (A, B, C, D in this order)", choices=[], multiselect=True,
                           max_choices=4, elem_id="cmp-runs", scale=3, allow_custom_value=True)
        # its choices come with the first comparison; a script may name a pattern (e.g. "10") at once
        flt = gr.Dropdown([("predictions differ", "disagree")], value="disagree", label="show",
                          elem_id="cmp-filter", scale=2, allow_custom_value=True)
    summary = gr.HTML("", elem_id="cmp-summary", label="who is right")
    downloads = gr.HTML("", elem_id="cmp-downloads", label="downloads")
    header = gr.Markdown("", elem_id="cmp-header", label="header")
    with gr.Row():
        prev_btn = gr.Button("◀ previous", size="sm", elem_id="cmp-prev")
        next_btn = gr.Button("next ▶", size="sm", elem_id="cmp-next")
    grid = gr.HTML(render.message("Pick at least two runs that have evaluated.", "info"), elem_id="cmp-grid",
                   label="examples")
    offset_state = gr.State(0)

    def show(run_ids: list[str] | None, filter_: str | None, offset: int):
        run_ids = run_ids or []
        if len(run_ids) < 2:
            return (render.message("Pick at least two runs that have evaluated.", "info"), "", "", "",
                    gr.skip(), 0)
        try:
            page = api.compare(run_ids, filter=filter_ or "disagree", offset=offset, limit=PAGE)
        except ApiError as err:
            if filter_ not in (None, "disagree", "all") and err.status == 422 and "characters" in err.message:
                return show(run_ids, "disagree", 0)  # a pattern left over from another number of runs
            return render.message(err.message, "info" if err.status == 422 else "error"), "", "", "", gr.skip(), 0
        shown = f"{page['offset'] + 1}–{page['offset'] + len(page['items'])}" if page["items"] else "0"
        outline = ""
        if render.has_evidence(page["items"]):
            mine = any(render.run_ground_truth(page, r) == "annotations" for r in page["runs"])
            outline = f" · cyan = {'your annotation' if mine else 'the ground truth (where the evidence is)'}"
        head = (f"{page['total']} examples match · showing {shown} · amber = selected (CLS runs have no "
                f"rationale){outline}")
        options = filter_choices(page)
        return (render.compare_grid(page), render.compare_summary(page), links(api, run_ids), head,
                gr.update(choices=options, value=page["filter"]), page["offset"])

    outputs = [grid, summary, downloads, header, flt, offset_state]
    def compare(run_ids: list[str] | None, which: str | None = "disagree"):
        """Two to four runs on one dataset, example by example: who is right where, and each rationale.
        `which` examples: disagree, all, or one digit per run, 1 right and 0 wrong ("10": only A right)."""
        return show(run_ids, which, 0)

    runs.change(compare, [runs, flt], outputs, show_progress="hidden", api_name="compare")
    # input, not change: show() itself sets the filter's choices and value
    flt.input(lambda r, f: show(r, f, 0), [runs, flt], outputs, show_progress="hidden", **PRIVATE)
    prev_btn.click(lambda r, f, o: show(r, f, max(o - PAGE, 0)), [runs, flt, offset_state], outputs,
                   show_progress="hidden", **PRIVATE)
    next_btn.click(lambda r, f, o: show(r, f, o + PAGE), [runs, flt, offset_state], outputs,
                   show_progress="hidden", **PRIVATE)
    return CompareView(runs=runs, choice_outputs=[runs])
