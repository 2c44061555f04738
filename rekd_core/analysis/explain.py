"""explain(run, input): a faithful explanation from a trained run.

The generator picks positions deterministically (argmax Z, no noise); the predictor sees only
those, so the returned mask is exactly what the prediction was computed from. For a distilled
run the teacher's rationale and prediction for the same input come alongside. Each rationale
carries its ERASER comprehensiveness and sufficiency (faithfulness.py), so the claim is measured;
with a baseline CLS run, that run's integrated-gradients selection at the same sparsity too.

Optional ground truth for the one input (`evidence`): a mask image for an image run (non-zero =
evidence, resized to the image's size), highlighted substrings for a text run (every occurrence
counts). It is mapped to positions by the run's own featurizer, as its training data's evidence
is, and each rationale gets its precision and recall against it. Every explanation also carries
its run's warnings (quality.py): a rationale that barely depends on its input says so.

A text is normalised by one documented rule before it is explained (data/inputs.py `normalise_text`, which the
API and the CLI share): control characters other than tab, newline and carriage return become
spaces (so character offsets are kept), and a text with nothing left to explain is refused.
Bytes become text only as UTF-8 (`decode_utf8`: an error names the first invalid byte's offset).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.features import Inputs, TextFeaturizer, VisionFeaturizer, to_device_inputs
from ..data.inputs import controls_to_spaces, normalise_text
from ..data.inputs import image_array as _image_array
from ..model.masks import selection_probs
from ..model.runmodel import LoadedRun
from ..store.hub import ExportedRun, is_export, load_export
from .faithfulness import IG_STEPS, baseline_problem, erasure, posthoc, rows
from .quality import run_warnings
from .rationale_metrics import per_example_plausibility

EXCERPT = 60  # characters of a refused substring quoted back


@dataclass
class Explanation:
    modality: str
    label: str
    label_index: int
    probabilities: dict[str, float]
    mask: list[int]  # per position, 1 = the predictor saw it
    selection_prob: list[float]  # the generator's keep probability per position
    positions: list[dict[str, Any]]  # pixel boxes or token character spans
    selected_fraction: float
    masked_input: Any  # image (H, W[, C]) uint8 with unselected patches blanked, or the kept text
    run: str
    checkpoint_step: int
    teacher: Explanation | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # ERASER comprehensiveness / sufficiency of `mask` under the same predictor (faithfulness.py);
    # None for a CLS run, which has no rationale
    faithfulness: dict[str, Any] | None = None
    # with a baseline CLS run: its integrated-gradients top-k selection at this rationale's size
    posthoc: dict[str, Any] | None = None
    # with ground truth for the input: 0/1 per position (this run's positions), and the rationale's
    # {precision, recall} against it (None for a CLS run, or when no position it sees is evidence)
    evidence: list[int] | None = None
    plausibility: dict[str, float | None] | None = None
    # the run's rationale warnings (quality.run_warnings): [{code, message, detail}]
    warnings: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self, compact: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(self.masked_input, np.ndarray):
            d["masked_input"] = self.masked_input.tolist()
        if self.teacher is not None:
            d["teacher"] = self.teacher.to_dict(compact)
        if compact:
            d.pop("selection_prob")
            d.pop("positions")
            if self.modality == "vision":
                d.pop("masked_input")
                d["selected_positions"] = [i for i, m in enumerate(self.mask) if m]
                d.pop("mask")
        return d


def _load_run(run_dir: str, which: str, mtime_ns: int) -> LoadedRun:
    # keyed by the checkpoint's mtime, so a newer checkpoint is picked up; bounded, unlike a dict
    if which == _EXPORTED:
        return load_export(run_dir)
    return LoadedRun(run_dir, which=which)


_EXPORTED = "exported"  # the cache key's `which` for an exported folder: it holds one checkpoint


_load = functools.lru_cache(maxsize=8)(_load_run)


def set_model_cache_size(n: int) -> None:
    """How many trained models `load_run` keeps loaded (the API sets it from REKD_EXPLAIN_CACHE_SIZE);
    the models loaded so far are dropped."""
    global _load
    if n < 1:
        raise ValueError(f"the model cache holds at least 1 model, got {n}")
    _load = functools.lru_cache(maxsize=n)(_load_run)


def load_run(run_dir: str | Path, which: str = "best") -> LoadedRun:
    """A run directory's checkpoint (`which`, falling back to last), or an exported model folder
    (store/hub.py: config.json + model.safetensors; `which` does not apply, it holds one checkpoint)."""
    root = Path(run_dir)
    if is_export(root):
        stamp = max((root / n).stat().st_mtime_ns for n in ("config.json", "model.safetensors"))
        return _load(str(root.resolve()), _EXPORTED, stamp)
    path = root / "checkpoints" / f"{which}.safetensors"
    if not path.exists():
        path = root / "checkpoints" / "last.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{root}: no checkpoint to explain with (train the run first)")
    return _load(str(root.resolve()), which, path.stat().st_mtime_ns)


def _vision_inputs(feat: VisionFeaturizer, arr: np.ndarray, device: torch.device) -> Inputs:
    t = torch.from_numpy(arr.copy())
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)  # (C, H, W)
    x = feat.pixels(t.unsqueeze(0).to(device))
    return Inputs(x=x, attention=None, selectable=torch.ones(1, feat.num_positions, device=device), keep=None)


def _excerpt(s: str) -> str:
    return repr(s if len(s) <= EXCERPT else s[:EXCERPT] + "…")


def rationale_spans(text: str, rationale: str | list[str]) -> list[tuple[int, int]]:
    """[start, end) of every occurrence of each highlighted substring (a list, or one per line;
    blank lines are skipped). Matching is exact: case and spacing count. ValueError names a
    substring that is not in the text."""
    lines = rationale.splitlines() if isinstance(rationale, str) else list(rationale)
    spans: list[tuple[int, int]] = []
    for k, raw in enumerate(lines, 1):
        part = raw.strip()
        if not part:
            continue
        start = text.find(part)
        if start < 0:
            raise ValueError(f"rationale: line {k}, {_excerpt(part)}, is not in the text (matching is exact: "
                             "case and spacing count)")
        while start >= 0:
            spans.append((start, start + len(part)))
            start = text.find(part, start + len(part))
    return sorted(spans)


def evidence_pixels(mask: Any, height: int, width: int) -> torch.Tensor:
    """A mask image or array (any size, gray or color; non-zero = evidence) as a (1, height, width)
    uint8 0/1 tensor, resized to the input image's size (nearest neighbour)."""
    arr = _image_array(mask)
    if arr.ndim == 3:
        arr = arr.max(-1)
    t = torch.from_numpy(np.ascontiguousarray(arr > 0)).to(torch.float32)[None, None]
    if tuple(t.shape[-2:]) != (height, width):
        t = torch.nn.functional.interpolate(t, size=(height, width), mode="nearest")
    return (t[0] > 0.5).to(torch.uint8)


def _masked_text(text: str, positions: list[dict[str, Any]], mask: list[int]) -> str:
    """The text as the predictor saw it: kept tokens verbatim, each run of dropped ones as '…'."""
    parts: list[str] = []
    dropped = False
    for pos, m in zip(positions, mask):
        if not pos["selectable"]:
            continue
        a, b = pos["span"]
        if m:
            parts.append(text[a:b])
            dropped = False
        elif not dropped:
            parts.append("…")
            dropped = True
    return " ".join(parts)


def _evidence_targets(feat: Any, inp: Any, arr: np.ndarray | None, evidence: Any, length: int) -> torch.Tensor:
    """(1, length) float 0/1: the ground truth at this run's positions."""
    if isinstance(feat, VisionFeaturizer):
        if isinstance(evidence, str) or (isinstance(evidence, (list, tuple)) and evidence
                                         and isinstance(evidence[0], str)):
            raise ValueError("evidence: highlighted text is ground truth for a text run; this run explains images "
                             "(give a mask image)")
        assert arr is not None
        target = feat.evidence_targets(evidence_pixels(evidence, arr.shape[0], arr.shape[1]))
    else:
        if not isinstance(evidence, (str, list, tuple)):
            raise ValueError("evidence: a mask image is ground truth for an image run; this run explains texts "
                             "(give the highlighted substrings)")
        if isinstance(evidence, str):  # matched against the normalised text, so normalised the same way
            evidence = controls_to_spaces(evidence)
        else:
            evidence = [controls_to_spaces(e) for e in evidence]
        target = feat.evidence_targets([inp], [rationale_spans(inp, evidence)])
    return _fit(target.float(), length)


@torch.no_grad()
def _explain_loaded(run: LoadedRun, inp: Any, evidence: Any = None) -> Explanation:
    model, feat, dev = run.model, run.featurizer, run.device
    arr = None
    if isinstance(feat, VisionFeaturizer):
        if isinstance(inp, str):
            raise ValueError("this run explains images, but a text was given")
        arr = _image_array(inp)
        inputs = _vision_inputs(feat, arr, dev)
        positions = feat.positions(arr.shape[0], arr.shape[1])
        for p in positions:
            p["selectable"] = True
    else:
        assert isinstance(feat, TextFeaturizer)
        if not isinstance(inp, str):
            raise ValueError("this run explains texts, but an image was given")
        inputs, positions = feat.positions(inp)
        inputs = to_device_inputs(inputs, dev)
        positions = positions[: inputs.selectable.shape[1]]
        if not bool(inputs.selectable.any()):
            raise ValueError("the text has nothing to explain: the run's tokenizer keeps none of its characters")

    faith = None
    if model.with_generator:
        z = model.generate(inputs)
        m = model.select(z, inputs.selectable)
        q = model.predict(inputs, m)
        sel_prob = selection_probs(z)[0].tolist()
        mask = (m[0] * inputs.selectable[0]).to(torch.int64).tolist()
        faith = rows(erasure(model.predict, inputs, m, q_rationale=q), run.class_names)[0]
    else:  # a CLS run: the whole input is its "rationale"
        q = model.predict(inputs, None)
        sel_prob = inputs.selectable[0].tolist()
        mask = inputs.selectable[0].to(torch.int64).tolist()
    probs = torch.softmax(q.float(), -1)[0].tolist()
    k = int(np.argmax(probs))
    n_sel = sum(1 for p in positions if p["selectable"])
    frac = sum(mask) / max(n_sel, 1)
    if isinstance(feat, VisionFeaturizer):
        assert arr is not None  # read above, as every image run's input is
        masked: Any = feat.masked_image(arr, np.asarray(mask))
    else:
        masked = _masked_text(inp, positions, mask)
    gt, plaus = None, None
    if evidence is not None:
        target = _evidence_targets(feat, inp, arr, evidence, len(mask)).cpu()
        valid = inputs.selectable.float().cpu()[:, :len(mask)]
        gt = [int(v) for v in (target * valid)[0].round().to(torch.int64).tolist()]
        if model.with_generator:
            pe = per_example_plausibility(torch.tensor([mask], dtype=torch.float32), target, valid)
            plaus = {"precision": pe["precision"][0], "recall": pe["recall"][0]}
            if plaus["precision"] is None and plaus["recall"] is None:
                plaus = None
    return Explanation(
        modality=feat.modality, label=run.class_names[k], label_index=k,
        probabilities={c: round(float(p), 6) for c, p in zip(run.class_names, probs)},
        mask=mask, selection_prob=[round(float(p), 4) for p in sel_prob], positions=positions,
        selected_fraction=frac, masked_input=masked, run=str(run.run_dir), checkpoint_step=run.step,
        faithfulness=faith, evidence=gt, plausibility=plaus,
        warnings=run.warnings if isinstance(run, ExportedRun) else run_warnings(run.run_dir),
    )


def _fit(t: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L') cut or right-padded with zeros to (B, length): one run may trim texts, the other not."""
    return t[:, :length] if t.shape[1] >= length else torch.nn.functional.pad(t, (0, length - t.shape[1]))


def _posthoc(baseline: LoadedRun, inp: Any, ex: Explanation, steps: int) -> dict[str, Any]:
    """The baseline CLS run's IG top-k selection of the same input, k = the rationale's size."""
    feat, dev = baseline.featurizer, baseline.device
    if isinstance(feat, VisionFeaturizer):
        inputs = _vision_inputs(feat, _image_array(inp), dev)
    else:
        assert isinstance(feat, TextFeaturizer)
        inputs = to_device_inputs(feat.positions(inp)[0], dev)
    length = inputs.selectable.shape[1]
    rationale = _fit(torch.tensor([ex.mask], dtype=torch.float32, device=dev), length)
    k = (rationale * inputs.selectable).sum(1).long()
    res = posthoc(baseline.model, inputs, k, steps=steps)
    n = len(ex.mask)
    mask = _fit(res.mask, n)[0].to(torch.int64).tolist()
    attr = _fit(res.ig.per_position.detach(), n)[0].tolist()
    return {"run_id": baseline.run_dir.name, "method": "integrated_gradients", "mask": mask,
            "attributions": [round(float(a), 6) for a in attr],
            "comprehensiveness": round(float(res.scores.comprehensiveness[0]), 4),
            "sufficiency": round(float(res.scores.sufficiency[0]), 4)}


def explain(run: str | Path | LoadedRun, inp: Any, *, which: str = "best", with_teacher: bool = True,
            baseline: LoadedRun | None = None, ig_steps: int = IG_STEPS, evidence: Any = None) -> Explanation:
    """Explain one image (PIL image or array) or text with a trained run (directory or LoadedRun), or
    an exported model folder (store/hub.py; it explains without a teacher).

    `baseline`, a CLS run on the same data (see faithfulness.baseline_problem), adds `posthoc`:
    its integrated-gradients selection at the rationale's sparsity, with its ERASER scores.
    `evidence`, the input's ground truth (a mask image or array for an image, non-zero = evidence;
    highlighted substrings for a text, a list or one per line), adds `evidence` and `plausibility`
    (the teacher's too, on its own positions). A text is normalised first (`normalise_text`: control
    characters become spaces). ValueError for the wrong kind, a text with nothing to explain, or a
    substring that is not in the text.
    """
    loaded = run if isinstance(run, LoadedRun) else load_run(run, which)
    if isinstance(inp, str) and isinstance(loaded.featurizer, TextFeaturizer):
        inp = normalise_text(inp)
    out = _explain_loaded(loaded, inp, evidence)
    if baseline is not None:
        problem = baseline_problem(loaded.config, loaded.class_names, baseline.config, baseline.class_names)
        if problem:
            raise ValueError(problem)
        out.posthoc = _posthoc(baseline, inp, out, ig_steps)
    teacher_dir = loaded.config.model.teacher_run
    # an exported folder holds the student alone: its stored teacher path is never followed
    if (with_teacher and loaded.mode == "rekd" and teacher_dir and not isinstance(loaded, ExportedRun)
            and Path(teacher_dir).exists()):
        out.teacher = _explain_loaded(load_run(teacher_dir, loaded.config.model.teacher_checkpoint), inp, evidence)
    return out
