"""What the API (backend/) and the worker (worker/) share, so that neither imports the other:
settings, Redis key names, a run's lease and event stream, and sending runs to the queue by
task name. Imports neither backend/, worker/ nor ui/ (an import-linter contract checks)."""
