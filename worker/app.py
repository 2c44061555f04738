"""The worker's Celery app: the configuration the API sends with (service/send.py) plus the task
module (worker/tasks.py).

Start a worker with `rekd worker` (or `celery -A worker.app worker`: the thread pool with one
thread is the configured default). Why that pool:

- One run per worker process, and nothing outside it: the run trains in a thread of the worker
  process, so a killed worker (SIGKILL, OOM) kills its run with it. No orphaned child process is
  left training, or holding the run's lease, as a prefork child could be.
- The worker stays reachable while it trains: its main thread keeps the broker connection, so it
  answers remote control (`celery inspect ping` / `active`, Flower's refresh) and sends its
  heartbeats and task events (Flower shows it online and the run's task STARTED). The solo pool,
  used before, trains in that very thread: a training worker answered nothing and sent no
  heartbeat until its run ended, so Flower showed it offline and its task invisible. Torch releases
  the GIL in its ops; measured on 2 CPU cores with a CPU-bound run (no step delay), `inspect ping`
  answered in 9-75 ms throughout and heartbeats came every 2.0-2.1 s (none at all under solo).
- A stop (SIGTERM, Ctrl-C) is a warm shutdown: `worker_shutting_down` tells the run to checkpoint
  at its next step and hand itself back to the queue; the pool waits for that, then the worker exits.

`--pool solo` still works (one run, no child; but deaf while training); pools that would train
several runs in one process, or in child processes, are refused at start (worker/pool.py).
"""

from __future__ import annotations

from service.send import make_celery
from service.settings import get_settings

__all__ = ["app"]

app = make_celery(get_settings(), include=["worker.tasks"])
