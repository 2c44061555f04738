"""Training: the loop (trainer.py) and what it is built from: one step per mode (tasks.py), the
schedules (schedule.py), evaluation (evaluate.py)."""
