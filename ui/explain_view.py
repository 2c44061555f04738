"""Explain view: a user's own image or review, explained by a trained run (and its teacher)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import render
from .client import ApiClient, ApiError
from .runs_table import choices
from .scripting import PRIVATE, explain_details

REVIEWS = ["A gorgeous, witty, seductive movie.", "The plot is a mess and the acting is worse.",
           "Too long by half, but the final act is devastating and beautifully shot."]


@dataclass
class ExplainView:
    run: gr.Dropdown
    choice_outputs: list[Any]


NO_BASELINE = "none"


def refresh_choices(runs: list[dict[str, Any]]) -> list[Any]:
    # any run that has written a checkpoint can explain; completed ones are the usual pick
    return [gr.update(choices=choices(runs, lambda r: r["state"] == "completed" or r.get("step", 0) > 0)),
            gr.update(choices=[("none", NO_BASELINE), *choices(
                runs, lambda r: r.get("mode") == "cls" and r["state"] == "completed")])]


def build(api: ApiClient) -> ExplainView:
    with gr.Row():
        # any run id is taken (the API refuses an unknown one): a fresh gradio_client session has no list yet
        run = gr.Dropdown(label="trained run", choices=[], elem_id="exp-run", scale=3, allow_custom_value=True)
        baseline = gr.Dropdown(label="compare with a post-hoc explainer: integrated gradients on this CLS run",
                               choices=[("none", NO_BASELINE)], value=NO_BASELINE, elem_id="exp-baseline", scale=2,
                               info="its top-k positions at the rationale's size, scored the same way",
                               allow_custom_value=True)
    with gr.Row():
        with gr.Column():
            image = gr.File(label="an image (PNG, JPEG, GIF, BMP, WEBP) — for image runs", type="filepath",
                            elem_id="exp-file")
            evidence = gr.File(label="optional: where the evidence is — a mask image (white = evidence), to "
                                     "score the rationale against your annotation", type="filepath",
                               elem_id="exp-evidence", height=120)
        with gr.Column():
            text = gr.Textbox(label="or a review — for text runs", lines=5, elem_id="exp-text",
                              placeholder="Paste a movie review…")
            rationale = gr.Textbox(label="optional: where the evidence is — the passages of the review that "
                                         "justify its label, one per line", lines=2, elem_id="exp-rationale",
                                   placeholder="the final act is devastating")
    gr.Examples(REVIEWS, inputs=text, label="example reviews")
    go_btn = gr.Button("Explain", variant="primary", elem_id="btn-explain")
    out = gr.HTML("", elem_id="exp-out", label="explanation")
    with gr.Accordion("The explanation as data (JSON: label, probabilities, mask, positions)", open=False,
                      elem_id="exp-data-acc"):
        data = gr.JSON(None, label="explanation data", elem_id="exp-data")

    def explain(run_id: str | None, image: str | None = None, review: str | None = None,
                baseline_run: str | None = NO_BASELINE, evidence_mask: str | None = None,
                rationale: str | None = None) -> tuple[str, dict[str, Any] | None]:
        """Explain an image (image runs) or a review (text runs) with a trained run: the picture, and the
        data (label, probabilities, mask, selection probabilities, positions and, for text, the tokens).
        Optionally beside integrated gradients on a CLS run (`baseline_run`), and scored against your
        ground truth: a mask image (white = evidence) or the review's evidence passages, one per line."""
        path, base, mask_path, marked = image, baseline_run, evidence_mask, rationale
        if not run_id:
            return render.message("pick a trained run first"), None
        review = (review or "").strip()
        if not path and not review:
            return render.message("upload an image or paste a review"), None
        try:
            task = api.run(run_id).get("task")
            use_image = bool(path) and (not review or task != "text")
            ex = api.explain(run_id, image_path=path if use_image else None, text=None if use_image else review,
                             baseline_run=None if base in (None, NO_BASELINE) else base,
                             evidence_path=mask_path if use_image else None,
                             rationale=None if use_image else marked)
        except ApiError as err:
            hint = {413: "the file is too large", 415: "this file type is not supported",
                    422: "the input was refused", 409: "the run cannot explain yet"}.get(err.status, "error")
            return render.message(f"{hint}: {err.message}"), None
        except OSError as err:
            return render.message(f"could not read the upload: {err}"), None
        picture = render.explanation(ex, image=render.data_url(path) if use_image and path else None,
                                     text=None if use_image else review)
        return picture, explain_details(ex, None if use_image else review)

    # clear first: a stale explanation must not sit beside a new input while it is computed
    go_btn.click(lambda: ("", None), None, [out, data], show_progress="hidden", queue=False, **PRIVATE).then(
        explain, [run, image, text, baseline, evidence, rationale], [out, data], api_name="explain")
    return ExplainView(run=run, choice_outputs=[run, baseline])
