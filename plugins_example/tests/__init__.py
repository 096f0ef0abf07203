# A package, so that pytest imports these modules as tests.* and their names never clash with
# blis' own tests/ (both hold a test_invariants.py).
