"""The UI's pure logic: the form from the schema, overrides, errors, charts and rationale HTML."""

from __future__ import annotations

import httpx
import pytest

from rekd_core.config import ExperimentConfig
from rekd_core.presets import get_preset
from ui import charts, form, render
from ui.client import error_from
from ui.experiments import _field_errors
from ui.runs_table import duration, id_of, progress_bar, table_rows

SCHEMA = ExperimentConfig.model_json_schema()


def test_every_main_field_exists_in_the_schema():
    for f in form.MAIN_FIELDS:
        assert form.lookup(SCHEMA, f.path) is not None, f.path


def test_lookup_reads_bounds_choices_and_nullability():
    alpha = form.lookup(SCHEMA, "loss.alpha")
    assert alpha["minimum"] == 0 and alpha["maximum"] == 1 and form.kind_of(alpha) == "number"
    assert "≤ 1" in form.describe(alpha)
    mode = form.lookup(SCHEMA, "mode")
    assert form.kind_of(mode) == "choice" and form.choices_of(mode) == ["cls", "re", "rekd"]
    steps = form.lookup(SCHEMA, "train.max_steps")
    assert steps["nullable"] and form.kind_of(steps) == "integer"
    # a field of one backbone alternative only (the discriminated student union)
    assert form.kind_of(form.lookup(SCHEMA, "model.student.embed_dim")) == "integer"
    assert form.lookup(SCHEMA, "model.student.hidden_size")["default"] == 128
    assert form.lookup(SCHEMA, "loss.no_such_field") is None


def test_overrides_send_only_what_changed():
    cfg = get_preset("demo-fmnist-student").config
    values = {f.path: form.get_path(cfg, f.path) for f in form.MAIN_FIELDS}
    assert form.overrides_from(cfg, values, "vision") == []
    values.update({"loss.alpha": 0.25, "train.max_steps": 60.0, "train.seed": 3, "model.student.hidden_size": 999})
    out = form.overrides_from(cfg, values, "vision")
    # the text-only field is ignored for a vision preset; a whole float for an int field stays an int
    assert out == ["loss.alpha=0.25", "train.max_steps=60", "train.seed=3"]
    # and the overrides really build the config they describe
    built = get_preset("demo-fmnist-student").build(out)
    assert built.loss.alpha == 0.25 and built.train.max_steps == 60 and built.train.seed == 3


def test_advanced_overrides_parse_and_refuse_a_line_without_equals():
    assert form.parse_advanced("# comment\n\noptim.lr=3e-4\n train.eval_every = 50 ") == [
        "optim.lr=3e-4", "train.eval_every = 50"]
    with pytest.raises(ValueError, match="line 2"):
        form.parse_advanced("optim.lr=1\noptim.lr")


def test_advanced_reference_lists_the_other_leaves():
    paths = {p for p, _, _ in form.advanced_reference(SCHEMA)}
    assert {"optim.lr", "train.eval_every", "loss.distill", "variant"} <= paths
    assert not paths & form.MAIN_PATHS


def _resp(status: int, body) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("POST", "http://x/api/runs"))


def test_api_errors_map_to_form_fields():
    err = error_from(_resp(422, {"detail": [
        {"loc": ["body", "config", "loss", "alpha"], "msg": "Input should be less than or equal to 1"},
        {"loc": ["body", "config", "(config)"], "msg": "mode 'rekd' needs model.teacher_run (the run directory)"},
        {"loc": ["body", "config", "optim", "lr"], "msg": "Input should be greater than 0"}]}))
    assert err.status == 422 and err.fields["loss.alpha"].startswith("Input should be less")
    on_field, general = _field_errors(err)
    assert set(on_field) == {"loss.alpha", "model.teacher_run"}  # the cross-field rule goes to the field it names
    assert any(g.startswith("optim.lr:") for g in general)
    plain = error_from(_resp(409, {"detail": "run 'x' has no checkpoint yet"}))
    assert plain.status == 409 and plain.message == "run 'x' has no checkpoint yet" and not plain.fields


def test_charts_overlay_runs_in_distinct_colours_and_keep_the_view():
    runs = [charts.RunSeries(run_id=f"r{i}", label=f"run {i}", color=charts.colour(i), p_target=0.15,
                             log=[{"step": s, "tau": 5 / (s + 1), "loss_total": 1.0 / s, "loss_ce": 0.5,
                                   "train_acc": 0.5, "selected_mean": 0.2, "selected_std": 0.05,
                                   "iou": 0.5 if i else None} for s in (10, 20, 30)],
                             eval=[{"step": 30, "accuracy": 0.6, "iou": 0.7 if i else None}]) for i in range(3)]
    fig = charts.losses(runs, "rev")
    assert fig.layout.uirevision == "rev"
    colours = {t.line.color for t in fig.data}
    assert len(colours) == 3
    assert sum(1 for t in fig.data if t.showlegend is not False) == 3  # one legend entry per run
    acc = charts.accuracy_and_tau(runs, "rev")
    assert acc.layout.yaxis2.type == "log"
    sel = charts.selection_and_agreement(runs, "rev")
    names = [t.name for t in sel.data]
    assert "run 1 p_target" in names and "run 1 IoU" in names and "run 0 IoU" not in names  # no IoU without KD
    rows = charts.summary_rows(runs, {"r0": {"state": "completed", "total_steps": 30}})
    assert rows[0][:5] == ["run 0", "completed", "30/30", "60.0", "–"]


def test_patch_overlay_dims_unselected_patches_and_escapes():
    patches = [{"index": i, "row": i // 2, "col": i % 2, "box": [14 * (i % 2), 14 * (i // 2),
                                                                 14 * (i % 2) + 14, 14 * (i // 2) + 14]}
               for i in range(4)]
    svg = render.patch_overlay("data:image/png;base64,AAAA", patches, [1, 0, 0, 1], [0.9, 0.1, 0.2, 0.8],
                               title='<script>')
    assert svg.count('class="rk-patch rk-kept"') == 2 and svg.count("rgba(8,10,20") == 2
    assert "keep probability 0.90" in svg and "<script>" not in svg
    assert 'viewBox="0 0 28 28"' in svg


def test_token_highlight_marks_selected_tokens_and_escapes_text():
    text = "a <b>great</b> film"
    positions = [{"index": 0, "token": "[CLS]", "span": [0, 0], "selectable": False},
                 {"index": 1, "token": "a", "span": [0, 1]},
                 {"index": 2, "token": "great", "span": [5, 10]},
                 {"index": 3, "token": "film", "span": [15, 19]}]
    out = render.token_highlight(text, positions, [0, 0, 1, 0], [0, 0.1, 0.95, 0.4])
    assert out.count("rk-kept") == 1 and ">great</span>" in out
    assert "&lt;b&gt;" in out and "<b>" not in out
    assert "keep probability 0.40" in out


def test_run_table_rows():
    runs = [{"id": "20261129-000000-x-ab12", "name": "x", "mode": "re", "state": "running", "progress": 0.5,
             "tau": 1.234, "best_dev_accuracy": 0.5, "test_accuracy": None, "started": "2026-11-29T00:00:00+00:00",
             "finished": "2026-11-29T00:01:05+00:00"}]
    row = table_rows(runs)[0]
    assert row[0] == "x · re · ab12" and row[2].endswith("50%") and row[3] == "1.23" and row[4] == "50.0"
    assert id_of(row[-1]) == runs[0]["id"] and f'title="{runs[0]["id"]}"' in row[-1] and duration(runs[0]) == "1m05s"
    assert id_of("plain-id") == "plain-id" and id_of('<span title="a&amp;b">a&amp;b</span>') == "a&b"
    assert progress_bar(1.0).startswith("█" * 10)


def test_kept_fraction_counts_selectable_positions_only():
    positions = [{"index": 0, "selectable": False}, {"index": 1}, {"index": 2}, {"index": 3, "selectable": False}]
    assert render.kept_fraction([1, 1, 0, 1], positions) == 0.5  # [CLS] and [SEP] are always kept, not chosen
    assert render.kept_fraction([1, 0, 0, 1]) == 0.5


# --- is the rationale real? ground truth, warnings, quality (the API's shapes, as dicts) --------------
def _patches(n_side: int, size: int = 8) -> list[dict]:
    return [{"index": r * n_side + c, "row": r, "col": c, "box": [c * size, r * size, (c + 1) * size, (r + 1) * size]}
            for r in range(n_side) for c in range(n_side)]


QUALITY = {"plausibility": {"n": 500, "precision": 0.55, "recall": 0.4, "f1": 0.46, "iou": 0.3,
                            "evidence_fraction": 0.14, "random": {"precision": 0.14, "recall": 0.15, "f1": 0.12},
                            "ground_truth": "benchmark"},
           "input_dependence": {"n": 500, "distinct": 410, "distinct_share": 0.82, "jaccard_distance": 0.61,
                                "fixed_share": 0.01, "fixed_size": 9, "fixed_accuracy": 0.31,
                                "fixed_plausibility": None},
           "probe": {"accuracy": 0.34, "chance": 0.1, "n": 500, "folds": 5, "gt_accuracy": 0.3}}
WARNING = {"code": "constant_rationale", "message": "this run selects almost the same positions for every input",
           "detail": "2.0% of its masks are distinct (10 of 500) <b>"}


def test_patch_overlay_outlines_each_evidence_patch_in_its_own_colour():
    patches = _patches(8)
    evidence = [0] * 64
    for i in (18, 19, 26, 27, 28):
        evidence[i] = 1
    mask = [1 if i in (19, 40) else 0 for i in range(64)]
    svg = render.patch_overlay("data:image/png;base64,AAAA", patches, mask, size=(64, 64), evidence=evidence)
    assert svg.count('class="rk-evidence"') == 5
    assert render.GROUND_TRUTH in svg and render.GROUND_TRUTH != render.SELECTED and "stroke-dasharray" in svg
    assert svg.count('class="rk-patch rk-kept"') == 2  # the selection is drawn as before
    # the outline sits inside its patch (inset), on top of everything else
    assert '<rect class="rk-evidence" x="16.96" y="16.96" width="6.08" height="6.08"' in svg
    assert svg.rindex("rk-evidence") > svg.rindex("rk-patch")
    assert "patch (2, 2), ground truth" in svg and "patch (2, 3), selected, ground truth" in svg
    # no evidence, no outline; a short or None list is safe
    assert "rk-evidence" not in render.patch_overlay("x", patches, mask, size=(64, 64))
    assert render.patch_overlay("x", patches, mask, size=(64, 64), evidence=[1]).count('class="rk-evidence"') == 1


def test_token_highlight_underlines_the_evidence_tokens():
    text = "plot plot great film"
    positions = [{"index": 0, "token": "[CLS]", "span": [0, 0], "selectable": False},
                 {"index": 1, "token": "plot", "span": [0, 4]}, {"index": 2, "token": "plot", "span": [5, 9]},
                 {"index": 3, "token": "great", "span": [10, 15]}, {"index": 4, "token": "film", "span": [16, 20]}]
    out = render.token_highlight(text, positions, [0, 1, 0, 1, 0], [0, 0.8, 0.1, 0.9, 0.2], evidence=[0, 0, 0, 1, 1])
    assert out.count("rk-evidence") == 2 and f"underline 2px {render.GROUND_TRUTH}" in out
    great = out.split(">great<")[0].rsplit("<span", 1)[1]
    assert "rk-kept" in great and "rk-evidence" in great and "background:#f59e0b;" in great  # both, well-formed
    assert "(ground truth)" in out


def test_plausibility_line_and_its_wording_for_user_annotations():
    line = render.plausibility_line({"precision": 0.833, "recall": 0.4})
    assert "on evidence: P <b>0.83</b> · R <b>0.40</b>" in line
    mine = render.plausibility_line({"precision": 0.5, "recall": None}, "annotations")
    assert "agreement with your annotations" in mine and "on evidence" not in mine and "R <b>–</b>" in mine
    assert render.plausibility_line(None) == "" and render.plausibility_line({"precision": None, "recall": None}) == ""


def test_warnings_banner_escapes_and_names_the_run():
    out = render.warnings_banner([WARNING], run="demo <x>")
    assert "⚠ <b>this run selects almost the same positions for every input</b>: 2.0% of its masks" in out
    assert "&lt;b&gt;" in out and "demo &lt;x&gt;" in out and 'data-code="constant_rationale"' in out
    assert render.warnings_banner([]) == "" and render.warnings_banner(None) == ""


def test_quality_line_reads_the_three_figures():
    out = render.quality_line(QUALITY, "benchmark", step=300)
    assert "Is the rationale real? (dev, step 300)" in out
    assert "on the evidence: F1 <b>0.46</b> (random 0.12) · P 0.55 · R 0.40" in out
    assert "distinct masks <b>82%</b>" in out and "one fixed mask: 31% accuracy" in out
    assert "mask-only probe <b>34%</b> (chance 10%; on the ground truth 30%)" in out
    mine = render.quality_line(QUALITY, "annotations")
    assert "agreement with your annotations: F1" in mine and "on the evidence" not in mine
    # no ground truth: the input dependence and the probe only
    bare = render.quality_line({"plausibility": None, "input_dependence": QUALITY["input_dependence"],
                                "probe": None})
    assert "F1" not in bare and "distinct masks" in bare and "probe" not in bare
    assert render.quality_line(None) == ""


def _vision_page(ground_truth="benchmark", warnings=None):
    evidence = [1 if i in (9, 10, 17, 18) else 0 for i in range(64)]
    side = {"pred": 1, "probs": [0.2, 0.8], "mask": [1 if i in (10, 11) else 0 for i in range(64)],
            "sel_prob": [0.5] * 64, "plausibility": {"precision": 0.5, "recall": 0.25}}
    item = {"index": 0, "row": 7, "label": 1, "image": "data:image/png;base64,AAAA", "evidence": evidence,
            "student": side, "teacher": dict(side, plausibility={"precision": 1.0, "recall": 0.5}), "agree": 0.5}
    return {"class_names": ["a", "b"], "modality": "vision", "patches": _patches(8), "image_size": [64, 64],
            "items": [item], "step": 300, "ground_truth": ground_truth, "quality": QUALITY,
            "warnings": warnings or []}


def test_rationale_cards_carry_the_outline_and_each_sides_precision_recall():
    page = _vision_page()
    card = render.example_card(page, page["items"][0])
    assert card.count('class="rk-evidence"') == 2 * 4  # student and teacher, each the item's 4 patches
    assert "on evidence: P <b>0.50</b> · R <b>0.25</b>" in card and "P <b>1.00</b> · R <b>0.50</b>" in card
    top = render.examples_quality(dict(page, warnings=[WARNING]))
    assert "rk-warning" in top and "Is the rationale real?" in top and "rk-key-gt" in top and "ground truth" in top
    mine = render.examples_quality(_vision_page("annotations"))
    assert "your annotation" in mine and "agreement with your annotations" in mine
    card = render.example_card(_vision_page("annotations"), _vision_page()["items"][0])
    assert "agreement with your annotations" in card
    # no ground truth: no outline, no P/R, no key
    plain = _vision_page(None)
    plain["items"][0].update(evidence=None)
    for side in ("student", "teacher"):
        plain["items"][0][side] = dict(plain["items"][0][side], plausibility=None)
    assert "rk-evidence" not in render.example_card(plain, plain["items"][0])
    assert "rk-plaus" not in render.example_card(plain, plain["items"][0])
    assert "rk-key" not in render.examples_quality(plain)


def test_compare_shows_each_runs_quality_warnings_and_the_outline():
    page = _vision_page()
    item = page["items"][0]
    flat = {"step": 300, "ground_truth": "benchmark", "plausibility_f1": 0.46, "plausibility_precision": 0.55,
            "distinct_share": 0.02, "fixed_accuracy": 0.6, "probe_accuracy": 0.34, "probe_chance": 0.1,
            "warnings": [WARNING]}
    empty = {k: None for k in flat} | {"warnings": []}
    runs = [{"name": "cls", "mode": "cls", "id": "r1", "step": 300, "quality": empty},
            {"name": "re", "mode": "re", "id": "r2", "step": 300, "quality": flat}]
    cmp = dict(page, runs=runs, summary={"accuracy": [0.5, 0.6], "n": 10, "disagree": 3,
                                         "patterns": {"11": 4, "10": 1, "01": 2, "00": 3}},
               items=[{"row": 7, "label": 1, "pattern": "01", "evidence": item["evidence"], "image": item["image"],
                       "sides": [{"pred": 0, "probs": [0.7, 0.3], "mask": None},
                                 dict(item["student"], positions=None)]}])
    del cmp["ground_truth"]  # the compare page names it per run, in its quality
    summary = render.compare_summary(cmp)
    assert summary.count("Is the rationale real?") == 1 and summary.count("this run selects almost") == 1
    assert "on the evidence: F1 <b>0.46</b> · P 0.55" in summary and "distinct masks <b>2%</b>" in summary
    assert "mask-only probe <b>34%</b> (chance 10%)" in summary and "rk-key" in summary
    card = render.compare_card(cmp, cmp["items"][0])
    assert card.count('class="rk-evidence"') == 8  # the outline on both runs' images
    assert card.count("rk-plaus") == 1 and "on evidence: P" in card  # P / R where there is a rationale
    # the nested shape (the examples page's) renders the same figures
    assert "distinct masks <b>82%</b>" in render.compare_summary(dict(cmp, runs=[runs[0], dict(runs[1],
                                                                                               quality=QUALITY)]))


def test_explanation_outlines_the_users_evidence_and_shows_the_runs_warnings():
    ex = {"run": "r2", "checkpoint_step": 300, "label": "b", "selected_fraction": 0.1, "modality": "vision",
          "probabilities": {"a": 0.2, "b": 0.8}, "positions": _patches(8), "mask": [1] + [0] * 63,
          "selection_prob": [0.5] * 64, "masked_input": "data:image/png;base64,AAAA",
          "evidence": [1, 1, 1] + [0] * 61, "plausibility": {"precision": 1.0, "recall": 0.333},
          "warnings": [WARNING]}
    ex["teacher"] = dict(ex, run="t", plausibility={"precision": 0.0, "recall": 0.0}, teacher=None, warnings=[])
    out = render.explanation(ex, image="data:image/png;base64,AAAA")
    assert out.count('class="rk-evidence"') == 6 and "agreement with your annotations: P <b>1.00</b>" in out
    assert "rk-warning" in out and out.index("rk-warning") < out.index("rk-explain")
    assert "rk-key" in out
    bare = render.explanation(dict(ex, evidence=None, plausibility=None, warnings=[], teacher=None),
                              image="data:image/png;base64,AAAA")
    assert "rk-evidence" not in bare and "rk-plaus" not in bare and "rk-key" not in bare


def test_reality_chart_one_colour_per_run_styles_per_figure_and_zero_to_one():
    def evals(plaus):
        return [{"step": s, "accuracy": 0.6, "plausibility_f1": 0.3 if plaus else None, "distinct_share": 0.05,
                 "probe_accuracy": 0.5, "probe_chance": 0.1} for s in (150, 300)]
    runs = [charts.RunSeries(run_id="a", label="clutter", color=charts.colour(0), eval=evals(True)),
            charts.RunSeries(run_id="b", label="centred", color=charts.colour(1), eval=evals(False)),
            charts.RunSeries(run_id="c", label="cls", color=charts.colour(2), eval=[{"step": 100, "accuracy": 0.7}])]
    fig = charts.reality(runs, "rev")
    assert fig.layout.uirevision == "rev" and list(fig.layout.yaxis.range) == [0, 1.02]
    by_name = {t.name: t for t in fig.data}
    assert by_name["clutter · plausibility F1"].line.dash == "solid"
    assert "centred · plausibility F1" not in by_name  # no ground truth, no F1 line
    assert by_name["centred · distinct-mask share"].line.dash == "dash"
    assert by_name["centred · mask-only probe accuracy"].line.dash == "dot"
    assert by_name["centred · probe chance"].line.width < 1
    assert {t.line.color for t in fig.data if t.legendgroup == "a"} == {charts.colour(0)}
    assert [t.name for t in fig.data if t.showlegend is not False] == ["clutter", "centred"]  # one entry per run
    assert not any(t.legendgroup == "c" for t in fig.data)  # a CLS run has no rationale
    rows = charts.summary_rows(runs, {})
    assert rows[0][-3:] == ["0.30", "5.0", "50.0 / 10.0"] and rows[1][-3:] == ["–", "5.0", "50.0 / 10.0"]
    assert rows[2][-3:] == ["–", "–", "–"] and len(charts.SUMMARY_HEADERS) == len(rows[0])
    # the test split's figures once the run is tested
    runs[0].test = {"accuracy": 0.7, "plausibility_f1": 0.4, "distinct_share": 0.9, "probe_accuracy": 0.2,
                    "probe_chance": 0.1}
    assert charts.summary_rows(runs[:1], {})[0][-3:] == ["0.40", "90.0", "20.0 / 10.0"]


def test_run_table_marks_runs_with_warnings_and_escapes_the_state():
    from ui.runs_table import DATATYPES, HEADERS, signature

    base = {"id": "20261129-000000-x-ab12", "name": "x", "mode": "re", "progress": 1.0}
    plain, warned, failed = table_rows([dict(base, state="completed"), dict(base, state="completed",
                                        warnings=[WARNING]), dict(base, state="failed", error="bad <input>")])
    state = HEADERS.index("state")
    assert plain[state] == "completed" and DATATYPES[state] == "html"
    assert warned[state].startswith('<span class="rk-run-warn" title="this run selects almost the same positions')
    assert warned[state].endswith("⚠</span> completed") and "&lt;b&gt;" in warned[state]
    assert failed[state] == "failed (bad &lt;input&gt;)"
    assert signature([dict(base, state="completed")]) != signature([dict(base, state="completed",
                                                                         warnings=[WARNING])])


def test_sweep_table_has_the_quality_columns():
    from ui.sweeps_view import TABLE_HEADERS, run_rows
    from ui.sweeps_view import table_rows as sweep_rows

    row = {"label": "mode=re", "n": 2, "n_total": 2, "accuracy_mean": 0.7, "accuracy_std": 0.01,
           "plausibility_f1_mean": 0.456, "plausibility_f1_std": 0.02, "plausibility_f1_n": 2,
           "distinct_share_mean": 0.8, "distinct_share_std": 0.1, "distinct_share_n": 1,
           "probe_accuracy_mean": 0.3, "probe_accuracy_std": 0.0, "probe_accuracy_n": 2}
    out = sweep_rows([row, {"label": "mode=cls", "n": 1, "n_total": 2, "plausibility_f1_n": 0}])
    assert len(out[0]) == len(TABLE_HEADERS)
    assert out[0][-3:] == ["45.6 ± 2.0", "80.0 ± 10.0 (n=1)", "30.0 ± 0.0"] and out[1][-3:] == ["–", "–", "–"]
    runs = run_rows({"teachers": [], "runs": [{"label": "mode=re", "seed": 0, "state": "completed", "id": "x",
                                               "warnings": ["constant_rationale"]}]})
    assert runs[0][2] == "completed ⚠ same mask for every input"


def test_the_ground_truth_demos_are_offered_first():
    from rekd_core.presets import PIPELINES
    from ui.experiments import DEMOS

    assert [d[0] for d in DEMOS] == ["demo-fmnist-clutter", "demo-rt-needle", "demo-fmnist", "demo-rt"]
    assert [d[1] for d in DEMOS[:2]] == ["Fashion-MNIST with ground truth", "Reviews with ground truth"]
    assert {d[0] for d in DEMOS} <= set(PIPELINES)


def test_dataset_choices_list_the_registry_with_benchmarks_marked_then_preset_datasets():
    from ui.client import ApiError
    from ui.experiments import dataset_choices

    class Api:
        def __init__(self, registry):
            self.registry = registry

        def datasets(self):
            if self.registry is None:
                raise ApiError(503, "down")
            return self.registry

    presets = [{"config": {"data": {"dataset": "fashion_mnist"}}}, {"config": {"data": {"dataset": "csv:/x.csv"}}}]
    reg = [{"name": "fashion_mnist", "ground_truth": False}, {"name": "fashion_mnist_clutter", "ground_truth": True}]
    assert dataset_choices(presets, Api(reg)) == [("fashion_mnist", "fashion_mnist"),
                                                 ("fashion_mnist_clutter (ground truth)", "fashion_mnist_clutter"),
                                                 ("csv:/x.csv", "csv:/x.csv")]
    # without the API's list the form still offers what the presets use
    assert dataset_choices(presets, Api(None)) == [("csv:/x.csv", "csv:/x.csv"), ("fashion_mnist", "fashion_mnist")]


# --- the UI as a scripting surface (gradio_client) ----------------------------------------------------------
def test_info_lines_have_no_markup_to_escape():
    described = form.describe(form.lookup(SCHEMA, "loss.alpha"))
    line = form.info_text(described)
    assert "\\" not in line and "*" not in line and "α · L_RE + (1 − α) · L_KD" in line
    # a product keeps its factors, a lone star stays a character: nothing between two stars turns italic
    assert form.info_text("L = a*b + (1-a)*c") == "L = a·b + (1-a)·c"
    assert form.info_text("glob * and *") == "glob ∗ and ∗"
    for f in form.MAIN_FIELDS:
        assert "\\" not in form.info_text(form.describe(form.lookup(SCHEMA, f.path) or {})), f.path


def test_launch_parameters_are_unique_identifiers():
    names = [form.param_name(f.path) for f in form.MAIN_FIELDS]
    assert len(set(names)) == len(names) and all(n.isidentifier() for n in names)
    assert {"alpha", "max_steps", "teacher_run", "dataset"} <= set(names)


def test_explain_details_spell_out_the_selection():
    from ui.scripting import explain_details

    positions = [{"index": i, "token": t, "span": [0, 1], "selectable": 0 < i < 3}
                 for i, t in enumerate(["[CLS]", "great", "film", "[SEP]"])]
    ex = {"modality": "text", "label": "pos", "probabilities": {"neg": 0.2, "pos": 0.8}, "mask": [1, 0, 1, 1],
          "selection_prob": [1.0, 0.1, 0.9, 1.0], "positions": positions, "run": "r1",
          "teacher": {"modality": "text", "label": "pos", "mask": [1, 1, 0, 1], "positions": positions}}
    out = explain_details(ex, "great film")
    assert out["selected_positions"] == [0, 2, 3] and out["selected_tokens"] == ["[CLS]", "film", "[SEP]"]
    assert out["tokens"] == ["[CLS]", "great", "film", "[SEP]"] and out["text"] == "great film"
    assert out["teacher"]["selected_tokens"] == ["[CLS]", "great", "[SEP]"]
    assert ex.get("selected_positions") is None  # the API's answer itself is left as it was
    vision = explain_details({"modality": "vision", "mask": [0, 1], "positions": [{"index": 0}, {"index": 1}]})
    assert vision["selected_positions"] == [1] and "tokens" not in vision


def test_every_ui_action_is_named_and_the_rest_is_private():
    from ui.app import build_ui
    from ui.client import ApiClient
    from ui.scripting import ENDPOINTS

    info = build_ui(ApiClient("http://127.0.0.1:9")).get_api_info()  # nothing is called while building
    assert not info["unnamed_endpoints"] and set(info["named_endpoints"]) == set(ENDPOINTS)
    for name, ep in info["named_endpoints"].items():
        params = [p["parameter_name"] for p in ep["parameters"]]
        assert not any(p.startswith("param_") for p in params), (name, params)
        assert not any(r["label"].startswith("value_") for r in ep["returns"]), name
    launch = {p["parameter_name"]: p for p in info["named_endpoints"]["/launch_run"]["parameters"]}
    # every form field may be left out (it keeps the preset's value): none defaults to a first choice
    assert all(launch[form.param_name(f.path)]["parameter_has_default"] for f in form.MAIN_FIELDS)
    assert all(launch[form.param_name(f.path)]["parameter_default"] is None for f in form.MAIN_FIELDS)
