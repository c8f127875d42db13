"""The machine code is generated for: passed into codegen, never looked up there."""
from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class Target:
    """``backend`` and ``arch`` name the compiler target (("cuda", 90): Hopper); ``num_sms`` sizes
    persistent grids (one program per SM); ``interpreter``: Triton's CPU interpreter runs the code."""
    backend: str = "cuda"
    arch: int = 90
    num_sms: int = 132
    interpreter: bool = False
