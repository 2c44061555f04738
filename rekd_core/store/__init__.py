"""The run directory: its layout and its writes (runstore.py), checkpoints (checkpoint.py), the
per-example rationales saved at each evaluation (examples.py), and the atomic write under all of
them (atomic.py)."""
