"""Autotuning progress: one plain line per phase and per message on stderr, nothing in quiet mode
(``progress=False`` or ``HELION_AUTOTUNE_PROGRESS=0``).

The search calls ``phase(name, total)`` at each round / generation / pattern step and ``record(time)``
per evaluated candidate; the benchmarker calls ``compiled(ok)`` per precompiled candidate and
``log(msg)`` for failures.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, Optional

log = logging.getLogger("helion_ops.autotune")

PROGRESS_ENV = "HELION_AUTOTUNE_PROGRESS"

def progress_enabled(progress: Any = True) -> bool:
    """Whether to show progress: the argument, unless the env var says 0."""
    if os.environ.get(PROGRESS_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return bool(progress)

class Progress:
    """Counters plus plain status lines. Safe to use after ``close()`` (it no-ops)."""

    def __init__(self, enabled: bool = True, desc: str = "autotune", stream: Any = None) -> None:
        self.enabled, self.desc, self.stream = progress_enabled(enabled), desc, stream or sys.stderr
        self.t0 = time.monotonic()
        self.evaluated = self.failed = self.compiled_ok = self.compile_failed = 0
        self.best = math.inf
        self._phase: Optional[str] = None

    def phase(self, name: str, total: Optional[int] = None) -> None:
        if self._phase is not None:
            self._line(f"{self._phase}: {self._info()}")
        self._phase = name

    def record(self, t: float) -> None:
        self.evaluated += 1
        if not math.isfinite(t):
            self.failed += 1
        elif t < self.best:
            self.best = t

    def compiled(self, ok: bool) -> None:
        if ok:
            self.compiled_ok += 1
        else:
            self.compile_failed += 1

    def log(self, msg: str) -> None:
        log.info(msg)
        self._line(msg)

    def close(self, summary: Optional[str] = None) -> None:
        if self._phase is not None:
            self._line(f"{self._phase}: {self._info()}")
        self._phase = None
        if summary:
            self.log(summary)
        self.enabled = False

    def _info(self) -> str:
        best = "-" if not math.isfinite(self.best) else f"{self.best * 1e3:.4f} ms"
        return (f"compiled {self.compiled_ok} (failed {self.compile_failed}) | "
                f"evaluated {self.evaluated} (failed {self.failed}) | best {best}")

    def _line(self, text: str) -> None:
        if self.enabled:
            print(f"[{self.desc} {time.monotonic() - self.t0:.1f}s] {text}", file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
