"""The Gluon backend (sm_90): a warp-specialized ``@gluon.jit`` kernel; building and loading are Triton's."""
from ..triton.kernel import compile_spec, compile_specs_for_target, load_module
from .emitter import generate

__all__ = ["generate", "compile_spec", "compile_specs_for_target", "load_module"]
