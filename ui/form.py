"""The launch form, derived from the config's JSON schema (served by GET /api/config/schema).

Pure logic, no Gradio: which fields the form shows, what each allows (read from the schema,
so a new bound or choice in rekd_core shows up here without a UI change), how a preset's
config fills them, and how the filled form becomes `key=value` overrides for POST /api/runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    path: str  # dotted config path, e.g. "loss.alpha"
    label: str
    task: str | None = None  # shown only for this task ("vision" / "text"); None: always


# The fields a researcher changes between runs; everything else is under "Advanced".
MAIN_FIELDS: tuple[Field, ...] = (
    Field("mode", "mode"),
    Field("data.dataset", "dataset"),
    Field("model.teacher_run", "teacher run (REKD)"),
    Field("model.student.embed_dim", "student width", "vision"),
    Field("model.student.depth", "student depth (blocks)", "vision"),
    Field("model.student.hidden_size", "student width", "text"),
    Field("model.student.num_layers", "student depth (layers)", "text"),
    Field("loss.alpha", "α (RE vs KD weight)"),
    Field("loss.lambda_R", "λ_R (rationale KD)"),
    Field("loss.lambda_select", "λ_select (length penalty)"),
    Field("loss.p_target", "p_target (selected fraction)"),
    Field("schedule.tau0", "τ0 (start)"),
    Field("schedule.tau_final", "τ_final"),
    Field("train.max_steps", "steps"),
    Field("train.epochs", "epochs (if no steps)"),
    Field("train.batch_size", "batch size"),
    Field("train.seed", "seed"),
)
MAIN_PATHS = frozenset(f.path for f in MAIN_FIELDS)


def _deref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = {**schema.get("$defs", {}).get(name, {}), **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _branches(schema: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a node (anyOf / oneOf, e.g. `int | None` or the two backbones), dereferenced."""
    node = _deref(schema, node)
    alts = node.get("anyOf") or node.get("oneOf")
    if not alts:
        return [node]
    return [b for alt in alts for b in _branches(schema, alt)]


def lookup(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The schema of one dotted field, merged over its alternatives; None if no alternative has it."""
    nodes = [schema]
    for part in path.split("."):
        nxt = []
        for node in nodes:
            for branch in _branches(schema, node):
                prop = branch.get("properties", {}).get(part)
                if prop is not None:
                    nxt.append(prop)
        if not nxt:
            return None
        nodes = nxt
    leaf = nodes[0]
    alts = [b for b in _branches(schema, leaf) if b.get("type") != "null"]
    merged: dict[str, Any] = {k: v for k, v in leaf.items() if k not in ("anyOf", "oneOf")}
    for alt in alts:
        for k, v in alt.items():
            merged.setdefault(k, v)
    merged["nullable"] = any(b.get("type") == "null" for b in _branches(schema, leaf))
    return merged


def kind_of(spec: dict[str, Any]) -> str:
    """choice | integer | number | boolean | text: which widget the field needs."""
    if "enum" in spec or "const" in spec:
        return "choice"
    return {"integer": "integer", "number": "number", "boolean": "boolean"}.get(str(spec.get("type")), "text")


def choices_of(spec: dict[str, Any]) -> list[Any]:
    return list(spec.get("enum") or ([spec["const"]] if "const" in spec else []))


def describe(spec: dict[str, Any]) -> str:
    """What a field allows, in words: its description, bounds and default."""
    bits = []
    if spec.get("description"):
        bits.append(str(spec["description"]))
    bounds = []
    for key, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in spec:
            bounds.append(f"{sym} {spec[key]}")
    if bounds:
        bits.append(" and ".join(bounds))
    if choices_of(spec):
        bits.append("one of " + ", ".join(map(str, choices_of(spec))))
    if "default" in spec and spec["default"] is not None:
        bits.append(f"default {spec['default']}")
    return "; ".join(bits)


def info_text(text: str) -> str:
    """A description as Gradio's info line shows it: that line is a mini-Markdown that knows no escapes
    (a backslash would show as one), so a product `a*b` becomes `a·b` and any other `*` the operator
    sign `∗`: no pair of them turns the text between into italics."""
    text = re.sub(r"(?<=[\w)])\*(?=[\w(])", "·", text)
    return text.replace("*", "∗")


def param_name(path: str) -> str:
    """The field's parameter name in the scripting API (/launch_run): its last config key."""
    return path.rsplit(".", 1)[-1]


def get_path(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def format_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def overrides_from(preset_config: dict[str, Any], values: dict[str, Any], task: str | None) -> list[str]:
    """`path=value` for each shown main field whose value differs from the preset's.

    Only changes are sent, so a field the user did not touch keeps the preset's exact value
    (e.g. epochs stay unset when the preset trains by steps).
    """
    out = []
    for f in MAIN_FIELDS:
        if f.path not in values or (f.task is not None and f.task != task):
            continue
        value = values[f.path]
        if value in ("", None) and get_path(preset_config, f.path) is None:
            continue
        if isinstance(value, float) and value.is_integer() and isinstance(get_path(preset_config, f.path), int):
            value = int(value)
        if value == get_path(preset_config, f.path):
            continue
        out.append(f"{f.path}={'null' if value in ('', None) else format_value(value)}")
    return out


def parse_advanced(text: str) -> list[str]:
    """Lines of `key.path=value` (blank lines and # comments skipped); refuses a line without '='."""
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"advanced overrides, line {n}: expected key.path=value, got {line!r}")
        out.append(line)
    return out


def advanced_reference(schema: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(path, type, what it allows) of every leaf field not on the main form: the Advanced help table."""
    rows: list[tuple[str, str, str]] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        props: dict[str, Any] = {}
        for branch in _branches(schema, node):
            for k, v in branch.get("properties", {}).items():
                props.setdefault(k, v)
        for key, sub in props.items():
            path = f"{prefix}{key}"
            if any(b.get("properties") for b in _branches(schema, sub)):
                walk(sub, path + ".")
            elif path not in MAIN_PATHS:
                spec = lookup(schema, path) or {}
                rows.append((path, kind_of(spec), describe(spec)))

    walk(schema, "")
    return rows
