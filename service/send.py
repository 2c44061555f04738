"""Sending runs to the queue by task name, with Celery's canvas for the order (no task import,
so neither the API process nor a sender needs torch).

A run goes to its own queue (`status.json` keeps it, so a resumed run goes back there); a
teacher goes first as a chain, with the students that distil from it as the chain's next step
(a group when there are several): they are sent when the teacher's task returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import chain, group

from .keys import TRAIN_TASK


def signature(app: Any, run_id: str, queue: str) -> Any:
    return app.signature(TRAIN_TASK, args=[run_id], immutable=True, queue=queue)


def send_run(app: Any, run_id: str, queue: str, then: Sequence[tuple[str, str]] = ()) -> None:
    """Queue `run_id` on `queue`; `then` ((run id, queue) pairs) are sent when its task returns."""
    head = signature(app, run_id, queue)
    if not then:
        head.apply_async()
        return
    after = [signature(app, rid, q) for rid, q in then]
    chain(head, after[0] if len(after) == 1 else group(after)).apply_async()
