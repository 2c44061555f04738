"""The pools a rekd worker starts with (worker/pool.py): one run per process, in the process."""

import pytest
from celery.concurrency import get_implementation

from worker.pool import pool_problem


@pytest.mark.parametrize("pool,concurrency", [("threads", 1), ("solo", 1), ("solo", 8),
                                              (get_implementation("threads"), 1)])
def test_one_run_in_the_process_is_allowed(pool, concurrency):
    assert pool_problem(pool, concurrency) is None


@pytest.mark.parametrize("concurrency", [2, 8, "auto"])
def test_more_threads_are_refused_naming_the_flag(concurrency):
    msg = pool_problem("threads", concurrency)
    assert msg is not None and msg.startswith(f"--concurrency {concurrency}:") and "allowed: 1" in msg


@pytest.mark.parametrize("pool", ["prefork", "processes", get_implementation("prefork")])
def test_child_process_pools_are_refused_naming_the_allowed_ones(pool):
    msg = pool_problem(pool, 1)
    assert msg is not None and msg.startswith("--pool ") and "allowed: threads, solo" in msg
