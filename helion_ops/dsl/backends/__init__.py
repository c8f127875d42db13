"""Code generation backends: ``BACKENDS`` maps the Config's ``backend`` knob ("triton", or "gluon" on sm_90) to a
module with ``generate(ir, config, target, file, fn_name, grid_ordinal, loop_index) -> Generated`` (one device
loop's source, from the IR, the active Plan, the Config and the Target), ``compile_spec(spec, target=None)`` /
``compile_specs_for_target(specs, target)`` (build without launching) and ``load_module(path, name)``."""
from . import gluon, triton

BACKENDS = {"triton": triton, "gluon": gluon}
