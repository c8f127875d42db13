"""Autotuning progress: a rich bar when ``rich`` is installed, plain lines
otherwise, nothing in quiet mode (``progress=False`` or
``HELION_AUTOTUNE_PROGRESS=0``).

The search calls ``phase(name, total)`` at each generation / pattern step and
``record(time)`` per evaluated candidate; the benchmarker calls
``compiled(ok)`` per precompiled candidate and ``log(msg)`` for failures.
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


def _fmt_time(t: float) -> str:
    return "-" if not math.isfinite(t) else f"{t * 1e3:.4f} ms"


class Progress:
    """Counters plus a display. Safe to use after ``close()`` (it no-ops)."""

    def __init__(self, enabled: bool = True, desc: str = "autotune", stream: Any = None) -> None:
        self.enabled = progress_enabled(enabled)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.evaluated = self.failed = 0
        self.compiled_ok = self.compile_failed = 0
        self.best = math.inf
        self._phase: Optional[str] = None
        self._bar = self._task = None
        if self.enabled:
            try:
                import rich.console
                import rich.progress as rp
            except ImportError:
                pass  # rich is optional: plain lines below
            else:
                self._bar = rp.Progress(
                    rp.TextColumn("[bold]{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                    rp.TextColumn("{task.fields[info]}"), rp.TimeElapsedColumn(),
                    console=rich.console.Console(file=self.stream), transient=False)
                self._bar.start()
                self._task = self._bar.add_task(desc, total=None, info="")

    # -- events -------------------------------------------------------------
    def phase(self, name: str, total: Optional[int] = None) -> None:
        if self._phase is not None and self._bar is None:
            self._print_line()
        self._phase = name
        if self._bar is not None:
            self._bar.reset(self._task, total=total, description=f"{self.desc}: {name}", info=self._info())

    def record(self, t: float) -> None:
        self.evaluated += 1
        if not math.isfinite(t):
            self.failed += 1
        elif t < self.best:
            self.best = t
        if self._bar is not None:
            self._bar.update(self._task, advance=1, info=self._info())

    def compiled(self, ok: bool) -> None:
        if ok:
            self.compiled_ok += 1
        else:
            self.compile_failed += 1
        if self._bar is not None:
            self._bar.update(self._task, info=self._info())

    def log(self, msg: str) -> None:
        log.info(msg)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(msg, markup=False, highlight=False)
        else:
            print(f"[{self.desc} {time.monotonic() - self.t0:.1f}s] {msg}", file=self.stream, flush=True)

    def close(self, summary: Optional[str] = None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.enabled and self._phase is not None:
            self._print_line()
        self._phase = None
        if summary:
            self.log(summary)
        self.enabled = False

    # -- helpers ------------------------------------------------------------
    def _info(self) -> str:
        return (f"compiled {self.compiled_ok} (failed {self.compile_failed}) | "
                f"evaluated {self.evaluated} (failed {self.failed}) | best {_fmt_time(self.best)}")

    def _print_line(self) -> None:
        print(f"[{self.desc} {time.monotonic() - self.t0:.1f}s] {self._phase}: {self._info()}",
              file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
