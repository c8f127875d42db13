"""The Gluon backend (sm_90): a warp-specialized ``@gluon.jit`` kernel; building and loading are Triton's."""
from .emitter import generate  # noqa: F401
