"""The Celery worker: runs rekd_core's trainer for queued runs, streams events to Redis."""
