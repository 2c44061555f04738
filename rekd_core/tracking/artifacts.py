"""What a tracker keeps of a finished run besides its scalars: config, results, events, and the
per-example rationales of the latest snapshot as JSON Lines plus a few rendered pictures.

Rendered with numpy and PIL alone: for images a strip per example (the input | the student's
rationale, unselected patches dimmed | the teacher's, for REKD); for texts one HTML page with
each example's selected tokens highlighted (MLflow's artifact view shows HTML)."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..store.examples import list_snapshots, read_inputs, read_snapshot
from ..store.runstore import RunStore

MAX_PICTURES = 8  # rendered examples per run: enough to judge the rationales at a glance
_MIN_SIDE = 112  # small inputs (28 px) are scaled up by whole pixels to at least this
_DIM = 0.25  # brightness of what a rationale leaves out


def rationale_lines(store: RunStore) -> tuple[int | None, list[dict[str, Any]]]:
    """(step, one record per example) of the latest snapshot: label, prediction and mask of the
    student (and teacher), the selected patches or tokens; (None, []) before any snapshot."""
    steps = list_snapshots(store)
    inputs = read_inputs(store)
    if not steps or inputs is None:
        return None, []
    step = steps[-1]
    snap = read_snapshot(store, step)
    names = inputs["class_names"]
    lines = []
    for i, label in enumerate(snap["labels"]):
        line: dict[str, Any] = {"run_id": store.run_id, "step": step, "index": i, "row": inputs["rows"][i],
                                "label": label, "label_name": names[label]}
        for role in ("student", "teacher"):
            side = snap.get(role)
            if not side:
                continue
            rec: dict[str, Any] = {"pred": side["pred"][i], "pred_name": names[side["pred"][i]],
                                   "probs": side["probs"][i]}
            if "mask" in side:
                mask = side["mask"][i]
                rec["mask"] = mask
                if inputs["modality"] == "text":
                    positions = inputs["items"][i]["positions"]
                    rec["rationale_tokens"] = [p["token"] for p in positions
                                               if p["index"] < len(mask) and mask[p["index"]]]
                else:
                    rec["rationale_patches"] = [j for j, m in enumerate(mask) if m]
            line[role] = rec
        if inputs["modality"] == "text":
            line["text"] = inputs["items"][i]["text"]
        lines.append(line)
    return step, lines


def _images(store: RunStore) -> np.ndarray | None:
    """The snapshot's input images as (N, H, W, 3) uint8, or None (a text run, or none saved)."""
    path = store.examples / "inputs.safetensors"
    if not path.exists():
        return None
    from safetensors.numpy import load_file

    images = load_file(str(path))["images"]  # (N, C, H, W) uint8
    images = images.transpose(0, 2, 3, 1)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images[..., :3]


def _overlay(image: np.ndarray, mask: list[int], positions: list[dict[str, Any]]) -> np.ndarray:
    keep = np.full(image.shape[:2], _DIM, dtype=np.float32)
    for pos in positions:
        if pos["index"] < len(mask) and mask[pos["index"]]:
            x0, y0, x1, y1 = pos["box"]
            keep[y0:y1, x0:x1] = 1.0
    return (image.astype(np.float32) * keep[..., None]).round().astype(np.uint8)


def rationale_pictures(store: RunStore, limit: int = MAX_PICTURES) -> list[tuple[str, np.ndarray]]:
    """(caption, HxWx3 uint8 strip) for the first `limit` examples of an image run's latest snapshot:
    input | student rationale | teacher rationale (REKD); [] for a text run or before a snapshot."""
    step, lines = rationale_lines(store)
    images = _images(store)
    inputs = read_inputs(store)
    if step is None or images is None or inputs is None:
        return []
    out = []
    for line, image in zip(lines[:limit], images):
        panels = [image]
        for role in ("student", "teacher"):
            if role in line and "mask" in line[role]:
                panels.append(_overlay(image, line[role]["mask"], inputs["positions"]))
        scale = max(1, -(-_MIN_SIDE // max(image.shape[:2])))
        gap = np.full((image.shape[0], 2, 3), 255, dtype=np.uint8)
        strip = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
        strip = strip.repeat(scale, axis=0).repeat(scale, axis=1)
        caption = f"{line['index']:02d} label {line['label_name']}, student {line['student']['pred_name']}"
        if "teacher" in line:
            caption += f", teacher {line['teacher']['pred_name']}"
        out.append((caption, strip))
    return out


def rationale_html(store: RunStore, limit: int = 50) -> str | None:
    """An HTML page of a text run's latest rationales (selected tokens highlighted), or None."""
    step, lines = rationale_lines(store)
    inputs = read_inputs(store)
    if step is None or inputs is None or inputs["modality"] != "text":
        return None
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(store.run_id)} rationales, step {step}"
             "</title></head><body style='font-family:sans-serif'>",
             f"<h3>{html.escape(store.run_id)}: rationales at step {step}</h3>"]
    for line in lines[:limit]:
        positions = inputs["items"][line["index"]]["positions"]
        for role in ("student", "teacher"):
            rec = line.get(role)
            if not rec:
                continue
            mask = rec.get("mask") or []
            toks = []
            for p in positions:
                tok = html.escape(p["token"])
                chosen = p["index"] < len(mask) and mask[p["index"]]
                toks.append(f"<mark>{tok}</mark>" if chosen else tok)
            parts.append(f"<p><b>#{line['index']} {role}</b>: label {html.escape(line['label_name'])}, "
                         f"prediction {html.escape(rec['pred_name'])}<br>{' '.join(toks)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def rationale_markdown(store: RunStore, limit: int = 8) -> str | None:
    """A text run's latest rationales as Markdown (selected tokens in bold), for TensorBoard's text tab."""
    step, lines = rationale_lines(store)
    inputs = read_inputs(store)
    if step is None or inputs is None or inputs["modality"] != "text":
        return None
    rows = []
    for line in lines[:limit]:
        rec = line.get("student") or {}
        mask = rec.get("mask") or []
        positions = inputs["items"][line["index"]]["positions"]
        toks = [f"**{p['token']}**" if p["index"] < len(mask) and mask[p["index"]] else p["token"]
                for p in positions]
        rows.append(f"{line['index']}. label {line['label_name']}, prediction {rec.get('pred_name')}: "
                    + " ".join(toks))
    return "\n".join(rows)


def write_artifacts(store: RunStore, folder: Path) -> list[Path]:
    """Copy and render the run's artifacts into `folder`; the files written. Kept: config.json,
    status.json, results.json (a completed run), events.jsonl, rationales.jsonl (latest snapshot),
    rationales/NN.png (image runs) or rationales.html (text runs)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("config.json", "status.json", "results.json", "events.jsonl"):
        src = store.root / name
        if src.exists():
            shutil.copyfile(src, folder / name)
            written.append(folder / name)
    _, lines = rationale_lines(store)
    if lines:
        path = folder / "rationales.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        written.append(path)
    pictures = rationale_pictures(store)
    if pictures:
        (folder / "rationales").mkdir(exist_ok=True)
        for caption, strip in pictures:
            path = folder / "rationales" / f"{caption[:2]}.png"
            Image.fromarray(strip).save(path)
            written.append(path)
    page = rationale_html(store)
    if page is not None:
        path = folder / "rationales.html"
        path.write_text(page)
        written.append(path)
    return written
