"""Live mirroring: the trainer's events handed to tracker sinks on a background thread, so that a
slow or unreachable tracker (an MLflow server down, retrying) never holds up a training step, and
a tracker that fails is dropped with one warning while the run carries on."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Protocol

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 120.0  # how long the end of a run waits for the trackers to write what is queued


class Sink(Protocol):
    name: str

    def event(self, event: dict[str, Any]) -> None: ...

    def finish(self, state: str | None) -> None: ...

    def where(self) -> str: ...


_CLOSE = object()


class Tracking:
    """Call it with each stored event; `close()` when the run's process is done with it.

    A `finished` event ends every sink with the run's state (artifacts, MLflow status); a close
    without one (a suspended or preempted run) flushes and leaves the tracker's run open."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = list(sinks)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        if self.sinks:
            self._thread = threading.Thread(target=self._work, name="rekd-tracking", daemon=True)
            self._thread.start()

    def __call__(self, event: dict[str, Any]) -> None:
        if self._thread is not None:
            self._queue.put(event)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        if self._thread is None:
            return
        self._queue.put(_CLOSE)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("tracking: %s still writing after %.0f s; the run is done, leaving it",
                        ", ".join(s.name for s in self.sinks), timeout)
        self._thread = None

    def _call(self, sink: Sink, what: str, *args: Any) -> None:
        try:
            getattr(sink, what)(*args)
        except Exception as err:  # never the run's problem: warn once, stop feeding that tracker
            log.warning("tracking: %s failed (%s: %s); the run carries on without it", sink.name,
                        type(err).__name__, err)
            self.sinks.remove(sink)

    def _work(self) -> None:
        finished = False
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                break
            for sink in list(self.sinks):
                self._call(sink, "event", item)
            if item.get("type") == "finished":
                for sink in list(self.sinks):
                    self._call(sink, "finish", str(item.get("state")))
                finished = True
        if not finished:
            for sink in list(self.sinks):
                self._call(sink, "finish", None)
