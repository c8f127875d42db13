"""Autotuned configs on disk: a JSON file per key (kernel source, specialization, GPU, torch and triton versions) under
``$HELION_OPS_CACHE_DIR`` (``~/.cache/helion_ops/autotune/``); a bad or stale file is a miss, writes are atomic."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from contextlib import suppress
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from ..config import Config

log = logging.getLogger("helion_ops.autotune")
FORMAT = 1

def atomic_write(path: os.PathLike | str, text: str, sync: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename: the last rename wins, whole), ``sync``: on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise

def atomic_write_json(path: os.PathLike | str, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True) + "\n", sync=True)

@lru_cache(maxsize=None)
def _device_info(index: int) -> tuple[str, Optional[list]]:
    with suppress(Exception):
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(index), list(torch.cuda.get_device_capability(index))
    return "cpu", None

def environment(device_index: Optional[int] = None) -> dict[str, Any]:
    import torch
    import triton
    if device_index is None:
        device_index = torch.cuda.current_device() if torch.cuda.is_available() else 0
    gpu, cc = _device_info(device_index)
    return {"gpu": gpu, "capability": cc, "torch": torch.__version__, "triton": triton.__version__}

def source_hash(source: str) -> str: return hashlib.sha256(source.encode()).hexdigest()

class AutotuneCache:
    def __init__(self, directory: Optional[os.PathLike | str] = None, env: Optional[dict] = None) -> None:
        default = Path.home() / ".cache" / "helion_ops" / "autotune"
        self.directory = Path(directory or os.environ.get("HELION_OPS_CACHE_DIR") or default)
        self.env = env if env is not None else environment()
    def key(self, kernel_source_hash: str, specialization_key: Any) -> str:
        parts = [kernel_source_hash, repr(specialization_key), self.env["gpu"],
                 repr(self.env["capability"]), self.env["torch"], self.env["triton"]]
        return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()
    def path(self, key: str) -> Path: return self.directory / f"{key}.json"
    def get(self, key: str) -> Optional[Config]:
        p = self.path(key)
        try:
            data = json.loads(p.read_text())
            if data.get("format") != FORMAT or data.get("key") != key:
                raise ValueError("format/key mismatch")
            if data.get("env") == self.env:
                return Config.from_dict(data["config"])
            log.info("autotune cache %s: written under %s, now %s; ignoring", p, data.get("env"), self.env)
        except FileNotFoundError:
            pass
        except Exception as e:  # truncated, not JSON, wrong shape: a miss, overwritten on put
            log.warning("autotune cache %s is unreadable (%s); ignoring it", p, e)
        return None
    def put(self, key: str, config: Config, **meta: Any) -> Path:
        p = self.path(key)
        atomic_write_json(p, {"format": FORMAT, "key": key, "env": self.env, "config": config.to_dict(),
                              "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "meta": meta})
        return p
