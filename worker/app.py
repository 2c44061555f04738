"""The worker's Celery app: the configuration the API sends with (service/send.py) plus the task
module (worker/tasks.py).

Start a worker with `rekd worker` (or `celery -A worker.app worker --pool solo`). The solo pool
trains in the worker process itself, so killing the worker kills its run (no orphaned child
holding a lease), and one worker process trains one run, as a GPU wants.
"""

from __future__ import annotations

from service.send import make_celery
from service.settings import get_settings

__all__ = ["app"]

app = make_celery(get_settings(), include=["worker.tasks"])
