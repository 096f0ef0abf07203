# Registers blis' hypothesis profiles (blis-ci, long) before pytest reads --hypothesis-profile,
# so `pytest tests/test_invariants.py --hypothesis-profile=long` works on its own.
pytest_plugins = ["blis_core.testing"]
