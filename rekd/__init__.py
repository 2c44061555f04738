"""The rekd product command: the engine's commands (rekd_core) plus the service (worker, API)."""
