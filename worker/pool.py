"""The pools a rekd worker may run with: one run per worker process, trained inside it.

`threads` with one thread (the default, see worker/app.py) or `solo`. Anything else would train
several runs in one process (more threads: several models on one GPU) or in child processes
(prefork: a killed worker's child may train on, holding the run's lease); gevent and eventlet
cannot preempt a training step at all. So the worker refuses them at start, naming the flag.
"""

from __future__ import annotations

from typing import Any

from celery.concurrency import get_implementation

ALLOWED_POOLS = ("threads", "solo")


def pool_problem(pool: Any, concurrency: Any) -> str | None:
    """Why this worker's pool is not one rekd trains with, or None when it is. `pool` is a pool name
    or class (Celery's `--pool`), `concurrency` its `--concurrency` (an int, or "auto")."""
    cls = get_implementation(pool)
    name = next((n for n in ALLOWED_POOLS if get_implementation(n) is cls), None)
    if name is None:
        label = pool if isinstance(pool, str) else str(getattr(cls, "__module__", pool)).rsplit(".", 1)[-1]
        return (f"--pool {label}: rekd workers train one run per process, in "
                f"the process; allowed: {', '.join(ALLOWED_POOLS)} (default threads)")
    if name == "threads" and concurrency != 1:
        return (f"--concurrency {concurrency}: a rekd worker trains one run at a time; allowed: 1 (start "
                "more workers for more runs)")
    return None
