"""Code generation backends: ``BACKENDS`` maps the Config's ``backend`` knob ("triton", or "gluon" on sm_90) to a
module whose ``generate(ir, config, target, file, fn_name, grid_ordinal, loop_index) -> Generated`` writes one
device loop's source; both build and load through ``triton`` (``compile_spec``, ``compile_specs_for_target``)."""
from . import gluon, triton

BACKENDS = {"triton": triton, "gluon": gluon}
