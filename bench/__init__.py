"""Benchmark harness for helion_ops (DESIGN §6).

Entry points: ``python -m bench.run``, ``python -m bench.report`` (tables, plots, results/index.html),
``python -m bench.check``, ``python -m bench.helion_baseline`` (tune the Helion baseline ahead of a run). Modules here never import ``helion_ops`` at import
time, so ``bench.run`` can set ``TRITON_INTERPRET=1`` first on CPU machines.
"""
