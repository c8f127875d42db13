"""Autotuning progress: one plain line per phase and per message on stderr, nothing in quiet mode
(``progress=False`` or ``HELION_AUTOTUNE_PROGRESS=0``). The search calls ``phase(name, total)`` at each
round, generation or pattern step and ``record(time)`` per evaluated candidate; the benchmarker calls
``compiled(ok)`` per precompiled candidate and ``log(msg)`` for failures."""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, Optional

log = logging.getLogger("helion_ops.autotune")

PROGRESS_ENV = "HELION_AUTOTUNE_PROGRESS"

class Progress:
    """Counters plus plain status lines. Safe to use after ``close()`` (it no-ops)."""

    def __init__(self, enabled: bool = True, desc: str = "autotune", stream: Any = None) -> None:
        quiet = os.environ.get(PROGRESS_ENV, "").strip().lower() in ("0", "false", "no", "off")
        self.enabled, self.desc, self.stream = bool(enabled) and not quiet, desc, stream or sys.stderr
        self.t0 = time.monotonic()
        self.evaluated = self.failed = self.compiled_ok = self.compile_failed = 0
        self.best = math.inf
        self._phase: Optional[str] = None

    def phase(self, name: Optional[str], total: Optional[int] = None) -> None:
        """Start phase ``name`` (None: none), ending the current one with a line of its counters."""
        if self._phase is not None:
            best = f"{self.best * 1e3:.4f} ms" if math.isfinite(self.best) else "-"
            self._line(f"{self._phase}: compiled {self.compiled_ok} (failed {self.compile_failed}) | "
                       f"evaluated {self.evaluated} (failed {self.failed}) | best {best}")
        self._phase = name

    def record(self, t: float) -> None:
        self.evaluated += 1
        if not math.isfinite(t):
            self.failed += 1
        elif t < self.best:
            self.best = t

    def compiled(self, ok: bool) -> None:
        self.compiled_ok += bool(ok)
        self.compile_failed += not ok

    def log(self, msg: str) -> None:
        log.info(msg)
        self._line(msg)

    def close(self, summary: Optional[str] = None) -> None:
        self.phase(None)
        if summary:
            self.log(summary)
        self.enabled = False

    def _line(self, text: str) -> None:
        if self.enabled:
            print(f"[{self.desc} {time.monotonic() - self.t0:.1f}s] {text}", file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
