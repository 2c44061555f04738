"""What `data.dataset` may name: a registry name, or your own data as `kind:target` (folder:,
csv:, jsonl:, hf:; userdata.py reads them). Syntax only, nothing is read: the config checks every
`data.dataset` with it, so it imports neither numpy nor torch."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..excerpts import excerpt
from .registry import DATASETS, Modality

# kind -> modality (hf: either)
KINDS: dict[str, Modality | None] = {"folder": "vision", "csv": "text", "jsonl": "text", "hf": None}
_HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_HF_CONFIG = re.compile(r"[\w.-]+")


class DatasetError(ValueError):
    """User data that cannot be used; the message names the file, row and column at fault."""


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed `kind:target` spec: `target` is an absolute path, or the HF id (with `config`)."""

    kind: str
    target: str
    config: str | None = None

    @property
    def modality(self) -> Modality | None:
        return KINDS[self.kind]

    @property
    def label(self) -> str:
        """A readable name for listings: the folder or file name and the kind."""
        if self.kind == "hf":
            return f"{self.target}{':' + self.config if self.config else ''} (hf)"
        return f"{Path(self.target).name or self.target} ({self.kind})"


def allowed_forms() -> str:
    return (f"a registry name ({', '.join(DATASETS)}), folder:/abs/dir, csv:/abs/file.csv, "
            "jsonl:/abs/file.jsonl or hf:<id>[:<config>]")


def parse_spec(spec: str) -> DatasetSpec | None:
    """The parsed spec, or None for a plain (registry) name; DatasetError if malformed."""
    if ":" not in spec:
        return None
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise DatasetError(f"{excerpt(spec)!r}: unknown kind {excerpt(kind, 20) + ':'!r}; allowed: {allowed_forms()}")
    if kind == "hf":
        ident, _, config = rest.partition(":")
        if not _HF_ID.fullmatch(ident) or (config and not _HF_CONFIG.fullmatch(config)):
            raise DatasetError(f"{excerpt(spec)!r}: expected hf:<id> or hf:<id>:<config> (e.g. hf:imdb, "
                               f"hf:glue:sst2, hf:user/name); allowed: {allowed_forms()}")
        return DatasetSpec("hf", ident, config or None)
    if not rest or "\0" in rest or not os.path.isabs(rest):
        raise DatasetError(f"{excerpt(spec)!r}: {kind}: needs an absolute server-side path ({kind}:/abs/...), "
                           f"got {excerpt(rest)!r}; allowed: {allowed_forms()}")
    return DatasetSpec(kind, os.path.normpath(rest))


def check_spec(spec: str) -> str:
    """Syntax only (no file is read): a registry name or a well-formed user spec."""
    if parse_spec(spec) is None and spec not in DATASETS:
        raise DatasetError(f"unknown dataset {excerpt(spec)!r}; allowed: {allowed_forms()}")
    return spec


def dataset_label(spec: str) -> str:
    """A readable dataset name: registry names as they are, user data as 'name (kind)'."""
    if not isinstance(spec, str):
        return str(spec)
    try:
        parsed = parse_spec(spec)
    except DatasetError:
        return spec
    return spec if parsed is None else parsed.label


def check_task(spec: str, task: str) -> None:
    """Modality must match the task: an image folder cannot train a text model and vice versa."""
    parsed = parse_spec(spec)
    if parsed is None:
        modality = DATASETS[spec].modality if spec in DATASETS else None
    else:
        modality = parsed.modality
    if modality is not None and modality != task:
        what = "images" if modality == "vision" else "texts"
        raise DatasetError(f"data.dataset {excerpt(spec)!r} holds {what} ({modality}) but task is {task!r}: "
                           f"use a {'folder:' if task == 'vision' else 'csv:/jsonl:'} dataset for a {task} task")
