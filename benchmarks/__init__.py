"""Performance of umt, measured as ratios within one run (GitHub issue 9).

``python -m benchmarks [--quick] [--out DIR] [--threads N]`` runs every measurement and writes
``results.json`` and ``results.md`` under ``--out`` (default ``benchmarks/results/``, not tracked).
``benchmarks/RESULTS.md`` keeps two measured runs (1 and 2 threads) with what they say.

- :mod:`benchmarks.bare`: the plain-PyTorch loop that ``umt.engine.fit`` is measured against.
- :mod:`benchmarks.variants`: ``fit`` with one part changed, to price that part.
- :mod:`benchmarks.suite`: the measurements (overhead, UMT cost, data loading, scaling).
- :mod:`benchmarks.report`: the Markdown tables.

Absolute numbers depend on the machine and its load; ratios taken in one process, with the
variants interleaved, travel better. Compare runs only with the same ``--threads``.
"""
