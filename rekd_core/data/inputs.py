"""What counts as an input to explain: an image as a uint8 array, a text as UTF-8 without stray
control characters. One rule for the CLI, the API, analysis/explain.py and exported models
(store/hub.py), so it lives below all of them."""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np


def image_array(image: Any) -> np.ndarray:
    """A PIL image or array as uint8 (H, W) or (H, W, C)."""
    if hasattr(image, "convert"):  # PIL, without importing it here
        if image.mode not in ("L", "RGB"):
            # palette indices, 16-bit and alpha modes become plain gray or RGB pixel values
            image = image.convert("L" if image.mode in ("1", "I", "I;16", "F", "LA") else "RGB")
        arr = np.asarray(image)
    else:
        arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        arr = arr * 255.0 if arr.size and arr.max() <= 1.0 else arr
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # drop alpha
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"an image must be 2-D (gray) or 3-D (color), got shape {arr.shape}")
    return arr



# --- text normalisation: what counts as a text (the API and the CLI apply the same rule) -------
_KEPT_CONTROLS = frozenset("\t\n\r")


def decode_utf8(data: bytes, what: str = "the text") -> str:
    """`data` as UTF-8; ValueError naming the first invalid byte's offset (never a silent Latin-1)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} is not valid UTF-8: byte {err.start} (counting from 0) is 0x{data[err.start]:02x}; "
                         "send or save the text as UTF-8") from None


def controls_to_spaces(text: str) -> str:
    return "".join(" " if unicodedata.category(c) == "Cc" and c not in _KEPT_CONTROLS else c for c in text)


def normalise_text(text: str, what: str = "the text") -> str:
    """The text as it is explained. The rule: every control character (Unicode category Cc: NUL,
    the other C0 controls, DEL and the C1 controls) except tab, newline and carriage return becomes
    a space, so the character offsets of `positions` stay those of the text given. ValueError for
    a lone surrogate (not text: what invalid UTF-8 becomes in a command-line argument), and for a
    text with nothing left to explain (empty, or only whitespace and control characters)."""
    for i, c in enumerate(text):
        if unicodedata.category(c) == "Cs":
            raise ValueError(f"{what} is not valid text: character {i} is a lone surrogate (U+{ord(c):04X}; "
                             "invalid UTF-8 in a command-line argument arrives as one); give it as UTF-8")
    clean = controls_to_spaces(text)
    if not clean.strip():
        if not text.strip():
            raise ValueError(f"{what} is empty")
        raise ValueError(f"{what} has nothing to explain: it holds only control characters and whitespace "
                         "(control characters other than tab, newline and carriage return count as spaces)")
    return clean
