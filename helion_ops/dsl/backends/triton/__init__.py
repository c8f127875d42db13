"""The Triton backend: a lowered device loop and its Plan -> a ``@triton.jit`` function and its launch."""
from .kernel import compile_spec, compile_specs_for_target, generate, launcher, load_module  # noqa: F401
