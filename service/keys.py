"""Redis key names and the task name, in one place: the API and the worker must agree on them."""

PREFIX = "rekd"
TRAIN_TASK = "rekd.train_run"  # the API sends by name, without importing the task module


def stream(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}:events"


def lease(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}:lease"


def cancel(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}:cancel"


def requeued(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}:requeued"


WORKERS = f"{PREFIX}:workers"  # hash: worker id -> last heartbeat (unix time)
EPOCH = f"{PREFIX}:epoch"  # set once per Redis lifetime; its absence means Redis lost its data
