# Loads blis' invariant suite as a pytest plugin: it registers the hypothesis profiles
# (blis-ci, long) before pytest reads --hypothesis-profile.
pytest_plugins = ["blis_core.testing"]
