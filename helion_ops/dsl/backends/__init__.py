"""Code generation backends, behind one interface.

A backend is a module with
    generate(ir, config, target, file, fn_name, grid_ordinal, loop_index) -> Generated
        the source of one device loop (IR as lowered, decisions of the active Plan, the Config, the Target);
    compile_spec(spec, target=None) / compile_specs_for_target(specs, target)
        build generated code without launching it (a GPU target on a CPU machine);
    load_module(path, name)
        import the generated module (tracebacks and ``inspect`` see the file).
Everything before codegen (parse, lower, passes) is shared; ``BACKENDS`` maps a name to its module
(the Config's ``backend`` knob picks one: "triton", or "gluon" on sm_90).
"""
from . import gluon, triton

BACKENDS = {"triton": triton, "gluon": gluon}
