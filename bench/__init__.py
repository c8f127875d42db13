"""Benchmark harness for helion_ops (DESIGN §6).

Entry points: ``python -m bench.run``, ``python -m bench.report``,
``python -m bench.check``. Modules here never import ``helion_ops`` at import
time, so ``bench.run`` can set ``TRITON_INTERPRET=1`` first on CPU machines.
"""
