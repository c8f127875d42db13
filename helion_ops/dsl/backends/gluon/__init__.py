"""The Gluon backend (sm_90): a lowered device loop, its Plan and the Config -> a warp-specialized
``@gluon.jit`` kernel. Building and loading are the Triton backend's (it picks Gluon's AST source)."""
from ..triton.kernel import compile_spec, compile_specs_for_target, load_module
from .emitter import generate

__all__ = ["generate", "compile_spec", "compile_specs_for_target", "load_module"]
