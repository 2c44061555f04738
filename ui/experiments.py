"""Experiments view: the demo pipelines, the launch form (from the config schema) and the run table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import form
from .client import ApiClient, ApiError
from .render import message
from .runs_table import ACTIVE, COLUMN_WIDTHS, DATATYPES, HEADERS, ID_COLUMN, choices, id_of, newest_first, table_rows
from .scripting import PRIVATE, with_optional_keywords

# (pipeline, button label, what it shows): the ground-truth demos first, where every rationale is scored
DEMOS = (("demo-fmnist-clutter", "Fashion-MNIST with ground truth",
          "items at random places among clutter: 64 px, 64 patches; every rationale scored against the item"),
         ("demo-rt-needle", "Reviews with ground truth",
          "a review hidden among synopsis sentences: 128 tokens; every rationale scored against the review"),
         ("demo-fmnist", "Fashion-MNIST, centred",
          "28 px, 49 patches: an example of a rationale that ignores its input (the warning)"),
         ("demo-rt", "Rotten Tomatoes", "reviews: MiniLM tokenizer, 64 tokens"))
DEFAULT_PRESET = "demo-fmnist-teacher"
# the form's layout: pairs of related fields side by side
ROWS = (("mode", "data.dataset"), ("model.teacher_run",),
        ("model.student.embed_dim", "model.student.depth"), ("model.student.hidden_size", "model.student.num_layers"),
        ("loss.alpha", "loss.lambda_R"), ("loss.lambda_select", "loss.p_target"),
        ("schedule.tau0", "schedule.tau_final"), ("train.max_steps", "train.epochs"),
        ("train.batch_size", "train.seed"))
FIELD = {f.path: f for f in form.MAIN_FIELDS}


def _elem(path: str) -> str:
    return "f-" + path.replace(".", "-").replace("_", "-").lower()


@dataclass
class ExperimentsView:
    table_outputs: list[Any]
    choice_outputs: list[Any]
    init_fn: Any
    init_outputs: list[Any]
    launched: gr.JSON
    selected: gr.Dropdown
    to_monitor: gr.Button
    to_rationales: gr.Button
    to_explain: gr.Button


def _widget(f: form.Field) -> gr.components.Component:
    kw: dict[str, Any] = {"label": f.label, "elem_id": _elem(f.path), "interactive": True}
    if f.path in ("mode",):
        # no value until a preset fills it (not the first choice): a script that leaves mode out keeps the preset's
        return gr.Dropdown(choices=["cls", "re", "rekd"], value=None, **kw)
    if f.path in ("data.dataset", "model.teacher_run"):
        return gr.Dropdown(choices=[], allow_custom_value=True, **kw)
    ints = ("embed_dim", "depth", "hidden_size", "num_layers", "max_steps", "batch_size", "seed")
    return gr.Number(precision=0 if f.path.rsplit(".", 1)[-1] in ints else None, **kw)


def dataset_choices(presets: list[dict[str, Any]], api: ApiClient) -> list[tuple[str, str]]:
    """Every built-in dataset (the benchmarks marked), then any other the presets use; your own
    data is typed (folder:, csv:, jsonl:, hf:)."""
    try:
        registry = api.datasets()
    except ApiError:
        registry = []
    out = [(f"{d['name']} (ground truth)" if d.get("ground_truth") else d["name"], d["name"]) for d in registry]
    known = {name for _, name in out}
    used = sorted({form.get_path(p["config"], "data.dataset") for p in presets} - {None} - known)
    return out + [(name, name) for name in used]


def refresh(runs: list[dict[str, Any]]) -> list[Any]:
    """Outputs for table_outputs: the empty-state hero and the run table."""
    return [gr.update(visible=not runs), gr.update(value=table_rows(newest_first(runs)))]


def refresh_choices(runs: list[dict[str, Any]]) -> list[Any]:
    """Outputs for choice_outputs: the run picker and the teacher picker (completed RE runs)."""
    teachers = choices(runs, lambda r: r.get("mode") == "re" and r["state"] == "completed")
    return [gr.update(choices=choices(runs)), gr.update(choices=teachers)]


def _field_errors(err: ApiError) -> tuple[dict[str, str], list[str]]:
    """Map the backend's errors to the form's fields; the rest are shown above the Launch button."""
    on_field: dict[str, str] = {}
    general = []
    for key, msg in (err.fields or {"request": err.message}).items():
        if key in form.MAIN_PATHS:
            on_field[key] = msg
            continue
        # a cross-field rule ("mode 'rekd' needs model.teacher_run") belongs next to the field it names
        named = [p for p in form.MAIN_PATHS if "." in p and re.search(rf"\b{re.escape(p)}\b", msg)]
        for p in named:
            on_field.setdefault(p, msg)
        general.append(f"{key}: {msg}" if key not in ("request", "(config)") else msg)
    return on_field, general


def build(api: ApiClient) -> ExperimentsView:
    presets_state = gr.State({})
    with gr.Column(visible=False, elem_classes="rk-hero", elem_id="rk-hero") as hero:
        gr.Markdown("### No runs yet — start with a demo\nOne click queues a whole offline pipeline: an RE "
                    "**teacher**, then small students trained without a rationale (**CLS**), as plain **RE**, "
                    "and distilled from the teacher (**REKD**). Training starts within seconds; watch it in "
                    "*Monitor*, then compare teacher and student rationales in *Rationales*.")
        with gr.Row():
            demo_buttons = [gr.Button(f"▶ {label}", variant="primary", elem_id=f"btn-{name}")
                            for name, label, _ in DEMOS]
        gr.Markdown("\n".join(f"- **{label}**: {what}" for _, label, what in DEMOS))
    demo_msg = gr.HTML("", elem_id="demo-msg", label="message")
    # the ids a launch queued: the monitor follows them, and a script gets them back from the launch
    launched = gr.JSON([], visible=False, label="queued run ids")

    with gr.Row(equal_height=False):
        # the run table gets the wider half: at 1400 px every run fits on one line of it
        with gr.Column(scale=4, min_width=360):
            gr.Markdown("### Launch a run")
            # any value: a script names a preset without the page having listed them (the API checks it)
            preset = gr.Dropdown(label="preset", elem_id="f-preset", interactive=True, allow_custom_value=True,
                                 info="a named config; the fields below start from it")
            preset_info = gr.Markdown("", elem_id="preset-info")
            widgets: dict[str, Any] = {}
            for row in ROWS:
                with gr.Row():
                    for path in row:
                        widgets[path] = _widget(FIELD[path])
            with gr.Row():
                check_btn = gr.Button("Check dataset", size="sm", elem_id="btn-check-data", scale=1)
                data_info = gr.Markdown("Your own data: a folder of class sub-folders, a CSV / JSONL of texts, or "
                                        "a Hugging Face id — type it as the dataset, then *Check dataset*.",
                                        elem_id="data-info", label="dataset summary")
            with gr.Accordion("Advanced", open=False, elem_id="f-advanced-acc"):
                advanced = gr.Textbox(label="more overrides, one key.path=value per line", lines=3,
                                      elem_id="f-advanced", placeholder="optim.lr=3e-4\ntrain.eval_every=50")
                reference = gr.Markdown("", elem_id="advanced-reference")
            launch_msg = gr.HTML("", elem_id="launch-msg", label="message")
            launch_btn = gr.Button("Launch", variant="primary", elem_id="btn-launch")
        with gr.Column(scale=7, min_width=480):
            gr.Markdown("### Runs")
            # one line per run (render.CSS cuts a long cell with an ellipsis): ten or more runs in view
            table = gr.Dataframe(headers=HEADERS, value=[], interactive=False, elem_id="runs-table",
                                 wrap=False, max_height=520, datatype=DATATYPES, column_widths=COLUMN_WIDTHS)
            with gr.Row():
                selected = gr.Dropdown(label="selected run", choices=[], elem_id="run-selected", scale=3,
                                       allow_custom_value=True)
                cancel_btn = gr.Button("Cancel run", variant="stop", elem_id="btn-cancel", scale=1)
            with gr.Row():
                clone_btn = gr.Button("Clone into form", size="sm", elem_id="btn-clone")
                rerun_btn = gr.Button("Run again (same config)", size="sm", elem_id="btn-rerun")
            with gr.Row():
                to_monitor = gr.Button("Watch in Monitor", size="sm", elem_id="btn-to-monitor")
                to_rationales = gr.Button("Open rationales", size="sm", elem_id="btn-to-rationales")
                to_explain = gr.Button("Explain with it", size="sm", elem_id="btn-to-explain")
            action_msg = gr.HTML("", elem_id="action-msg", label="message")
            with gr.Row():
                gr.Markdown("**Demo pipelines** (teacher → CLS, RE, REKD students):")
                demo_buttons += [gr.Button(label, size="sm", elem_id=f"btn-again-{name}") for name, label, _ in DEMOS]

    fields = list(widgets.values())
    meta = gr.State({})  # per field: what it allows (its info line) and its schema default

    # --- the form follows the preset -------------------------------------------------------------
    def fill(name: str | None, presets: dict[str, Any], info: dict[str, Any]):
        p = presets.get(name or "")
        if p is None:
            return [gr.skip()] * (2 + len(fields))
        cfg = p["config"]
        task = cfg.get("task", "vision")
        updates = []
        for path in widgets:
            f = FIELD[path]
            value = form.get_path(cfg, path)
            if value is None and not info.get(path, {}).get("nullable", True):
                value = info.get(path, {}).get("default")
            visible = f.task is None or f.task == task
            if path == "model.teacher_run":
                visible = cfg.get("mode") == "rekd"
            updates.append(gr.update(value=value, visible=visible, info=info.get(path, {}).get("info")))
        text = f"{p['summary']}" + ("" if p["offline"] else " — **needs a network or a local cache** for its "
                                    "data and weights")
        return [text, "", *updates]

    preset.change(fill, [preset, presets_state, meta], [preset_info, advanced, *fields],
                  show_progress="hidden", **PRIVATE)
    widgets["mode"].change(lambda m: gr.update(visible=m == "rekd"), widgets["mode"],
                           widgets["model.teacher_run"], show_progress="hidden", **PRIVATE)

    def known_presets(presets: dict[str, Any]) -> dict[str, Any]:
        # a fresh gradio_client session never ran the page's load: read the presets then
        return presets or {p["name"]: p for p in api.presets()}

    def init():
        try:
            schema = api.config_schema()
            presets = {p["name"]: p for p in api.presets()}
        except ApiError as err:
            return [gr.skip(), {}, {}, message(f"could not load the config schema: {err.message}"),
                    *[gr.skip()] * len(fields), gr.skip()]
        ordered = sorted(presets.values(), key=lambda p: (not p["offline"], not p["name"].startswith("demo"),
                                                          p["name"]))
        datasets = dataset_choices(ordered, api)
        info: dict[str, Any] = {}
        updates = []
        for path in widgets:
            spec = form.lookup(schema, path) or {}
            # the info line is Gradio's mini-Markdown (no escapes): a formula's * must not become italics
            described = form.info_text(form.describe(spec))
            info[path] = {"info": described or None, "default": spec.get("default"),
                          "nullable": spec.get("nullable", True)}
            kw: dict[str, Any] = {"info": info[path]["info"]}
            if path == "mode":
                kw["choices"] = form.choices_of(spec)
            elif path == "data.dataset":
                kw["choices"] = datasets
            updates.append(gr.update(**kw))
        rows = form.advanced_reference(schema)
        ref = ("| field | type | allowed |\n|---|---|---|\n"
               + "\n".join(f"| `{p}` | {k} | {d.replace('|', '/')} |" for p, k, d in rows))
        start = DEFAULT_PRESET if DEFAULT_PRESET in presets else next(iter(presets), None)
        return [gr.update(choices=[(f"{p['name']}{'' if p['offline'] else '  (network)'}", p["name"])
                                   for p in ordered], value=start),
                presets, info, "", *updates, ref]

    init_outputs = [preset, presets_state, meta, launch_msg, *fields, reference]

    # --- your own data: read and summarised before anything is queued ----------------------------------
    def check_dataset(preset: str | None, presets: dict[str, Any], overrides: str | None = None,
                      dataset: str | None = None):
        """Read and summarise a dataset (its classes, splits, ground truth) before anything is queued."""
        name, adv = preset, overrides
        try:
            p = known_presets(presets).get(name or "")
        except ApiError as err:
            return f"⚠ {err.message}"
        if p is None or not dataset:
            return "pick a preset and a dataset first"
        cfg = p["config"]
        body: dict[str, Any] = {"dataset": dataset, "task": cfg.get("task", "vision")}
        student = (cfg.get("model") or {}).get("student") or {}
        if body["task"] == "vision":
            body.update(image_size=student.get("img_size", 224), in_chans=student.get("in_chans", 3))
        try:
            for line in form.parse_advanced(adv or ""):
                key, _, value = line.partition("=")
                if key in ("data.text_column", "data.label_column", "data.split_column", "data.image_column",
                           "data.rationale_column"):
                    body[key.split(".", 1)[1]] = value
            got = api.inspect_dataset(body)
        except (ValueError, ApiError) as err:
            return f"⚠ {getattr(err, 'message', err)}"
        classes = ", ".join(f"{c} ({sum(got['per_class'][c].values())})" for c in got["class_names"][:12])
        more = f" … and {len(got['class_names']) - 12} more" if len(got["class_names"]) > 12 else ""
        counts = " / ".join(f"{k} {v}" for k, v in got["counts"].items())
        gt, truth = got.get("ground_truth") or {}, ""
        if any(gt.values()):
            whose = "the benchmark's evidence" if got["kind"] == "registry" else "your annotations"
            truth = (" Ground truth: " + " / ".join(f"{gt.get(k, 0)} of {v} {k}" for k, v in got["counts"].items())
                     + f" (plausibility = agreement with {whose}).")
        return (f"✓ **{got['name']}** — {got['modality']}, {len(got['class_names'])} classes: {classes}{more}. "
                f"Splits: {counts} (read in {got['seconds']:.2f} s).{truth}")

    check_btn.click(check_dataset, [preset, presets_state, advanced, widgets["data.dataset"]], data_info,
                    api_name="check_dataset")

    # --- launch ------------------------------------------------------------------------------------
    def launch(preset: str | None, presets: dict[str, Any], info: dict[str, Any], overrides: str | None = None,
               **values: Any):
        """Queue a run: a preset, the form's fields (each named by its last config key: alpha, max_steps, …;
        left empty they keep the preset's value) and more `key.path=value` overrides, one per line."""
        name, adv = preset, overrides
        # every field's info line back to what it allows; a refused field's line becomes its error
        plain = [gr.update(info=info.get(path, {}).get("info")) for path in widgets]
        try:
            p = known_presets(presets).get(name or "")
        except ApiError as err:
            return [message(err.message), *plain, gr.skip()]
        if p is None:
            return [message("pick a preset first" if not name else f"no preset named {name!r}"), *plain,
                    gr.skip()]
        by_path = {path: values.get(form.param_name(path)) for path in widgets}
        if not info:
            # a script's call (the page never filled the form): a field it leaves out keeps the preset's value
            by_path = {k: v for k, v in by_path.items() if v not in (None, "")}
        if (by_path.get("mode") or p["config"].get("mode")) != "rekd":
            by_path.pop("model.teacher_run", None)
        try:
            changes = form.overrides_from(p["config"], by_path, p["config"].get("task"))
            changes += form.parse_advanced(adv or "")
        except ValueError as err:
            return [message(str(err)), *plain, gr.skip()]
        source = p.get("cloned_from")
        try:
            # a clone starts from the run's exact config; the API records where it came from
            created = api.clone(source, changes) if source else api.launch(preset=name, overrides=changes)
        except ApiError as err:
            on_field, general = _field_errors(err)
            marked = [gr.update(info=f"⚠ {on_field[path]}") if path in on_field else u
                      for path, u in zip(widgets, plain)]
            # named here too, not only under the fields: a script reads this message, not the form
            text = "the run was not launched: " + "; ".join(general or [f"{k}: {v} (⚠ on the form)"
                                                                        for k, v in on_field.items()])
            return [message(text), *marked, gr.skip()]
        changed = ", ".join(changes) or "no changes"
        origin = f"clone of {source}" if source else f"preset {name}"
        return [message(f"queued {created['id']} ({origin}; {changed})", "ok-msg"), *plain, [created["id"]]]

    by_name = {form.param_name(path): w for path, w in widgets.items()}
    launch_btn.click(with_optional_keywords(launch, list(by_name)), [preset, presets_state, meta, advanced],
                     inputs_kwargs=by_name,
                     outputs=[launch_msg, *fields, launched], api_name="launch_run")

    def launch_demo(name: str):
        try:
            out = api.launch_pipeline(name)
        except ApiError as err:
            return message(f"could not start {name}: {err.message}"), gr.skip()
        ids = [r["id"] for r in out["runs"]]
        roles = ", ".join(r["role"] for r in out["runs"])
        return message(f"queued {len(ids)} runs of {name} ({roles}); the students wait for the teacher "
                       "where they distil from it", "ok-msg"), ids

    # a script starts a pipeline with /launch_pipeline (scripting.py): one endpoint, not one per button
    for (name, _, _), btn in zip(DEMOS * 2, demo_buttons):
        btn.click(lambda n=name: launch_demo(n), None, [demo_msg, launched], **PRIVATE)

    # --- run actions -----------------------------------------------------------------------------
    def on_row(evt: gr.SelectData, rows: Any):
        try:
            return id_of(rows.iloc[evt.index[0], ID_COLUMN])
        except (AttributeError, IndexError, KeyError, TypeError):
            return gr.skip()

    table.select(on_row, [table], selected, show_progress="hidden", **PRIVATE)

    def cancel(run_id: str | None):
        """Ask a queued or running run to stop (at its next step; its checkpoint is kept)."""
        if not run_id:
            return message("select a run first")
        try:
            state = api.run(run_id)["state"]
            if state not in ACTIVE:
                return message(f"{run_id} is already {state}", "info")
            out = api.cancel(run_id)
        except ApiError as err:
            return message(err.message)
        return message(f"cancel requested for {out['id']} (it stops at its next step; its checkpoint is kept)",
                       "info")

    cancel_btn.click(cancel, selected, action_msg, api_name="cancel_run")

    def clone_into_form(run_id: str | None, presets: dict[str, Any]):
        """The run's exact config becomes the form's starting point (a pseudo-preset), ready to edit."""
        if not run_id:
            return message("select a run first"), gr.skip(), gr.skip()
        try:
            presets = known_presets(presets)
            run = api.run(run_id)
        except ApiError as err:
            return message(err.message), gr.skip(), gr.skip()
        key = f"clone:{run_id}"
        entry = {"name": key, "config": run["config"], "offline": True, "cloned_from": run_id,
                 "summary": f"the exact config of **{run_id}** ({run['state']}); edit any field, then Launch"}
        presets = {**presets, key: entry}
        listed = [(f"clone of {run_id}", key)] + [
            (k if v.get("cloned_from") or v["offline"] else f"{k}  (network)", k)
            for k, v in presets.items() if k != key]
        return (message(f"the form now holds {run_id}'s config: change what you like and press Launch", "info"),
                presets, gr.update(choices=listed, value=key))

    clone_btn.click(clone_into_form, [selected, presets_state], [action_msg, presets_state, preset],
                    api_name="clone_into_form")

    def run_again(run_id: str | None):
        """Queue the run again with its exact config."""
        if not run_id:
            return message("select a run first"), gr.skip()
        try:
            created = api.clone(run_id)
        except ApiError as err:
            return message(err.message), gr.skip()
        return message(f"queued {created['id']}: {run_id} again, same config", "ok-msg"), [created["id"]]

    rerun_btn.click(run_again, selected, [action_msg, launched], api_name="run_again")

    return ExperimentsView(
        table_outputs=[hero, table], choice_outputs=[selected, widgets["model.teacher_run"]],
        init_fn=init, init_outputs=init_outputs, launched=launched, selected=selected,
        to_monitor=to_monitor, to_rationales=to_rationales, to_explain=to_explain)
