"""The UI as a scripting surface (`gradio_client`): which events are public, under which names, and
the few endpoints that have no button of their own.

A person's action and a script's call are the same event: the Explain button is `/explain`, the Launch
button `/launch_run`. Events that only keep the page in step (timers, tab switches, a preset filling the
form, clearing an output) are private, so `Client(url).view_api()` lists actions only, each with named
parameters. Every public event works from a fresh client: a run picker takes any run id (the API says
which ones exist), and a handler that reads per-session state loads what it needs when the state is empty.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from .client import ApiClient, ApiError

# for an event that is no action of its own (it does not appear in the API page nor in gradio_client)
PRIVATE: dict[str, Any] = {"api_visibility": "private"}

# every public endpoint, in the order the API page should read (the test and docs/ui.md check this list)
ENDPOINTS = ("/list_runs", "/list_pipelines", "/launch_pipeline", "/launch_run", "/check_dataset", "/cancel_run",
             "/run_again", "/clone_into_form", "/monitor", "/rationales", "/rationales_at", "/faithfulness",
             "/compare", "/explain", "/list_sweeps", "/launch_sweep", "/sweep", "/cancel_sweep")


def with_optional_keywords(fn: Callable[..., Any], names: list[str]) -> Callable[..., Any]:
    """`fn(..., **values)` as Gradio and gradio_client see it: one keyword parameter per name, each
    optional (default None), instead of a `**values` that the client would make required."""
    sig = inspect.signature(fn)
    fixed = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Any) for n in names]
    fn.__signature__ = sig.replace(parameters=[*fixed, *extra])  # type: ignore[attr-defined]
    return fn


def explain_details(ex: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    """The explanation as data: the API's answer with the selected positions (and for text the tokens)
    spelled out, for a script that wants numbers rather than the picture."""
    out = dict(ex)
    out["selected_positions"] = [i for i, m in enumerate(ex.get("mask") or []) if m]
    if ex.get("modality") == "text":
        tokens = [p.get("token", "") for p in ex.get("positions") or []]
        out["tokens"] = tokens
        out["selected_tokens"] = [tokens[i] for i in out["selected_positions"] if i < len(tokens)]
        if text is not None:
            out["text"] = text
    if isinstance(ex.get("teacher"), dict):
        out["teacher"] = explain_details(ex["teacher"], text)
    return out


def api_error(err: ApiError) -> gr.Error:
    """A refused API call as the error a script sees (gradio_client raises it as AppError)."""
    return gr.Error(f"{err.status}: {err.message}", print_exception=False)


def register(api: ApiClient) -> None:
    """Endpoints with no component of their own; call inside the Blocks."""

    def list_runs() -> list[dict[str, Any]]:
        """Every run the API knows (GET /api/runs): id, name, mode, state, progress, accuracies, warnings."""
        try:
            return api.runs()
        except ApiError as err:
            raise api_error(err) from None

    def list_pipelines() -> list[dict[str, Any]]:
        """The named pipelines (a teacher and its students) that /launch_pipeline starts."""
        try:
            return api.pipelines()
        except ApiError as err:
            raise api_error(err) from None

    def launch_pipeline(name: str, overrides: list[str] | None = None) -> dict[str, Any]:
        """Queue a whole pipeline (e.g. demo-fmnist-clutter): its runs, each with its role."""
        try:
            return api.launch_pipeline(name, list(overrides or []))
        except ApiError as err:
            raise api_error(err) from None

    def list_sweeps() -> list[dict[str, Any]]:
        """Every sweep (GET /api/sweeps): id, name, state, progress."""
        try:
            return api.sweeps()
        except ApiError as err:
            raise api_error(err) from None

    gr.api(list_runs, api_name="list_runs")
    gr.api(list_pipelines, api_name="list_pipelines")
    gr.api(launch_pipeline, api_name="launch_pipeline")
    gr.api(list_sweeps, api_name="list_sweeps")
