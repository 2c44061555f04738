"""Plotly figures of training runs, from GET /api/runs/{id}/metrics (pure: no HTTP, no Gradio).

Each run keeps one colour across every chart, so RE, REKD and CLS can be told apart at a
glance; `uirevision` is fixed per set of runs, so a refresh keeps the user's zoom and legend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ("#2563eb", "#f59e0b", "#16a34a", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
LOSS_TERMS = (("loss_total", "total"), ("loss_ce", "CE"), ("loss_select", "selection"),
              ("loss_kd_r", "KD-R (rationale)"), ("loss_kd_y", "KD-Y (prediction)"))


@dataclass
class RunSeries:
    run_id: str
    label: str
    log: list[dict[str, Any]] = field(default_factory=list)
    eval: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None
    p_target: float | None = None
    color: str = PALETTE[0]


def run_label(run: dict[str, Any]) -> str:
    """`name · mode · 4-hex suffix`: short, and unique among runs of the same name."""
    return f"{run.get('name') or 'run'} · {run.get('mode') or '?'} · {run['id'][-4:]}"


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _xy(points: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for p in points:
        if p.get(key) is not None:
            xs.append(p["step"])
            ys.append(p[key])
    return xs, ys


def _layout(fig: go.Figure, title: str, revision: str, height: int = 330) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=14)), height=height, uirevision=revision,
                      margin=dict(l=50, r=10, t=60, b=40), template="plotly_white",
                      legend=dict(orientation="h", y=-0.18, x=0), hovermode="x unified")
    return fig


def losses(runs: list[RunSeries], revision: str) -> go.Figure:
    fig = make_subplots(rows=1, cols=len(LOSS_TERMS), subplot_titles=[t for _, t in LOSS_TERMS],
                        horizontal_spacing=0.04)
    for r in runs:
        for col, (key, _) in enumerate(LOSS_TERMS, start=1):
            xs, ys = _xy(r.log, key)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=r.label, legendgroup=r.run_id,
                                     showlegend=col == 1, line=dict(color=r.color, width=1.8)), row=1, col=col)
    fig.update_xaxes(title_text="step", row=1, col=3)
    return _layout(fig, "Loss terms", revision, height=300)


def accuracy_and_tau(runs: list[RunSeries], revision: str) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=["accuracy (train dotted, dev solid)", "τ (log scale)"],
                        horizontal_spacing=0.08)
    for r in runs:
        xs, ys = _xy(r.log, "train_acc")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{r.label} train", legendgroup=r.run_id,
                                 showlegend=False, line=dict(color=r.color, dash="dot", width=1.2)), row=1, col=1)
        xs, ys = _xy(r.eval, "accuracy")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=r.label, legendgroup=r.run_id,
                                 line=dict(color=r.color, width=2.2)), row=1, col=1)
        xs, ys = _xy(r.log, "tau")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{r.label} τ", legendgroup=r.run_id,
                                 showlegend=False, line=dict(color=r.color, shape="hv")), row=1, col=2)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_xaxes(title_text="step")
    return _layout(fig, "Accuracy and temperature", revision)


def selection_and_agreement(runs: list[RunSeries], revision: str) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=[
        "selected fraction (mean ± std; dashed: p_target)", "teacher–student mask IoU (REKD)"])
    for r in runs:
        xs, mean = _xy(r.log, "selected_mean")
        if xs:
            std = [p.get("selected_std") or 0.0 for p in r.log if p.get("selected_mean") is not None]
            upper = [m + s for m, s in zip(mean, std)]
            lower = [max(m - s, 0.0) for m, s in zip(mean, std)]
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=upper + lower[::-1], fill="toself", fillcolor=r.color,
                                     opacity=0.15, line=dict(width=0), hoverinfo="skip", showlegend=False,
                                     legendgroup=r.run_id, name=f"{r.label} ± std"), row=1, col=1)
            fig.add_trace(go.Scatter(x=xs, y=mean, mode="lines", name=r.label, legendgroup=r.run_id,
                                     line=dict(color=r.color, width=2)), row=1, col=1)
            if r.p_target is not None:
                fig.add_trace(go.Scatter(x=[xs[0], xs[-1]], y=[r.p_target] * 2, mode="lines",
                                         name=f"{r.label} p_target", legendgroup=r.run_id, showlegend=False,
                                         line=dict(color=r.color, dash="dash", width=1)), row=1, col=1)
        xs, ys = _xy(r.log, "iou")
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{r.label} IoU", legendgroup=r.run_id,
                                     showlegend=False, line=dict(color=r.color, width=1.6)), row=1, col=2)
        xs, ys = _xy(r.eval, "iou")
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=f"{r.label} dev IoU", legendgroup=r.run_id,
                                     showlegend=False, marker=dict(color=r.color, size=7)), row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_xaxes(title_text="step")
    return _layout(fig, "Rationale: sparsity and agreement", revision)


def faithfulness(runs: list[RunSeries], revision: str) -> go.Figure:
    """Dev-set comprehensiveness and sufficiency (ERASER) at each evaluation, beside τ.

    Comprehensiveness = p(ŷ|x) − p(ŷ|x without the rationale): high means the rationale was
    needed. Sufficiency = p(ŷ|x) − p(ŷ|rationale alone): near zero means it was enough.
    """
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.06, subplot_titles=[
        "comprehensiveness ↑ (dev)", "sufficiency ↓ (dev)", "τ at each eval (log)"])
    for r in runs:
        shown = False
        for col, key in ((1, "faithfulness_comprehensiveness"), (2, "faithfulness_sufficiency")):
            xs, ys = _xy(r.eval, key)
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=r.label, legendgroup=r.run_id,
                                         showlegend=not shown, line=dict(color=r.color, width=2)), row=1, col=col)
                shown = True
        xs, ys = _xy(r.eval, "tau")
        if xs and shown:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{r.label} τ", legendgroup=r.run_id,
                                     showlegend=False, line=dict(color=r.color, shape="hv")), row=1, col=3)
    fig.update_yaxes(range=[-1.02, 1.02], zeroline=True, row=1, col=1)
    fig.update_yaxes(range=[-1.02, 1.02], zeroline=True, row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=3)
    fig.update_xaxes(title_text="step")
    return _layout(fig, "Faithfulness of the rationale (CLS runs have none)", revision)


REALITY_TERMS = (("plausibility_f1", "plausibility F1", "solid", 2.2),
                 ("distinct_share", "distinct-mask share", "dash", 2.0),
                 ("probe_accuracy", "mask-only probe accuracy", "dot", 2.0))


def reality(runs: list[RunSeries], revision: str) -> go.Figure:
    """Is the rationale real? At each evaluation: plausibility F1 against the ground truth (solid;
    only runs that have one), the share of distinct masks (dashed), and the accuracy of a probe that
    sees only the mask (dotted), with its chance level as a thin line. All on 0–1.
    """
    fig = go.Figure()
    for r in runs:
        shown = False
        for key, name, dash, width in REALITY_TERMS:
            xs, ys = _xy(r.eval, key)
            if not xs:
                continue
            if not shown:  # the legend names the run (its colour); the hover names each line
                fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=r.label, legendgroup=r.run_id,
                                         line=dict(color=r.color, width=2), hoverinfo="skip"))
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{r.label} · {name}",
                                     legendgroup=r.run_id, showlegend=False,
                                     line=dict(color=r.color, dash=dash, width=width), marker=dict(size=5),
                                     hovertemplate="%{y:.2f}"))
            shown = True
        xs, ys = _xy(r.eval, "probe_chance")
        if xs and shown:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{r.label} · probe chance",
                                     legendgroup=r.run_id, showlegend=False,
                                     line=dict(color=r.color, width=0.8, shape="hv"), opacity=0.6,
                                     hovertemplate="%{y:.2f}"))
    fig.update_yaxes(range=[0, 1.02], title_text="share / accuracy")
    fig.update_xaxes(title_text="step")
    return _layout(fig, "Is the rationale real?<br><sup>plausibility F1 vs the ground truth (solid) · distinct "
                        "masks (dashed) · mask-only probe (dotted; thin: its chance)</sup>", revision)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def summary_rows(runs: list[RunSeries], states: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """One row per run: the numbers a comparison needs, test figures from the best-dev checkpoint."""
    rows = []
    for r in runs:
        st = states.get(r.run_id, {})
        best_dev = max((p["accuracy"] for p in r.eval if p.get("accuracy") is not None), default=None)
        last = r.log[-1] if r.log else {}
        t = r.test or {}
        q = reality_point(r)
        probe = "–" if q.get("probe_accuracy") is None else (
            f"{_pct(q['probe_accuracy'])} / {_pct(q.get('probe_chance'))}")
        rows.append([r.label, st.get("state", "?"), f"{last.get('step', 0)}/{st.get('total_steps') or '?'}",
                     _pct(best_dev), _pct(t.get("accuracy")), _pct(t.get("macro_f1")),
                     _pct(t.get("selected_mean") if t else last.get("selected_mean")),
                     "–" if t.get("iou") is None else f"{t['iou']:.2f}",
                     "–" if q.get("plausibility_f1") is None else f"{q['plausibility_f1']:.2f}",
                     _pct(q.get("distinct_share")), probe])
    return rows


def reality_point(r: RunSeries) -> dict[str, Any]:
    """Where the "is it real?" columns come from: the test result when it carries them, else the latest
    dev evaluation that does ({} when none)."""
    keys = [k for k, *_ in REALITY_TERMS]
    for p in [r.test or {}, *reversed(r.eval)]:
        if any(p.get(k) is not None for k in keys):
            return p
    return {}


SUMMARY_HEADERS = ["run", "state", "step", "best dev acc %", "test acc %", "test macro-F1 %", "selected %",
                   "IoU w/ teacher", "plaus. F1", "distinct %", "probe / chance %"]
# all eleven in view
SUMMARY_WIDTHS: list[str | int] = ["25%", "9%", "7%", "7%", "7%", "7%", "7%", "7%", "7%", "7%", "10%"]


def sweep_bars(table: list[dict[str, Any]], revision: str) -> go.Figure:
    """Test accuracy per cell of a sweep: mean with a ±std error bar, n in the hover, the paper's number as a mark."""
    labels = [row["label"] or "(all)" for row in table]
    mean = [None if row.get("accuracy_mean") is None else 100 * row["accuracy_mean"] for row in table]
    std = [0.0 if row.get("accuracy_std") is None else 100 * row["accuracy_std"] for row in table]
    fig = go.Figure(go.Bar(
        x=labels, y=mean, error_y=dict(type="data", array=std, visible=True), name="ours (mean ± std)",
        marker_color=[colour(i) for i in range(len(table))],
        customdata=[[row["n"], row["n_total"]] for row in table],
        hovertemplate="%{x}<br>%{y:.1f} %% ± %{error_y.array:.1f}<br>n = %{customdata[0]} of %{customdata[1]}"
                      "<extra></extra>"))
    ref = [(lab, 100 * row["reference"]) for lab, row in zip(labels, table) if row.get("reference") is not None]
    if ref:
        fig.add_trace(go.Scatter(x=[r[0] for r in ref], y=[r[1] for r in ref], mode="markers", name="paper",
                                 marker=dict(symbol="line-ew-open", size=28, color="#111", line=dict(width=3))))
    fig.update_yaxes(title_text="test accuracy %", rangemode="tozero")
    return _layout(fig, "Test accuracy per cell (mean ± std over seeds)", revision, height=360)
