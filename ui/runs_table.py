"""The run table and the run pickers, from GET /api/runs (pure: no HTTP, no Gradio)."""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from typing import Any, Literal

from .charts import run_label
from .render import esc

HEADERS = ["run", "state", "progress", "τ", "dev %", "test %", "started", "took", "id"]
# the state column is HTML (escaped here): a run with warnings gets a ⚠ that names them on hover; the id
# column too: one line cut with an ellipsis (the run column already ends in the id's suffix), whole on hover
DATATYPES: list[Literal["str", "html"]] = ["html" if h in ("state", "progress", "id") else "str" for h in HEADERS]
ID_COLUMN = HEADERS.index("id")
# the widths that keep every cell on one line in the ~800 px the table gets beside the form at 1400 px
COLUMN_WIDTHS: list[str | int] = ["20%", "12%", "12%", "4%", "9%", "9%", "12%", "8%", "14%"]
ACTIVE = ("queued", "running")


def _when(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(run: dict[str, Any], now: datetime | None = None) -> str:
    start = _when(run.get("started"))
    if start is None:
        return "–"
    end = _when(run.get("finished")) or now or datetime.now(timezone.utc)
    secs = max(int((end - start).total_seconds()), 0)
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m" if secs >= 3600 else f"{secs // 60}m{secs % 60:02d}s"


def progress_bar(fraction: float, width: int = 10) -> str:
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    return "█" * filled + "░" * (width - filled) + f" {100 * fraction:.0f}%"


def table_rows(runs: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for r in runs:
        state = esc(r["state"] + (f" ({r['error'][:60]})" if r.get("error") and r["state"] == "failed" else ""))
        state = warning_marker(r.get("warnings")) + state
        started = _when(r.get("started"))
        rows.append([
            run_label(r), state, progress_cell(r.get("progress") or 0.0),
            "–" if r.get("tau") is None else f"{r['tau']:.3g}",
            "–" if r.get("best_dev_accuracy") is None else f"{100 * r['best_dev_accuracy']:.1f}",
            "–" if r.get("test_accuracy") is None else f"{100 * r['test_accuracy']:.1f}",
            "–" if started is None else started.astimezone().strftime("%m-%d %H:%M"),
            duration(r), id_cell(r["id"]),
        ])
    return rows


def progress_cell(fraction: float) -> str:
    """A thin bar (CSS, narrower than block characters) and the percentage."""
    pct = 100 * max(0.0, min(fraction, 1.0))
    return f'<span class="rk-progress" title="{pct:.0f}%"><span style="width:{pct:.0f}%"></span></span> {pct:.0f}%'


def id_cell(run_id: str) -> str:
    # cut at its start (render.CSS): what is left in view is the end, the name and suffix that tell runs apart
    return f'<span class="rk-id" title="{esc(run_id)}"><bdi>{esc(run_id)}</bdi></span>'


def id_of(cell: Any) -> str:
    """The run id back from an id cell (or the id itself)."""
    text = str(cell)
    found = re.search(r'title="([^"]*)"', text)
    return html.unescape(found.group(1)) if found else text


def warning_marker(warnings: list[dict[str, Any]] | None) -> str:
    """'⚠ ' with each warning's message and detail on hover ('' without warnings)."""
    if not warnings:
        return ""
    tip = "\n".join(f"{w.get('message', '')}" + (f": {w['detail']}" if w.get("detail") else "") for w in warnings)
    return f'<span class="rk-run-warn" title="{esc(tip)}">⚠</span> '


def newest_first(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(runs, key=lambda r: (r.get("created") or "", r["id"]), reverse=True)


def choices(runs: list[dict[str, Any]], keep: Any = None) -> list[tuple[str, str]]:
    """(label, id) pairs for a dropdown, newest first; `keep(run)` filters."""
    return [(f"{run_label(r)} [{r['state']}]", r["id"]) for r in newest_first(runs) if keep is None or keep(r)]


def signature(runs: list[dict[str, Any]]) -> tuple:
    """Changes whenever anything the table shows changes (so an unchanged tick skips the redraw)."""
    return tuple((r["id"], r["state"], r.get("step"), r.get("best_dev_accuracy"), r.get("test_accuracy"),
                  tuple(w.get("code") for w in r.get("warnings") or [])) for r in runs)
