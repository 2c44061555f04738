"""The UI's pure logic: the form from the schema, overrides, errors, charts and rationale HTML."""

from __future__ import annotations

import httpx
import pytest

from rekd_core.config import ExperimentConfig
from rekd_core.presets import get_preset
from ui import charts, form, render
from ui.client import error_from
from ui.experiments import _field_errors
from ui.runs_table import duration, progress_bar, table_rows

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
    assert row[-1] == runs[0]["id"] and duration(runs[0]) == "1m05s"
    assert progress_bar(1.0).startswith("█" * 10)


def test_kept_fraction_counts_selectable_positions_only():
    positions = [{"index": 0, "selectable": False}, {"index": 1}, {"index": 2}, {"index": 3, "selectable": False}]
    assert render.kept_fraction([1, 1, 0, 1], positions) == 0.5  # [CLS] and [SEP] are always kept, not chosen
    assert render.kept_fraction([1, 0, 0, 1]) == 0.5
