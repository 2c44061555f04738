"""Forwarding trainer events to the run's live Redis stream (the run's events.jsonl is durable)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from . import keys

log = logging.getLogger(__name__)

STREAM_TTL_S = 7 * 24 * 3600  # a finished run's stream; afterwards SSE replays from events.jsonl
RETRY_AFTER_S = 5.0  # after a failed write, events go to the file only for this long


class StreamPublisher:
    """XADD each event with stream id `<event id>-0`, so stream ids and event ids are one sequence.

    A resumed run replays the steps after its checkpoint under the ids they had before; those
    ids are already in the stream (its readers have seen them) and are skipped.
    """

    def __init__(self, r: redis.Redis, run_id: str, maxlen: int) -> None:
        self.r = r
        self.key = keys.stream(run_id)
        self.maxlen = maxlen
        self.last_id = 0
        self.paused_until = 0.0
        try:
            last = r.xrevrange(self.key, count=1)
            if last:
                self.last_id = int(last[0][0].split(b"-")[0] if isinstance(last[0][0], bytes)
                                   else str(last[0][0]).split("-")[0])
        except redis.RedisError as err:
            log.warning("could not read %s: %s", self.key, err)

    def __call__(self, event: dict[str, Any]) -> None:
        eid = int(event["id"])
        if eid <= self.last_id or time.monotonic() < self.paused_until:
            return  # while Redis is away, readers take the skipped ids from the file
        try:
            pipe = self.r.pipeline()
            pipe.xadd(self.key, {"data": json.dumps(event), "t": time.time()}, id=f"{eid}-0",
                      maxlen=self.maxlen, approximate=True)
            if event.get("type") == "finished":
                pipe.expire(self.key, STREAM_TTL_S)
            pipe.execute()
            self.last_id = eid
        except redis.RedisError as err:
            # Never let the live channel take the run down: the event is already on disk and
            # SSE readers fall back to the file. Pause, so that an unreachable Redis costs the
            # training loop one timeout every few seconds, not one per event.
            self.paused_until = time.monotonic() + RETRY_AFTER_S
            log.warning("event %d of %s not streamed (%s); retrying in %.0f s", eid, self.key, err, RETRY_AFTER_S)
