"""Files an OpenEvolve run with blis starts from: ``initial_program.py`` (the program that is
evolved), ``evaluator.py`` (the evaluation file to hand OpenEvolve) and ``oe.yaml`` (a config).

They are data, not library code: OpenEvolve reads them by path (``blis_adapters.openevolve``
exposes the paths as ``INITIAL_PROGRAM``, ``EVALUATOR_FILE`` and ``EXAMPLE_CONFIG``).
"""
