"""A run's lease: a Redis key that only its current worker holds and renews.

While the key exists nobody else trains the run; when a worker dies the key expires within
`ttl` and the reconciler re-queues the run, which then resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from . import keys

log = logging.getLogger(__name__)

# Renew only if we still hold it, in one round trip. A key that is gone altogether (Redis
# restarted without its data, or an outage outlasted the ttl) is taken back: nobody else holds
# it, and SET NX cannot race with a worker taking it at the same moment. Only a key held by
# another owner means the run is lost to us.
_RENEW = ("local v = redis.call('get', KEYS[1]) "
          "if v == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
          "if not v then if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end end "
          "return 0")
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class Lease:
    def __init__(self, r: redis.Redis, run_id: str, owner: str, ttl_s: float) -> None:
        self.r = r
        self.key = keys.lease(run_id)
        self.owner = owner
        self.ttl_ms = int(ttl_s * 1000)
        self.lost = threading.Event()

    def acquire(self) -> bool:
        return bool(self.r.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        try:
            ok = bool(self.r.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))
        except redis.RedisError as err:
            # Redis briefly away: keep training; the run directory stays the source of truth
            log.warning("lease renewal for %s failed: %s", self.key, err)
            return True
        if not ok:
            self.lost.set()
        return ok

    def release(self) -> None:
        try:
            self.r.eval(_RELEASE, 1, self.key, self.owner)
        except redis.RedisError as err:
            log.warning("lease release for %s failed (it will expire): %s", self.key, err)

    @contextmanager
    def kept_alive(self) -> Iterator[Lease]:
        """Renew every ttl/3 in a background thread while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.ttl_ms / 3000):
                if not self.renew():
                    log.error("lease %s was lost: another worker may own the run now", self.key)
                    return

        t = threading.Thread(target=beat, name=f"lease-{self.key}", daemon=True)
        t.start()
        try:
            yield self
        finally:
            stop.set()
            t.join(timeout=5)
