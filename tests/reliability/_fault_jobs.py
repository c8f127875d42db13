"""Compile-worker jobs that fail on purpose (tests/reliability/test_tuner_faults.py).

Kept apart from the test module so a spawn worker imports only this (no torch, no helion_ops): the
pool is rebuilt after every crash or hang, and each rebuild pays the workers' imports again.
"""
import os
import signal
import time


def fault_job(payload):
    """Stands in for helion_ops.dsl.autotune.bench.compile_job: payload = (specs, target)."""
    specs, _target = payload
    kind = specs[0]
    if kind == "segv":
        import ctypes
        ctypes.string_at(0)  # a real SIGSEGV: NULL read
        os.kill(os.getpid(), signal.SIGSEGV)  # pragma: no cover - in case the read was not fatal
    if kind == "hang":
        time.sleep(600)
    return True


def ping(_=None):
    """Light stand-in for bench._ping (which imports helion_ops, hence torch, in every new worker)."""
    time.sleep(0.02)
    return os.getpid()
