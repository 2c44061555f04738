"""Training: the loop (trainer.py) and what it is built from: one step per mode (tasks.py), the
teacher of a distilled run and its cached outputs (teacher.py), the start from another run's
weights (init_from.py), the optimizer (optim.py), the schedules (schedule.py), evaluation
(evaluate.py), and what a checkpoint holds to resume exactly (state.py)."""
