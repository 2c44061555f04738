"""Bring your own data: a folder of images, a CSV or JSONL of texts, or a Hugging Face dataset.

`data.dataset` takes a registry name (rekd_core.data.registry.DATASETS) or one of these specs (their
syntax is checked by spec.py, before anything is read; this module reads them):

  folder:/abs/dir            one sub-folder per class holding its images (png, jpg/jpeg, bmp,
                             gif, webp); or train/ (and optional dev/, test/) each holding the
                             class folders: an official split. Images are decoded with Pillow
                             (first frame of a GIF), converted to the student's channels
                             (in_chans 1: gray as the mean of R, G, B; 3: RGB) and resized to
                             img_size x img_size *without* keeping the aspect ratio (stretched,
                             not cropped or padded): the same thing `explain` does to an
                             uploaded image, so training and explanation see images alike.
                             A mask beside an image (`x.png` + `x.mask.png`, any image suffix)
                             is its ground-truth rationale: non-zero pixels are evidence.
  csv:/abs/file.csv          a header row, then one text per row: `text_column` and
  jsonl:/abs/file.jsonl      `label_column` (defaults "text" and "label"); one JSON object a line.
                             An optional `split_column` (default "split", used only when the
                             file has it) holds train / dev (or validation) / test.
                             An optional `rationale_column` (default "rationale") holds the
                             ground-truth rationale: [[start, end], ...] character spans,
                             ["substring", ...], or one substring (empty: not annotated).
  hf:<id>[:<config>]         a Hugging Face dataset through the optional `datasets` library
                             (pip install 'rekd[hf]'); HF_DATASETS_OFFLINE=1 reads only its cache.
                             Texts from `text_column`, images from `image_column` (default "image").

Labels may be strings or integers. Class names are the distinct labels as strings, sorted
(numerically when every label is an integer, so 0..K-1 keep their index as their class).
Without an official test split 10 % is carved out (stratified, fixed seed) as for the registry;
dev is carved from train unless given.

Everything that can be wrong with a file is a `DatasetError` (a ValueError) whose message names
the file, and for tables the row (and line) and the column: the API and the CLI check a dataset
before a run is queued, so a typo is a message, not a failed run an hour later.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config import ExperimentConfig
from ..excerpts import excerpt
from .raw import Raw, RawEvidence, freeze, text_array
from .registry import Modality
from .spec import DatasetError, DatasetSpec

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")  # the only Pillow parsers that see the bytes
# Same default as the API's `max_image_pixels`: larger images are refused (decompression bombs).
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_TABLE_BYTES = 1 << 30  # a CSV/JSONL is read into memory whole
SPLIT_NAMES = {"train": "train", "dev": "dev", "validation": "dev", "val": "dev", "valid": "dev", "test": "test"}
# Files the OS or a file manager drops into folders: not images, not the user's mistake.
_JUNK = {"thumbs.db", "desktop.ini"}
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class LoadOptions:
    """How to read user data: columns, and the student's image size and channels."""

    text_column: str = "text"
    label_column: str = "label"
    split_column: str | None = "split"
    image_column: str = "image"
    rationale_column: str | None = "rationale"  # csv/jsonl: ground-truth rationales, used when present
    image_size: int = 224
    in_chans: int = 3
    task: str | None = None  # hf: which columns to read (None: text if the text column exists)


def options_for(cfg: ExperimentConfig) -> LoadOptions:
    d = cfg.data
    student = cfg.model.student
    return LoadOptions(text_column=d.text_column, label_column=d.label_column, split_column=d.split_column,
                       image_column=d.image_column, rationale_column=d.rationale_column,
                       image_size=getattr(student, "img_size", 224),
                       in_chans=getattr(student, "in_chans", 3), task=cfg.task)


# ----------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class UserRaw:
    raw: Raw
    modality: Modality
    label: str


def load_user_raw(spec: DatasetSpec, options: LoadOptions, root: str | None = None) -> UserRaw:
    """Read and check the whole dataset (cached while the files are unchanged)."""
    if spec.kind == "hf":
        return _cached_hf(spec, options, root)
    path = Path(spec.target)
    try:
        _check_exists(path, folder=spec.kind == "folder")
        if spec.kind == "folder":
            # the layout first: a wrong folder (even folder:/) fails on its first odd entry, cheaply
            layout = _scan_layout(path)
            return _cached_files(spec, _file_options(spec, options), _fingerprint(path, layout))
        return _cached_files(spec, _file_options(spec, options), _fingerprint(path, None))
    except OSError as err:  # permissions, a file vanishing mid-read: the user's to fix, named
        raise DatasetError(f"{excerpt(err.filename or path)}: cannot be read ({excerpt(err.strerror or err)})") \
            from None


def _file_options(spec: DatasetSpec, o: LoadOptions) -> LoadOptions:
    # Only what a kind reads goes into the cache key: a text file's rows do not depend on image size.
    if spec.kind == "folder":
        return LoadOptions(image_size=o.image_size, in_chans=o.in_chans, text_column="", label_column="",
                           split_column=None, image_column="", rationale_column=None)
    return LoadOptions(text_column=o.text_column, label_column=o.label_column, split_column=o.split_column,
                       rationale_column=o.rationale_column, image_column="", image_size=0, in_chans=0)


def _check_exists(path: Path, *, folder: bool) -> None:
    shown = excerpt(path)
    if not path.exists():
        raise DatasetError(f"{shown}: no such {'folder' if folder else 'file'} on the server")
    if folder and not path.is_dir():
        raise DatasetError(f"{shown}: not a folder (folder: needs a directory holding one sub-folder per class)")
    if not folder and not path.is_file():
        raise DatasetError(f"{shown}: not a regular file")


class ClassFiles(NamedTuple):
    name: str
    images: list[Path]
    masks: list[Path | None]  # each image's ground-truth mask, if it has one


Layout = dict[str, list[ClassFiles]]  # split -> its class folders


def _fingerprint(path: Path, layout: Layout | None) -> str:
    """Changes when any file read changes (names, sizes, mtimes): the cache never serves stale data."""
    h = hashlib.sha256()
    files = [path] if layout is None else [f for classes in layout.values() for c in classes
                                           for f in [*c.images, *(m for m in c.masks if m is not None)]]
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=2)
def _cached_files(spec: DatasetSpec, options: LoadOptions, fingerprint: str) -> UserRaw:
    start = time.perf_counter()
    if spec.kind == "folder":
        out = _load_folder(Path(spec.target), options)
    else:
        records = _read_csv(Path(spec.target), options) if spec.kind == "csv" else _read_jsonl(Path(spec.target),
                                                                                             options)
        out = UserRaw(_text_raw(records, spec.target, options), "text", spec.label)
    _freeze_raw(out.raw)
    logger.info("Read %s in %.2fs", spec.label, time.perf_counter() - start)
    return out


def _freeze_raw(raw: Raw) -> None:
    freeze(raw.train_x, raw.train_y, raw.test_x, raw.test_y, raw.dev_x, raw.dev_y)
    for ev in (raw.train_evidence, raw.test_evidence, raw.dev_evidence):
        if ev is not None:
            freeze(ev.known, ev.pixels, ev.spans)


def check_split_sizes(label: str, sizes: dict[str, int]) -> None:
    if min(sizes.values()) == 0:
        raise DatasetError(f"{label}: too few examples ({sum(sizes.values())} in all): train/dev/test would hold "
                           f"{sizes['train']}/{sizes['dev']}/{sizes['test']}; each split needs at least one "
                           "(add examples, or give a larger data.dev_fraction or an explicit split)")


# ----------------------------------------------------------------------------------- images


def _is_mask(p: Path) -> bool:
    # `x.mask.png` beside `x.jpg` is the ground truth of that image, not an image of the class
    return Path(p.stem).suffix.lower() == ".mask"


def _scan_classes(folder: Path, root: Path, *, min_classes: int) -> list[ClassFiles]:
    """The class folders of a folder (their images, and each image's mask); refuses anything else."""
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    visible = [p for p in entries if not p.name.startswith(".") and p.name.lower() not in _JUNK]
    loose = [p for p in visible if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise DatasetError(f"{loose[0]}: an image directly in {folder}; put each image in the sub-folder of its "
                           "class (e.g. cat/, dog/)")
    classes = [p for p in visible if p.is_dir()]
    if len(classes) < min_classes:
        found = ", ".join(p.name for p in classes) or "none"
        raise DatasetError(f"{folder}: found {len(classes)} class folder(s) ({found}); need at least {min_classes} "
                           "sub-folders, one per class, each holding that class's images")
    out = []
    for cls in classes:
        files: list[Path] = []
        masks: list[Path] = []
        for p in sorted(cls.iterdir(), key=lambda p: p.name):
            if p.name.startswith(".") or p.name.lower() in _JUNK:
                continue
            if p.is_dir():
                raise DatasetError(f"{p}: a folder inside class folder {cls.relative_to(root)}; images of a class "
                                   f"must sit directly in {cls.relative_to(root)}/ (nested too deep)")
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise DatasetError(f"{p}: not an image file (allowed: {', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
            (masks if _is_mask(p) else files).append(p)
        paired = _pair_masks(cls, files, masks)
        if not files:
            raise DatasetError(f"{cls}: class folder {cls.name!r} holds no images")
        out.append(ClassFiles(cls.name, files, paired))
    return out


def _pair_masks(cls: Path, images: list[Path], masks: list[Path]) -> list[Path | None]:
    """Each image's mask (same stem plus `.mask`), or None; a mask that fits no single image is refused."""
    by_stem: dict[str, list[Path]] = {}
    for f in images:
        by_stem.setdefault(f.stem, []).append(f)
    owner_of: dict[Path, Path] = {}
    for m in masks:
        stem = Path(m.stem).stem  # "x.mask.png" -> "x"
        owners = by_stem.get(stem, [])
        if not owners:
            raise DatasetError(f"{m}: a mask without its image: no {stem}.png (or .jpg, ...) in {cls}; a mask "
                               f"sits beside its image and is named like it plus .mask (e.g. {stem}.mask.png)")
        if len(owners) > 1:
            raise DatasetError(f"{m}: this mask fits {len(owners)} images ({', '.join(o.name for o in owners)}); "
                               "give the images different names")
        if owners[0] in owner_of:
            raise DatasetError(f"{m}: {owners[0].name} already has a mask ({owner_of[owners[0]].name}); "
                               "keep one mask per image")
        owner_of[owners[0]] = m
    return [owner_of.get(f) for f in images]


def _scan_layout(root: Path) -> Layout:
    subdirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "train" in subdirs and subdirs <= {"train", "dev", "test"}:
        return {s: _scan_classes(root / s, root, min_classes=2 if s == "train" else 1)
                for s in ("train", "dev", "test") if s in subdirs}
    return {"train": _scan_classes(root, root, min_classes=2)}


def _load_folder(root: Path, o: LoadOptions) -> UserRaw:
    if o.in_chans not in (1, 3):
        raise DatasetError(f"{root}: images become 1 (gray) or 3 (RGB) channels; model.student.in_chans is "
                           f"{o.in_chans}")
    layout = _scan_layout(root)
    class_names = [c.name for c in layout["train"]]
    index = {c: i for i, c in enumerate(class_names)}
    # with any mask at all every split carries evidence (unmasked images: not known), else none does
    any_mask = any(m is not None for classes in layout.values() for c in classes for m in c.masks)
    arrays: dict[str, Any] = {}
    for split, classes in layout.items():
        files, masks, labels = [], [], []
        for c in classes:
            if c.name not in index:
                raise DatasetError(f"{root / split / c.name}: class {c.name!r} is not among the train classes "
                                   f"({', '.join(class_names)})")
            files += c.images
            masks += c.masks
            labels += [index[c.name]] * len(c.images)
        x = np.empty((len(files), o.in_chans, o.image_size, o.image_size), dtype=np.uint8)
        shapes = []
        for i, f in enumerate(files):
            shape, x[i] = _decode_file(f, o.image_size, o.in_chans)
            shapes.append(shape)
        ids = np.empty(len(files), dtype=object)
        ids[:] = [str(f.relative_to(root)) for f in files]
        evidence = _mask_evidence(files, masks, shapes, o.image_size) if any_mask else None
        arrays[split] = (x, np.asarray(labels, dtype=np.int64), ids, evidence)
    tr = arrays["train"]
    te = arrays.get("test", (None, None, None, None))
    dv = arrays.get("dev", (None, None, None, None))
    raw = Raw(tuple(class_names), tr[0], tr[1], te[0], te[1], dv[0], dv[1], tr[2], te[2], dv[2],
              train_evidence=tr[3], test_evidence=te[3], dev_evidence=dv[3])
    return UserRaw(raw, "vision", DatasetSpec("folder", str(root)).label)


def _mask_evidence(files: list[Path], masks: list[Path | None], shapes: list[tuple[int, int]],
                   size: int) -> RawEvidence:
    known = np.asarray([m is not None for m in masks], dtype=bool)
    pixels = np.zeros((len(files), size, size), dtype=np.uint8)
    for i, (f, m, shape) in enumerate(zip(files, masks, shapes)):
        if m is not None:
            pixels[i] = _read_image(m, functools.partial(mask_array, size=size, where=str(m), image_name=f.name,
                                                         image_shape=shape))
    return RawEvidence(known, pixels=pixels)


_T = TypeVar("_T")


def _read_image(path: Path, read: Callable[[Any], _T]) -> _T:
    """read(the opened image); a file Pillow cannot decode is a DatasetError naming it."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            return read(img)
    except DatasetError:
        raise
    except Image.DecompressionBombError:
        raise DatasetError(f"{path}: image too large (over {MAX_IMAGE_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise DatasetError(f"{path}: not a PNG, JPEG, GIF, BMP or WEBP image (or its header is corrupt)") from None
    except OSError as err:
        raise DatasetError(f"{path}: unreadable or corrupt image ({err})") from None
    except Exception as err:  # decoders of damaged files raise SyntaxError, struct.error, ValueError...
        raise DatasetError(f"{path}: corrupt image ({type(err).__name__}: {err})") from None


def _decode_file(path: Path, size: int, chans: int) -> tuple[tuple[int, int], np.ndarray]:
    """(the file's own width and height, the image as image_array makes it)."""
    def read(img: Any) -> tuple[tuple[int, int], np.ndarray]:
        shape = img.size  # before image_array's JPEG draft shrinks it
        return shape, image_array(img, size, chans, str(path))

    return _read_image(path, read)


def mask_array(img: Any, size: int, where: str, image_name: str, image_shape: tuple[int, int]) -> np.ndarray:
    """A PIL mask as uint8 (size, size), 1 = evidence (any non-zero colour; alpha ignored): stretched
    as its image is, nearest-neighbour so it stays binary."""
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise DatasetError(f"{where}: {img.width}x{img.height} mask is over the {MAX_IMAGE_PIXELS}-pixel limit")
    w, h = image_shape
    # the same size as the image, or the same shape scaled (a mask drawn at a lower resolution)
    if abs(img.width * h - img.height * w) > max(w, h):
        raise DatasetError(f"{where}: the mask is {img.width}x{img.height} but its image {image_name} is {w}x{h}; "
                           "a mask must cover its image (the same size, or the same shape scaled)")
    img.load()
    if img.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
        paint = np.asarray(img) > 0
    else:
        paint = np.asarray(img.convert("RGB")).max(axis=2) > 0
    small = Image.fromarray(paint.astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(small, dtype=np.uint8)


def image_array(img: Any, size: int, chans: int, where: str) -> np.ndarray:
    """A PIL image as uint8 (chans, size, size): the student's channels, stretched to a square."""
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise DatasetError(f"{where}: {img.width}x{img.height} image is over the {MAX_IMAGE_PIXELS}-pixel limit")
    if img.format == "JPEG":
        img.draft("L" if chans == 1 else "RGB", (size, size))  # decode at a reduced scale: much faster
    img.load()
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        wide = np.asarray(img, dtype=np.float32)
        scale = 257.0 if img.mode.startswith("I") and wide.max(initial=0) > 255 else 1.0
        img = Image.fromarray(np.clip(wide / scale, 0, 255).astype(np.uint8), mode="L")
    elif img.mode not in ("L", "RGB"):
        gray = img.mode in ("1", "LA", "La")
        img = img.convert("L" if gray else "RGBA" if img.mode in ("P", "PA") else "RGB")
        if img.mode == "RGBA":
            img = img.convert("RGB")
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    if arr.shape[0] == chans:
        return arr
    if chans == 1:  # the featurizer's own RGB -> gray: the mean of the channels
        return np.rint(arr.astype(np.float32).mean(0, keepdims=True)).astype(np.uint8)
    return np.repeat(arr, chans, axis=0)


# ----------------------------------------------------------------------------------- texts


@dataclass(frozen=True)
class _Record:
    where: str  # "row 3 (line 4)", for messages
    text: str
    label: str | int
    split: str | None
    spans: tuple[tuple[int, int], ...] | None = None  # the ground-truth rationale; None: not annotated


def _read_utf8(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise DatasetError(f"{path}: {size} bytes; at most {MAX_TABLE_BYTES} are read")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DatasetError(f"{path}: not UTF-8 at byte offset {err.start} (line {line}: "
                           f"{data[err.start:err.start + 4]!r}); save the file as UTF-8") from None
    return text.removeprefix("\ufeff")


def _text_value(value: Any, where: str, column: str, path: Path) -> str:
    if not isinstance(value, str):
        raise DatasetError(f"{path}: {where}, column {column!r}: the text must be a string, got "
                           f"{type(value).__name__} {value!r:.40}")
    if not value.strip():
        raise DatasetError(f"{path}: {where}, column {column!r}: the text is empty")
    return value


def _label_value(value: Any, where: str, column: str, path: Path) -> str | int:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DatasetError(f"{path}: {where}, column {column!r}: the label is empty")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DatasetError(f"{path}: {where}, column {column!r}: a label must be a string or an integer, got "
                           f"{type(value).__name__} {value!r:.40}")
    return value.strip() if isinstance(value, str) else value


def _split_value(value: Any, where: str, column: str, path: Path) -> str:
    key = str(value).strip().lower() if value is not None else ""
    if key not in SPLIT_NAMES:
        raise DatasetError(f"{path}: {where}, column {column!r}: split must be train, dev (or validation) or test, "
                           f"got {value!r:.40}")
    return SPLIT_NAMES[key]


_RATIONALE_FORMS = '[[start, end], ...] character spans, ["substring", ...] or one substring'


def _rationale_value(value: Any, text: str, where: str, column: str, path: Path) -> tuple[tuple[int, int], ...] | None:
    """The [start, end) character spans a rationale cell marks in `text`; None: not annotated.

    CSV cells (and JSONL strings) that start with "[" are read as JSON; any other string is one
    substring. Substrings are found by their first, case-sensitive occurrence."""
    at = f"{path}: {where}, column {column!r}"
    if value is None:
        return None
    if isinstance(value, str):
        plain = value.strip()
        if not plain:
            return None
        if not plain.startswith("["):
            return (_locate(plain, text, at),)
        try:
            value = json.loads(plain)
        except json.JSONDecodeError as err:
            if plain in text:  # a substring that happens to start with "["
                return (_locate(plain, text, at),)
            raise DatasetError(f"{at}: not a JSON array ({err.msg} at column {err.colno}); expected "
                               f"{_RATIONALE_FORMS}") from None
    if not isinstance(value, list):
        raise DatasetError(f"{at}: expected {_RATIONALE_FORMS}, got {type(value).__name__} {value!r:.40}")
    if not value:
        return None
    if all(isinstance(v, str) for v in value):
        return tuple(_locate(v, text, at) for v in value)
    return tuple(_span(v, len(text), at) for v in value)


def _locate(sub: str, text: str, at: str) -> tuple[int, int]:
    if not sub:
        raise DatasetError(f"{at}: an empty substring marks nothing; remove it")
    start = text.find(sub)
    if start < 0:
        raise DatasetError(f"{at}: {sub!r:.60} is not in the text (substrings are matched exactly, "
                           "case-sensitive)")
    return start, start + len(sub)


def _span(pair: Any, n: int, at: str) -> tuple[int, int]:
    ints = isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                             for v in pair)
    if not ints:
        raise DatasetError(f"{at}: {pair!r:.40} is not a [start, end] pair of integers; expected "
                           f"{_RATIONALE_FORMS} (not mixed)")
    start, end = pair
    if start >= end:
        raise DatasetError(f"{at}: span [{start}, {end}] is reversed or empty; start must be below end")
    if start < 0 or end > n:
        raise DatasetError(f"{at}: span [{start}, {end}] is out of range: the text has {n} characters "
                           "(spans count characters from 0, end excluded)")
    return start, end


def _missing_column(path: Path, column: str, option: str, found: Iterable[str], where: str = "") -> DatasetError:
    # a short, bounded excerpt of the header: a few names, each cut short (a file that is no table,
    # its first line read as a header, is never echoed whole)
    names = list(found)
    cols = ", ".join(repr(excerpt(c, 30)) for c in names[:8]) or "none"
    if len(names) > 8:
        cols += f" and {len(names) - 8} more"
    return DatasetError(f"{excerpt(path)}: {where + ': ' if where else ''}no column {excerpt(column, 40)!r} "
                        f"(data.{option}); columns found: {cols}")


def _read_csv(path: Path, o: LoadOptions) -> list[_Record]:
    text = _read_utf8(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DatasetError(f"{path}: the file is empty (expected a header row naming the columns)") from None
    except csv.Error as err:
        raise DatasetError(f"{path}: line 1: not valid CSV ({err})") from None
    for col, opt in ((o.text_column, "text_column"), (o.label_column, "label_column")):
        if col not in header:
            raise _missing_column(path, col, opt, header)
    ti, li = header.index(o.text_column), header.index(o.label_column)
    si = header.index(o.split_column) if o.split_column and o.split_column in header else None
    ri = header.index(o.rationale_column) if o.rationale_column and o.rationale_column in header else None
    out, row, prev = [], 0, reader.line_num
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise DatasetError(f"{path}: line {reader.line_num}: not valid CSV ({err})") from None
        line, prev = prev + 1, reader.line_num
        if not fields:
            continue  # a blank line
        row += 1
        where = f"row {row} (line {line})"
        if len(fields) != len(header):
            raise DatasetError(f"{path}: {where}: {len(fields)} fields, but the header has {len(header)} "
                               f"({', '.join(header)}); quote texts that contain commas")
        text = _text_value(fields[ti], where, o.text_column, path)
        out.append(_Record(where, text, _label_value(fields[li], where, o.label_column, path),
                           None if si is None else _split_value(fields[si], where, o.split_column or "", path),
                           None if ri is None else _rationale_value(fields[ri], text, where, o.rationale_column or "",
                                                                    path)))
    return out


def _read_jsonl(path: Path, o: LoadOptions) -> list[_Record]:
    text = _read_utf8(path)
    out: list[_Record] = []
    uses_split = None
    row = 0
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}: line {n} is not JSON ({err.msg} at column {err.colno})") from None
        row += 1
        where = f"row {row} (line {n})"
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}: {where}: expected a JSON object like "
                               f'{{"{o.text_column}": ..., "{o.label_column}": ...}}, got {type(obj).__name__}')
        for col, opt in ((o.text_column, "text_column"), (o.label_column, "label_column")):
            if col not in obj:
                raise _missing_column(path, col, opt, obj, where)
        if uses_split is None:  # the first row decides whether the file carries a split column
            uses_split = bool(o.split_column and o.split_column in obj)
        split = None
        if uses_split:
            if o.split_column not in obj:
                raise _missing_column(path, o.split_column or "", "split_column", obj, where)
            split = _split_value(obj[o.split_column], where, o.split_column or "", path)
        text = _text_value(obj[o.text_column], where, o.text_column, path)
        # a row without the rationale column is simply not annotated
        spans = (_rationale_value(obj[o.rationale_column], text, where, o.rationale_column, path)
                 if o.rationale_column and o.rationale_column in obj else None)
        out.append(_Record(where, text, _label_value(obj[o.label_column], where, o.label_column, path), split,
                           spans))
    return out


def class_index(labels: list[str | int], where: str, column: str,
                names: list[str] | None = None) -> tuple[list[str], list[int]]:
    """(class names, each label's index): ints sorted numerically, anything else as sorted strings."""
    if names is not None:  # a dataset that names its classes (HF ClassLabel): labels are indices
        return names, [int(v) for v in labels]
    as_int = all(isinstance(v, int) or _INT.fullmatch(str(v)) for v in labels)
    if as_int:
        return _index([int(v) for v in labels], where, column)
    return _index([str(v) for v in labels], where, column)


_Key = TypeVar("_Key", int, str)


def _index(keys: list[_Key], where: str, column: str) -> tuple[list[str], list[int]]:
    distinct = sorted(set(keys))
    if len(distinct) < 2:
        found = ", ".join(repr(str(d)) for d in distinct) or "none"
        raise DatasetError(f"{where}: column {column!r} has {len(distinct)} distinct label(s) ({found}); "
                           "a classifier needs at least 2 classes")
    pos = {k: i for i, k in enumerate(distinct)}
    return [str(d) for d in distinct], [pos[k] for k in keys]


def _text_raw(records: list[_Record], where: str, o: LoadOptions,
              names: list[str] | None = None) -> Raw:
    if not records:
        raise DatasetError(f"{where}: no rows")
    class_names, y = class_index([r.label for r in records], where, o.label_column, names)
    by_split: dict[str, list[int]] = {"train": [], "dev": [], "test": []}
    for i, r in enumerate(records):
        by_split[r.split or "train"].append(i)
    if not by_split["train"]:
        raise DatasetError(f"{where}: column {o.split_column!r} marks no row as train")
    annotated = any(r.spans is not None for r in records)
    parts: dict[str, tuple[Any, Any, Any, Any]] = {}
    for split, idx in by_split.items():
        if split != "train" and not idx:
            parts[split] = (None, None, None, None)
            continue
        ids = np.empty(len(idx), dtype=object)
        ids[:] = [records[i].where for i in idx]
        parts[split] = (text_array([records[i].text for i in idx]), np.asarray([y[i] for i in idx], dtype=np.int64),
                        ids, _span_evidence([records[i] for i in idx]) if annotated else None)
    tr, te, dv = parts["train"], parts["test"], parts["dev"]
    return Raw(tuple(class_names), tr[0], tr[1], te[0], te[1], dv[0], dv[1], tr[2], te[2], dv[2],
               train_evidence=tr[3], test_evidence=te[3], dev_evidence=dv[3])


def _span_evidence(records: list[_Record]) -> RawEvidence:
    spans = np.empty(len(records), dtype=object)
    for i, r in enumerate(records):  # one by one: numpy would broadcast a list of lists into a 3-d array
        spans[i] = list(r.spans or ())
    return RawEvidence(np.asarray([r.spans is not None for r in records], dtype=bool), spans=spans)


# ----------------------------------------------------------------------------------- Hugging Face


@functools.lru_cache(maxsize=2)
def _cached_hf(spec: DatasetSpec, options: LoadOptions, root: str | None) -> UserRaw:
    try:
        import datasets as hf  # optional: pip install 'rekd[hf]'
    except ImportError:
        raise DatasetError(f"hf:{spec.target}: the Hugging Face 'datasets' library is not installed; "
                           "install it with: pip install 'rekd[hf]'  (or: pip install datasets)") from None
    try:
        ds = hf.load_dataset(spec.target, spec.config, cache_dir=root)
    except Exception as err:  # offline misses, unknown ids, auth errors: many types across versions
        offline = os.environ.get("HF_DATASETS_OFFLINE", "") in ("1", "true", "TRUE", "yes")
        hint = ("HF_DATASETS_OFFLINE is set, so only the local cache was read: load it once where there is "
                "a network" if offline else "check the id and config, and the network (or set "
                "HF_DATASETS_OFFLINE=1 to read only a local cache)")
        raise DatasetError(f"hf:{spec.target}{':' + spec.config if spec.config else ''}: could not load it "
                           f"({type(err).__name__}: {str(err)[:300]}); {hint}") from None
    out = from_hf(ds, spec, options)
    _freeze_raw(out.raw)
    return out


def from_hf(ds: Any, spec: DatasetSpec, o: LoadOptions) -> UserRaw:
    """A loaded Hugging Face DatasetDict (or any mapping split -> columns) as raw splits.

    Splits: train; validation / dev / valid as dev; test (dropped when unlabelled, label -1,
    as GLUE's test sets are: then test is carved from train).
    """
    name = f"hf:{spec.target}{':' + spec.config if spec.config else ''}"
    splits = {SPLIT_NAMES[k.lower()]: ds[k] for k in ds.keys() if k.lower() in SPLIT_NAMES}
    if "train" not in splits:
        raise DatasetError(f"{name}: no train split (splits found: {', '.join(map(str, ds.keys()))})")
    first = splits["train"]
    columns = list(getattr(first, "column_names", None) or first.keys())
    vision = o.task == "vision" if o.task else (o.text_column not in columns and o.image_column in columns)
    col, opt = (o.image_column, "image_column") if vision else (o.text_column, "text_column")
    for c, op in ((col, opt), (o.label_column, "label_column")):
        if c not in columns:
            raise _missing_column(Path(name), c, op, columns, "split 'train'")
    feature = (getattr(first, "features", None) or {}).get(o.label_column)
    feature_names = getattr(feature, "names", None)
    names = list(feature_names) if feature_names else None
    if vision:
        return _hf_images(splits, spec, o, names)
    records: list[_Record] = []
    for split, part in splits.items():
        labels, texts = list(part[o.label_column]), list(part[o.text_column])
        if split == "test" and labels and all(v == -1 for v in labels):
            continue
        for i, (t, v) in enumerate(zip(texts, labels), 1):
            where = f"split {split!r} row {i}"
            if names is not None and not (isinstance(v, int) and 0 <= v < len(names)):
                raise DatasetError(f"{name}: {where}, column {o.label_column!r}: label {v!r} is not one of the "
                                   f"{len(names)} classes")
            records.append(_Record(where, _text_value(t, where, o.text_column, Path(name)),
                                   _label_value(v, where, o.label_column, Path(name)), split))
    return UserRaw(_text_raw(records, name, o, names), "text", spec.label)


def _hf_images(splits: dict[str, Any], spec: DatasetSpec, o: LoadOptions, names: list[str] | None) -> UserRaw:
    name = f"hf:{spec.target}{':' + spec.config if spec.config else ''}"
    labels_all = {s: list(p[o.label_column]) for s, p in splits.items()}
    if "test" in labels_all and all(v == -1 for v in labels_all["test"]):
        del labels_all["test"]
    flat = [v for s in labels_all for v in labels_all[s]]
    for s, ls in labels_all.items():
        for i, v in enumerate(ls, 1):
            _label_value(v, f"split {s!r} row {i}", o.label_column, Path(name))
    class_names, y = class_index(flat, name, o.label_column, names)
    parts: dict[str, tuple[Any, Any, Any]] = {"test": (None, None, None), "dev": (None, None, None)}
    k = 0
    for s, ls in labels_all.items():
        images = splits[s][o.image_column]
        x = np.empty((len(ls), o.in_chans, o.image_size, o.image_size), dtype=np.uint8)
        for i, img in enumerate(images):
            where = f"{name}: split {s!r} row {i + 1}, column {o.image_column!r}"
            if isinstance(img, dict) and img.get("bytes"):  # undecoded Image feature
                img = Image.open(io.BytesIO(img["bytes"]), formats=IMAGE_FORMATS)
            if not hasattr(img, "convert"):
                raise DatasetError(f"{where}: not an image ({type(img).__name__})")
            x[i] = image_array(img, o.image_size, o.in_chans, where)
        ids = np.empty(len(ls), dtype=object)
        ids[:] = [f"{s} row {i + 1}" for i in range(len(ls))]
        parts[s] = (x, np.asarray(y[k:k + len(ls)], dtype=np.int64), ids)
        k += len(ls)
    tr, te, dv = parts["train"], parts["test"], parts["dev"]
    raw = Raw(tuple(class_names), tr[0], tr[1], te[0], te[1], dv[0], dv[1], tr[2], te[2], dv[2])
    return UserRaw(raw, "vision", spec.label)
