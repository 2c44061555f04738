"""HTML for rationales: patches over images (SVG), highlighted tokens, probability bars.

Everything is computed from the API's JSON (masks, selection probabilities, patch boxes, token
spans); the browser draws it, so no image library is needed here. Every string that came from
a user or a dataset is escaped.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path
from typing import Any

SELECTED = "#f59e0b"  # amber: the rationale
GROUND_TRUTH = "#06b6d4"  # cyan: where the evidence is (a benchmark's, or the user's annotation)
DIM_OPACITY = 0.72


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def data_url(path: str) -> str:
    mime = mimetypes.guess_type(path)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def patch_overlay(image: str, patches: list[dict[str, Any]], mask: list[int] | None,
                  sel_prob: list[float] | None = None, size: tuple[int, int] | None = None,
                  width: int = 168, title: str = "", evidence: list[int] | None = None) -> str:
    """The image with the selected patches at full brightness, the rest dimmed, the patch grid drawn.

    `patches` carry pixel boxes in the image's own coordinates; hovering a patch shows its keep
    probability. A CLS run (mask None) shows the plain image with the grid. With `evidence` (0/1 per
    patch), each ground-truth patch gets a cyan dashed border, inset so the amber selection border
    beside it stays visible.
    """
    w = size[1] if size else max((p["box"][2] for p in patches), default=1)
    h = size[0] if size else max((p["box"][3] for p in patches), default=1)
    parts = [f'<svg class="rk-overlay" viewBox="0 0 {w} {h}" width="{width}" height="{round(width * h / w)}" '
             f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(title)}">',
             f'<image href="{esc(image)}" x="0" y="0" width="{w}" height="{h}" preserveAspectRatio="none" '
             'style="image-rendering:pixelated"/>']
    for p in patches:
        i = p["index"]
        x0, y0, x1, y1 = p["box"]
        kept = mask is None or (i < len(mask) and mask[i])
        prob = sel_prob[i] if sel_prob is not None and i < len(sel_prob) else None
        tip = f"patch ({p['row']}, {p['col']})" + (f": keep probability {prob:.2f}" if prob is not None else "")
        tip += ", selected" if kept and mask is not None else ""
        tip += ", ground truth" if _on(evidence, i) else ""
        fill = "none" if kept else f"rgba(8,10,20,{DIM_OPACITY})"
        stroke = SELECTED if kept and mask is not None else "rgba(255,255,255,0.28)"
        parts.append(f'<rect class="rk-patch{" rk-kept" if kept and mask is not None else ""}" x="{x0}" y="{y0}" '
                     f'width="{x1 - x0}" height="{y1 - y0}" fill="{fill}" stroke="{stroke}" '
                     f'stroke-width="{1.6 if kept and mask is not None else 0.6}" '
                     f'vector-effect="non-scaling-stroke"><title>{esc(tip)}</title></rect>')
    for p in patches:  # drawn last: on top of the dimming and the selection
        if _on(evidence, p["index"]):
            x0, y0, x1, y1 = p["box"]
            inset = round(0.12 * min(x1 - x0, y1 - y0), 2)
            parts.append(f'<rect class="rk-evidence" x="{x0 + inset}" y="{y0 + inset}" width="{x1 - x0 - 2 * inset}" '
                         f'height="{y1 - y0 - 2 * inset}" fill="none" stroke="{GROUND_TRUTH}" stroke-width="1.6" '
                         'stroke-dasharray="3 2" vector-effect="non-scaling-stroke" pointer-events="none"/>')
    parts.append("</svg>")
    return "".join(parts)


def _on(flags: list[int] | None, i: int) -> bool:
    return flags is not None and 0 <= i < len(flags) and bool(flags[i])


def token_highlight(text: str, positions: list[dict[str, Any]], mask: list[int] | None,
                    sel_prob: list[float] | None = None, evidence: list[int] | None = None) -> str:
    """The text with selected tokens highlighted; the others shaded by their keep probability.

    With `evidence` (0/1 per position), the ground-truth tokens are underlined in cyan."""
    out, cursor = [], 0
    for p in positions:
        if not p.get("selectable", True):
            continue
        start, end = p["span"]
        if start < cursor or end <= start:
            continue  # a sub-word that shares its characters with the previous token
        out.append(esc(text[cursor:start]))
        i = p["index"]
        kept = mask is not None and i < len(mask) and bool(mask[i])
        prob = sel_prob[i] if sel_prob is not None and i < len(sel_prob) else None
        tip = f"{p['token']}" + (f": keep probability {prob:.2f}" if prob is not None else "")
        gt = _on(evidence, i)
        tip += " (ground truth)" if gt else ""
        if kept:
            style = f"background:{SELECTED};color:#111;font-weight:600"
        elif prob is not None:
            style = f"background:rgba(245,158,11,{0.45 * prob:.3f})"
        else:
            style = ""
        if gt:
            style = ";".join(x for x in (style, f"text-decoration:underline 2px {GROUND_TRUTH}",
                                         "text-underline-offset:3px") if x)
        cls = "rk-tok" + (" rk-kept" if kept else "") + (" rk-evidence" if gt else "")
        out.append(f'<span class="{cls}" style="{style}" title="{esc(tip)}">{esc(text[start:end])}</span>')
        cursor = end
    out.append(esc(text[cursor:]))
    return f'<div class="rk-text">{"".join(out)}</div>'


def prob_bars(probs: dict[str, float] | list[float], class_names: list[str] | None = None, top: int = 5,
              highlight: str | None = None) -> str:
    items = list(probs.items()) if isinstance(probs, dict) else list(zip(class_names or [], probs))
    items.sort(key=lambda kv: -kv[1])
    rows = []
    for name, p in items[:top]:
        hi = " rk-hi" if name == highlight else ""
        rows.append(f'<div class="rk-bar{hi}"><span class="rk-bar-name">{esc(name)}</span>'
                    f'<span class="rk-bar-track"><span class="rk-bar-fill" style="width:{100 * p:.1f}%"></span>'
                    f'</span><span class="rk-bar-val">{100 * p:.1f}%</span></div>')
    return f'<div class="rk-bars">{"".join(rows)}</div>'


def kept_fraction(mask: list[int], positions: list[dict[str, Any]] | None = None) -> float:
    """Selected share of the positions that can be selected ([CLS]/[SEP] and padding do not count)."""
    valid = [p["index"] for p in positions if p.get("selectable", True)] if positions else range(len(mask))
    valid = [i for i in valid if i < len(mask)]
    return sum(mask[i] for i in valid) / max(len(valid), 1)


def faithfulness_line(f: dict[str, Any] | None, pred: str | None = None) -> str:
    """ERASER scores of one rationale, with the three probabilities behind them in the tooltip."""
    if not f:
        return ""
    tip = (f"p({pred or 'ŷ'}): full input {f['p_full']:.2f} · rationale only {f['p_rationale']:.2f} · "
           f"without the rationale {f['p_complement']:.2f} (then it predicts {f['complement_pred']}). "
           "Comprehensiveness = full − without (high: the rationale was needed); "
           "sufficiency = full − rationale only (low: the rationale is enough).")
    return (f'<div class="rk-faith" title="{esc(tip)}"><span>comprehensiveness <b>{f["comprehensiveness"]:.2f}</b> ↑'
            f'</span><span>sufficiency <b>{f["sufficiency"]:.2f}</b> ↓</span>'
            f'<span class="rk-dim">p({esc(pred or "ŷ")}): full {100 * f["p_full"]:.0f}% · without it '
            f'{100 * f["p_complement"]:.0f}% (→ {esc(f["complement_pred"])})</span></div>')


# --- is the rationale real? ground truth, input dependence, the mask-only probe --------------------
def _annotations(ground_truth: str | None) -> bool:
    return ground_truth == "annotations"


def _num(v: Any, pct: bool = False) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.0f}%" if pct else f"{v:.2f}"


def evidence_name(ground_truth: str | None) -> str:
    """What the cyan outline is: the benchmark's evidence, or the user's own annotation."""
    return "your annotation" if _annotations(ground_truth) else "ground truth"


def plausibility_line(pl: dict[str, Any] | None, ground_truth: str | None = None) -> str:
    """One rationale's precision and recall against the evidence ("on evidence: P 0.83 · R 0.40")."""
    if not pl or (pl.get("precision") is None and pl.get("recall") is None):
        return ""
    what = "your annotation" if _annotations(ground_truth) else "the evidence"
    tip = (f"precision: the share of the selected positions that lie on {what}; recall: the share of {what} "
           "that was selected")
    head = "agreement with your annotations" if _annotations(ground_truth) else "on evidence"
    return (f'<div class="rk-plaus" title="{esc(tip)}">{head}: P <b>{_num(pl.get("precision"))}</b> · '
            f'R <b>{_num(pl.get("recall"))}</b></div>')


def evidence_legend(ground_truth: str | None = None, text: bool = False) -> str:
    """The key to the overlays: amber = selected, cyan = ground truth (or the user's annotation)."""
    gt = ('<span class="rk-key-gt-text">underlined</span>' if text else '<span class="rk-key-gt"></span>')
    return (f'<div class="rk-key"><span><span class="rk-key-sel"></span> selected</span>'
            f'<span>{gt} {esc(evidence_name(ground_truth))}</span></div>')


def warnings_banner(warnings: list[dict[str, Any]] | None, run: str | None = None) -> str:
    """Each warning as a plain line: ⚠ the message, then the detail (then the run, where given)."""
    lines = []
    for w in warnings or []:
        detail = f": {esc(w['detail'])}" if w.get("detail") else ""
        who = f' <span class="rk-dim">— {esc(run)}</span>' if run else ""
        lines.append(f'<div class="rk-msg rk-warning" role="alert" data-code="{esc(w.get("code", ""))}">⚠ '
                     f'<b>{esc(w.get("message", ""))}</b>{detail}{who}</div>')
    return "".join(lines)


def _nested_quality(q: dict[str, Any]) -> dict[str, Any]:
    """The examples page's quality ({plausibility, input_dependence, probe}) as is; the compare page's
    flat one (plausibility_f1, distinct_share, probe_accuracy, ...) in the same shape."""
    if any(k in q for k in ("plausibility", "input_dependence", "probe")):
        return q
    f1 = q.get("plausibility_f1")
    return {"plausibility": None if f1 is None else {"f1": f1, "precision": q.get("plausibility_precision"),
                                                     "recall": q.get("plausibility_recall")},
            "input_dependence": None if q.get("distinct_share") is None else {
                "distinct_share": q["distinct_share"], "fixed_accuracy": q.get("fixed_accuracy")},
            "probe": None if q.get("probe_accuracy") is None else {"accuracy": q["probe_accuracy"],
                                                                   "chance": q.get("probe_chance")}}


def quality_line(q: dict[str, Any] | None, ground_truth: str | None = None, step: int | None = None) -> str:
    """A run's dev figures for "is the rationale real?": plausibility, input dependence, the probe."""
    if not q:
        return ""
    q = _nested_quality(q)
    mine = _annotations(ground_truth)
    parts = []
    pl = q.get("plausibility")
    if pl and pl.get("f1") is not None:
        rnd = (pl.get("random") or {}).get("f1")
        head = "agreement with your annotations" if mine else "on the evidence"
        figs = [f"F1 <b>{_num(pl['f1'])}</b>" + (f" (random {_num(rnd)})" if rnd is not None else "")]
        figs += [f"{k} {_num(pl[key])}" for k, key in (("P", "precision"), ("R", "recall"), ("IOU-F1", "iou_f1"))
                 if pl.get(key) is not None]
        tip = (f"over {pl.get('n') or 'the'} dev examples with {'annotations' if mine else 'ground truth'}: "
               f"precision = share of the selection on {'your annotation' if mine else 'the evidence'}, recall = "
               "share of it that was selected, F1 of the two"
               + (f"; random positions of the same size would score F1 {_num(rnd)}" if rnd is not None else ""))
        parts.append(f'<span class="rk-q-plaus" title="{esc(tip)}">{head}: {" · ".join(figs)}</span>')
    dep = q.get("input_dependence")
    if dep and dep.get("distinct_share") is not None:
        tip = "the share of distinct masks among the dev inputs (near 0: one mask for every input)"
        if dep.get("jaccard_distance") is not None:
            tip += f"; mean pairwise Jaccard distance {_num(dep['jaccard_distance'])}"
        if dep.get("fixed_share") is not None:
            tip += f"; the most frequent mask is given to {_num(dep['fixed_share'], True)} of the inputs"
        fixed = ""
        if dep.get("fixed_accuracy") is not None:
            tip += (f"; the predictor fed that one mask for every input gets {_num(dep['fixed_accuracy'], True)} "
                    "accuracy")
            fixed = f' · one fixed mask: {_num(dep["fixed_accuracy"], True)} accuracy'
        parts.append(f'<span class="rk-q-dep" title="{esc(tip)}">distinct masks <b>'
                     f'{_num(dep["distinct_share"], True)}</b>{fixed}</span>')
    probe = q.get("probe")
    if probe and probe.get("accuracy") is not None:
        gt = (f'; on the ground truth {_num(probe["gt_accuracy"], True)}'
              if probe.get("gt_accuracy") is not None else "")
        tip = ("a classifier that sees only the mask, never the input: far above chance, the positions alone "
               "encode the label")
        parts.append(f'<span class="rk-q-probe" title="{esc(tip)}">mask-only probe <b>'
                     f'{_num(probe["accuracy"], True)}</b> (chance {_num(probe.get("chance"), True)}{gt})</span>')
    if not parts:
        return ""
    at = f" (dev, step {step})" if step is not None else " (dev)"
    return (f'<div class="rk-quality"><span class="rk-q-head">Is the rationale real?{esc(at)}</span>'
            f'{"".join(parts)}</div>')


def _side_html(role: str, side: dict[str, Any], page: dict[str, Any], item: dict[str, Any],
               ground_truth: str | None = None) -> str:
    names = page["class_names"]
    pred = names[side["pred"]]
    ok = side["pred"] == item["label"]
    evidence = side["evidence"] if "evidence" in side else item.get("evidence")
    if page["modality"] == "vision":
        body = patch_overlay(item["image"], page["patches"] or [], side.get("mask"), side.get("sel_prob"),
                             tuple(page["image_size"]) if page.get("image_size") else None,
                             title=f"{role} rationale", evidence=evidence)
    else:
        body = token_highlight(item.get("text") or "", item.get("positions") or [], side.get("mask"),
                               side.get("sel_prob"), evidence=evidence)
    mask = side.get("mask")
    frac = f" · {100 * kept_fraction(mask, item.get('positions')):.0f}% kept" if mask else ""
    gt = ground_truth if ground_truth is not None else page.get("ground_truth")
    return (f'<div class="rk-side rk-{role}"><div class="rk-side-head"><b>{role}</b> → '
            f'<span class="{"rk-ok" if ok else "rk-bad"}">{esc(pred)} {"✓" if ok else "✗"}</span>'
            f' <span class="rk-dim">{100 * max(side["probs"]):.0f}%{frac}</span></div>{body}'
            f'{plausibility_line(side.get("plausibility"), gt) if mask else ""}'
            f'{faithfulness_line(side.get("faithfulness"), pred)}</div>')


def example_card(page: dict[str, Any], item: dict[str, Any]) -> str:
    names = page["class_names"]
    sides = [_side_html("student", item["student"], page, item)]
    if item.get("teacher"):
        sides.append(_side_html("teacher", item["teacher"], page, item))
    agree = item.get("agree")
    badge = "" if agree is None else f'<span class="rk-badge" title="IoU of the two masks">IoU {agree:.2f}</span>'
    disagree = item.get("teacher") and item["teacher"]["pred"] != item["student"]["pred"]
    flag = '<span class="rk-badge rk-warn">disagree</span>' if disagree else ""
    return (f'<div class="rk-card" data-index="{item["index"]}"><div class="rk-card-head">#{item["row"]} · true '
            f'<b>{esc(names[item["label"]])}</b> {badge}{flag}</div><div class="rk-sides">{"".join(sides)}</div></div>')


def has_evidence(items: list[dict[str, Any]]) -> bool:
    return any(it.get("evidence") is not None for it in items)


def examples_grid(page: dict[str, Any]) -> str:
    if not page["items"]:
        return '<div class="rk-empty">No example matches these filters at this step.</div>'
    return f'<div class="rk-grid">{"".join(example_card(page, it) for it in page["items"])}</div>'


def examples_quality(page: dict[str, Any]) -> str:
    """Above the grid: the page's warnings, the step's "is it real?" figures, and the overlay key."""
    legend = (evidence_legend(page.get("ground_truth"), text=page["modality"] != "vision")
              if has_evidence(page["items"]) else "")
    return (warnings_banner(page.get("warnings")) + quality_line(page.get("quality"), page.get("ground_truth"),
                                                                  page.get("step")) + legend)


def letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def pattern_label(pattern: str, names: list[str]) -> str:
    """'10' -> 'only A right'; '11' -> 'all right'; '00' -> 'all wrong'; '110' -> 'A, B right; C wrong'."""
    right = [n for n, c in zip(names, pattern) if c == "1"]
    wrong = [n for n, c in zip(names, pattern) if c == "0"]
    if not wrong:
        return "all right" if len(names) > 2 else "both right"
    if not right:
        return "all wrong" if len(names) > 2 else "both wrong"
    if len(right) == 1:
        return f"only {right[0]} right"
    return f"{', '.join(right)} right; {', '.join(wrong)} wrong"


def run_ground_truth(page: dict[str, Any], run: dict[str, Any]) -> str | None:
    """A compared run's kind of ground truth: on the run, in its quality, or on the page."""
    return run.get("ground_truth") or (run.get("quality") or {}).get("ground_truth") or page.get("ground_truth")


def compare_summary(page: dict[str, Any]) -> str:
    """Who is who, and a confusion-style count: a 2x2 table for two runs, pattern counts for more."""
    runs, summ = page["runs"], page["summary"]
    tags = letters(len(runs))
    legend = "".join(
        f'<li><b>{t}</b> = {esc(r["name"])} <span class="rk-dim">({esc(r["mode"])}, {esc(r["id"])}, step {r["step"]}'
        f'{"" if acc is None else f", {100 * acc:.1f}% right here"})</span>'
        f'{quality_line(r.get("quality"), run_ground_truth(page, r))}'
        f'{warnings_banner(r.get("warnings") or (r.get("quality") or {}).get("warnings"))}</li>'
        for t, r, acc in zip(tags, runs, summ["accuracy"]))
    key = (evidence_legend(next((g for g in (run_ground_truth(page, r) for r in runs) if g), None),
                           text=page.get("modality") != "vision")
           if has_evidence(page.get("items") or []) else "")
    n = summ["n"]
    if len(runs) == 2:
        c = summ["patterns"]
        table = ('<table class="rk-confusion"><tr><th></th><th>B right</th><th>B wrong</th></tr>'
                 f'<tr><th>A right</th><td>{c["11"]}</td><td class="rk-only">{c["10"]}</td></tr>'
                 f'<tr><th>A wrong</th><td class="rk-only">{c["01"]}</td><td>{c["00"]}</td></tr></table>')
    else:
        rows = "".join(f'<tr><td>{esc(pattern_label(pat, tags))}</td><td>{count}</td></tr>'
                       for pat, count in summ["patterns"].items())
        table = f'<table class="rk-confusion"><tr><th>outcome</th><th>examples</th></tr>{rows}</table>'
    return (f'<div class="rk-compare-summary"><ul class="rk-legend">{legend}</ul>{table}'
            f'<div class="rk-dim">{n} shared dev examples · predictions differ on {summ["disagree"]}</div>{key}</div>')


def compare_card(page: dict[str, Any], item: dict[str, Any]) -> str:
    names = page["class_names"]
    tags = letters(len(page["runs"]))
    sides = []
    for tag, run, side in zip(tags, page["runs"], item["sides"]):
        view = dict(item, positions=side.get("positions"))
        sides.append(_side_html(f"{tag} · {run['mode']}", side, page, view,
                                ground_truth=run_ground_truth(page, run)))
    return (f'<div class="rk-card rk-compare-card" data-row="{item["row"]}"><div class="rk-card-head">#{item["row"]} '
            f'· true <b>{esc(names[item["label"]])}</b> <span class="rk-badge">'
            f'{esc(pattern_label(item["pattern"], tags))}</span></div>'
            f'<div class="rk-sides">{"".join(sides)}</div></div>')


def compare_grid(page: dict[str, Any]) -> str:
    if not page["items"]:
        return '<div class="rk-empty">No shared example matches this filter.</div>'
    return f'<div class="rk-grid rk-compare-grid">{"".join(compare_card(page, it) for it in page["items"])}</div>'


def download_links(links: list[tuple[str, str]]) -> str:
    """Download anchors styled as small buttons (the browser fetches the API route directly)."""
    return '<div class="rk-downloads">' + "".join(
        f'<a class="rk-download" href="{esc(url)}" download>{esc(label)}</a>' for label, url in links) + "</div>"


def _explanation_side(role: str, ex: dict[str, Any], image: str | None, text: str | None,
                      evidence: list[int] | None = None, ground_truth: str | None = None) -> str:
    head = (f'<div class="rk-side-head"><b>{role}</b> ({esc(ex["run"])}, step {ex["checkpoint_step"]}) → '
            f'<span class="rk-pred">{esc(ex["label"])}</span> '
            f'<span class="rk-dim">{100 * ex["selected_fraction"]:.0f}% of positions kept</span></div>')
    bars = prob_bars(ex["probabilities"], highlight=ex["label"])
    if ex["modality"] == "vision":
        overlay = patch_overlay(image or "", ex["positions"], ex["mask"], ex["selection_prob"], width=240,
                                title=f"{role} rationale", evidence=evidence)
        seen = (f'<figure><img class="rk-masked" src="{esc(ex["masked_input"])}" width="240" '
                'style="image-rendering:pixelated" alt="what the predictor saw"/>'
                '<figcaption>exactly what the predictor saw</figcaption></figure>')
        body = (f'<div class="rk-pair"><figure>{overlay}<figcaption>rationale over the input</figcaption>'
                f'</figure>{seen}</div>')
    else:
        body = (token_highlight(text or "", ex["positions"], ex["mask"], ex["selection_prob"], evidence=evidence)
                + f'<div class="rk-seen"><span class="rk-dim">what the predictor saw:</span> '
                  f'{esc(ex["masked_input"])}</div>')
    plaus = plausibility_line(ex.get("plausibility"), ground_truth) if evidence is not None else ""
    faith = faithfulness_line(ex.get("faithfulness"), ex["label"])
    return f'<div class="rk-side rk-{role}">{head}{bars}{body}{plaus}{faith}</div>'


def posthoc_side(ex: dict[str, Any], image: str | None, text: str | None) -> str:
    """A CLS run's integrated-gradients top-k beside the rationale, at the same sparsity, scored the same way."""
    ph = ex["posthoc"]
    evidence = ex.get("evidence")
    if ex["modality"] == "vision":
        body = patch_overlay(image or "", ex["positions"], ph["mask"], None, width=240,
                             title="integrated gradients top-k", evidence=evidence)
    else:
        body = token_highlight(text or "", ex["positions"], ph["mask"], None, evidence=evidence)
    f = ex.get("faithfulness") or {}

    def num(v: Any) -> str:
        return "–" if v is None else f"{v:.2f}"

    table = ('<table class="rk-confusion rk-faith-table"><tr><th></th><th>comprehensiveness ↑</th>'
             '<th>sufficiency ↓</th></tr>'
             f'<tr><th>rationale ({esc(ex["run"])})</th><td>{num(f.get("comprehensiveness"))}</td>'
             f'<td>{num(f.get("sufficiency"))}</td></tr>'
             f'<tr><th>integrated gradients top-k ({esc(ph["run_id"])})</th><td>{num(ph["comprehensiveness"])}</td>'
             f'<td>{num(ph["sufficiency"])}</td></tr></table>')
    head = (f'<div class="rk-side-head"><b>post-hoc</b>: integrated gradients on CLS run {esc(ph["run_id"])}, '
            f'its top {sum(ph["mask"])} positions (the rationale\'s size)</div>')
    plaus = plausibility_line(ph.get("plausibility"), _explain_gt(ex)) if evidence is not None else ""
    return f'<div class="rk-side rk-posthoc">{head}{body}{plaus}{table}</div>'


def _explain_gt(ex: dict[str, Any]) -> str:
    # the evidence of an explanation is the user's own upload: always "your annotation"
    return ex.get("ground_truth") or "annotations"


def explanation(ex: dict[str, Any], image: str | None = None, text: str | None = None) -> str:
    """The run's warnings, then each side (student, teacher, post-hoc), with the user's evidence outlined."""
    evidence, gt = ex.get("evidence"), _explain_gt(ex)
    sides = [_explanation_side("student" if ex.get("teacher") else "model", ex, image, text, evidence, gt)]
    if ex.get("teacher"):
        sides.append(_explanation_side("teacher", ex["teacher"], image, text, evidence, gt))
    if ex.get("posthoc"):
        sides.append(posthoc_side(ex, image, text))
    legend = evidence_legend(gt, text=ex["modality"] != "vision") if evidence is not None else ""
    return (f'{warnings_banner(ex.get("warnings"))}{legend}'
            f'<div class="rk-explain rk-sides">{"".join(sides)}</div>')


def message(text: str, kind: str = "error") -> str:
    return f'<div class="rk-msg rk-{kind}" role="alert">{esc(text)}</div>'


CSS = """
.rk-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:12px}
.rk-card{border:1px solid var(--border-color-primary);border-radius:8px;padding:8px}
.rk-card-head{font-size:0.9em;margin-bottom:6px}
.rk-sides{display:flex;gap:12px;flex-wrap:wrap}
.rk-side{flex:1;min-width:170px}
.rk-side-head{font-size:0.85em;margin-bottom:4px}
.rk-ok{color:#16a34a;font-weight:600}.rk-bad{color:#dc2626;font-weight:600}
.rk-dim{opacity:0.7}
.rk-badge{font-size:0.75em;border-radius:6px;padding:1px 6px;margin-left:4px;
  background:var(--background-fill-secondary)}
.rk-warn{background:#fde68a;color:#111}
.rk-text{line-height:1.9;font-size:0.95em}
.rk-tok{border-radius:2px;padding:1px 0}
.rk-bars{margin:4px 0 8px}
.rk-bar{display:flex;align-items:center;gap:6px;font-size:0.8em}
.rk-bar-name{width:110px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.rk-bar-track{flex:1;height:10px;background:var(--background-fill-secondary);border-radius:5px;overflow:hidden}
.rk-bar-fill{display:block;height:100%;background:#60a5fa}
.rk-hi .rk-bar-fill{background:#f59e0b}.rk-hi{font-weight:600}
.rk-bar-val{width:48px;text-align:right}
.rk-pair{display:flex;gap:12px;flex-wrap:wrap}.rk-pair figure{margin:0}
.rk-pair figcaption{font-size:0.75em;opacity:0.7;text-align:center}
.rk-seen{margin-top:6px;font-family:var(--font-mono);font-size:0.85em}
.rk-msg{border-radius:6px;padding:8px 12px;margin:4px 0}
.rk-error{background:#fee2e2;color:#7f1d1d;border:1px solid #fca5a5}
.rk-info{background:#e0f2fe;color:#0c4a6e;border:1px solid #7dd3fc}
.rk-ok-msg{background:#dcfce7;color:#14532d;border:1px solid #86efac}
.rk-warning{background:#fef3c7;color:#78350f;border:1px solid #fcd34d}
.rk-plaus{font-size:0.8em;margin-top:4px;cursor:help}.rk-plaus b{color:#0e7490}
.rk-quality{display:flex;gap:14px;flex-wrap:wrap;font-size:0.85em;margin:4px 0;padding:6px 10px;border-radius:6px;
  background:var(--background-fill-secondary)}.rk-quality>span{cursor:help}.rk-q-head{font-weight:600;cursor:auto}
.rk-key{display:flex;gap:14px;font-size:0.8em;margin:4px 0;align-items:center}
.rk-key>span{display:inline-flex;gap:5px;align-items:center}
.rk-key-sel,.rk-key-gt{display:inline-block;width:14px;height:14px;border-radius:2px}
.rk-key-sel{border:2px solid #f59e0b}.rk-key-gt{border:2px dashed #06b6d4}
.rk-key-gt-text{text-decoration:underline 2px #06b6d4;text-underline-offset:3px}
.rk-run-warn{color:#b45309;font-weight:700;cursor:help}
.rk-field-error{color:#dc2626;font-size:0.8em;min-height:0}
.rk-empty{opacity:0.7;padding:16px}
.rk-hero{border:1px dashed var(--border-color-primary);border-radius:10px;padding:12px 16px}
.rk-chart{width:100%;min-height:330px}
.rk-faith{display:flex;gap:10px;flex-wrap:wrap;font-size:0.8em;margin-top:4px;cursor:help}
.rk-faith-table{font-size:0.85em}
.rk-compare-grid{grid-template-columns:repeat(auto-fill,minmax(520px,1fr))}
.rk-confusion{border-collapse:collapse;margin:6px 0}.rk-confusion td,.rk-confusion th{border:1px solid
  var(--border-color-primary);padding:3px 10px;text-align:center}.rk-confusion .rk-only{background:#fde68a;color:#111}
.rk-legend{margin:0 0 4px 0;padding-left:18px;font-size:0.9em}
.rk-downloads{display:flex;gap:8px;flex-wrap:wrap;margin:4px 0}
.rk-download{font-size:0.85em;border:1px solid var(--border-color-primary);border-radius:6px;padding:3px 10px;
  text-decoration:none}.rk-download:before{content:"⤓ "}
#runs-table td,#runs-table th{padding-top:4px;padding-bottom:4px}
#runs-table td .cell-wrap,#runs-table td .cell-wrap *{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
#runs-table td,#runs-table th,#runs-table .cell-wrap{font-family:var(--font)}#runs-table td{font-size:0.85em}
#runs-table th .cell-wrap{white-space:nowrap}
#runs-table .rk-id{display:block;direction:rtl;text-align:left;cursor:help}#runs-table .rk-progress{width:40px}
.rk-progress{display:inline-block;width:90px;height:8px;border-radius:4px;background:#e5e7eb;overflow:hidden;vertical-align:middle}
.rk-progress>span{display:block;height:100%;background:#60a5fa}
"""
