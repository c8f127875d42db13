"""Where a result came from: GPU name, library versions, git commit, date."""
from __future__ import annotations

import datetime
import re
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def gpu_name() -> str:
    """Full device name of CUDA device 0, or "cpu" when there is none."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def short_name(name: str) -> str:
    """A short, path-safe GPU name: "NVIDIA H100 80GB HBM3" -> "H100".

    Vendor and brand words are dropped, then the first model token is kept
    ("NVIDIA A100-SXM4-80GB" -> "A100", "NVIDIA GeForce RTX 4090" -> "RTX4090").
    """
    words = [w for w in re.split(r"[\s_]+", name) if w]
    words = [w for w in words if w.upper() not in {"NVIDIA", "GEFORCE", "TESLA", "AMD", "INSTINCT", "QUADRO"}]
    if not words:
        return "GPU"
    first = words[0].split("-")[0]
    if first.upper() == "RTX" and len(words) > 1:  # "RTX 4090", "RTX A6000"
        first += words[1].split("-")[0]
    return re.sub(r"[^A-Za-z0-9.]", "", first) or "GPU"


def versions() -> dict[str, str]:
    """torch and triton version strings."""
    import torch
    import triton

    return {"torch": torch.__version__, "triton": triton.__version__}


def git_commit() -> str:
    """Short commit of the repo, "+dirty" when tracked files changed; "unknown" outside git.

    ``$BENCH_COMMIT`` overrides it: a remote GPU machine may get the working tree of a commit
    without that commit's git metadata."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=REPO).returncode != 0
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def utc_date() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def info() -> dict[str, str]:
    """All provenance fields written into every result row."""
    name = gpu_name()
    return {"gpu": short_name(name) if name != "cpu" else "cpu", "gpu_full": name,
            **versions(), "commit": git_commit(), "date": utc_date()}
