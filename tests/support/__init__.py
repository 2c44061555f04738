"""What the tests share beyond conftest.py: a real service to test against (service.py)."""
