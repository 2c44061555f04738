"""How much of an input a message may quote: one rule for the engine, the API and the CLI.

A module of its own, importing nothing of rekd_core, so that config, userdata and checks can all
use it without importing one another."""

from __future__ import annotations

from typing import Any

EXCERPT = 80  # characters of an input a message quotes at most


def excerpt(text: Any, limit: int = EXCERPT) -> str:
    """`text` as a string, or its first `limit` characters and '…': what a message may quote of an input."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "…"
