"""The research loop around blis: sweeps of run descriptions (``blis sweep``, on a process pool
or a Dask cluster) and adapters to optimization frameworks. Each framework is an extra:
``pip install "blis[dask]"``, ``"blis[gepa]"``, ``"blis[openevolve]"``."""
