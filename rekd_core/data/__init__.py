"""The data: what a dataset is named (registry.py, spec.py), where its files are (sources.py), how it
is read (builtin.py, userdata.py, benchmarks.py) and split (splits.py, load.py), and how its items
become model inputs (features.py)."""
