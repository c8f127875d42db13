"""Config: one point of a kernel's tuning space in Helion's field names (a ``helion.Config(...)`` literal works),
JSON round-trippable, list fields in the order the compiler meets what it tunes; ConfigSpace: the space itself."""
from __future__ import annotations

import json
import math
import random as _random
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from .fragments import (  # noqa: F401 (the fragments are importable from here too)
    BoolFragment, EnumFragment, FixedFragment, Fragment, IntegerFragment, ListOf, PermutationFragment,
    PowerOfTwoFragment, ReductionLoopFragment, _clip, _is_pow2, next_pow2)

# name -> default when a Config omits it. Lists default to empty: ConfigSpace.default() fills them per kernel.
FIELDS: dict[str, Any] = {"block_sizes": [], "loop_orders": [], "l2_groupings": [], "reduction_loops": [],
    "num_warps": 4, "num_stages": 2, "pid_type": "flat", "grid_reverses": [], "indexing": "pointer",
    "range_num_stages": [], "range_unroll_factors": [], "range_warp_specializes": [], "range_flattens": [],
    "range_reverses": [], "load_eviction_policies": [], "backend": "triton", "gluon_consumers": 2,
    "gluon_overlap": False, "gluon_mma_ahead": False}
PID_TYPES = ("flat", "xyz", "persistent_blocked", "persistent_interleaved")
# The Gluon backend (sm_90) and its knobs: searched only on an sm_90 GPU; elsewhere a Config may still name
# them for codegen (to_triton_code, compile_for_target), and a launch under the interpreter refuses it.
BACKEND_CHOICES = {"backend": ("triton", "gluon"), "gluon_consumers": (1, 2), "gluon_overlap": (False, True),
                   "gluon_mma_ahead": (False, True)}
NOT_REVERSIBLE = ("this loop cannot run in reverse (it carries values between iterations, reads a tensor it "
                  "writes elsewhere, or makes atomic updates)")
# Helion's singular spellings of list knobs (Config(block_size=32) is block_sizes=[32]).
_SINGULAR = {**{k[:-1]: k for k in ("block_sizes", "reduction_loops", "loop_orders", "l2_groupings", "range_num_stages",
                                    "range_unroll_factors")}, "load_eviction_policy": "load_eviction_policies"}

class Config(Mapping[str, Any]):
    """An immutable mapping of knobs, e.g. ``Config(block_sizes=[64, 64], num_warps=8)``; other keys are user
    tunables (``hl.register_tunable``). ``cfg.num_warps`` returns the value or the field's default."""
    __slots__ = ("_data", "_key")
    def __init__(self, **kwargs: Any) -> None:
        data = {k: _freeze(v) for k, v in _helion_spellings(kwargs).items() if v is not None or k not in FIELDS}
        if data.get("pid_type", "flat") not in PID_TYPES:
            raise ValueError(f"Config.pid_type must be one of {PID_TYPES}, got {data['pid_type']!r}")
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_key", tuple(sorted(data.items())))
    def __getitem__(self, k: str) -> Any: return self._data[k]
    def __iter__(self) -> Iterator[str]: return iter(self._data)
    def __len__(self) -> int: return len(self._data)
    def __getattr__(self, k: str) -> Any:
        if k.startswith("_") or k not in self._data and k not in FIELDS:
            raise AttributeError(f"Config has no field {k!r}")
        return _thaw(self._data[k] if k in self._data else _freeze(FIELDS[k]))
    def __setattr__(self, k: str, v: Any) -> None: raise AttributeError("Config is immutable; use cfg.replace(...)")
    def get(self, k: str, default: Any = None) -> Any: return _thaw(self._data[k]) if k in self._data else default
    def replace(self, **kwargs: Any) -> "Config": return Config(**{**self.to_dict(), **kwargs})
    def to_dict(self) -> dict[str, Any]: return {k: _thaw(v) for k, v in self._data.items()}
    def to_json(self) -> str: return json.dumps(self.to_dict(), sort_keys=True)
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config": return cls(**dict(d))
    @classmethod
    def from_json(cls, s: str) -> "Config": return cls.from_dict(json.loads(s))
    def key(self) -> tuple: return self._key
    def __hash__(self) -> int: return hash(self._key)
    def __eq__(self, other: object) -> bool: return isinstance(other, Config) and self._key == other._key
    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{k}={_thaw(v)!r}" for k, v in sorted(self._data.items())) + ")"

def _helion_spellings(kw: dict[str, Any]) -> dict[str, Any]:
    """Helion's spellings: singular keys, nested block sizes (``[[32, 32], 32]``), ``indexing="block_ptr"`` or
    a per-load list (served through pointers, or descriptors where every entry asks for them)."""
    out = dict(kw)
    for one, many in _SINGULAR.items():
        if one in out:
            v = out.pop(one)
            if many in out:
                raise ValueError(f"Config: both {one}= and {many}= given")
            out[many] = list(v) if isinstance(v, (list, tuple)) else [v]
    if isinstance(bs := out.get("block_sizes"), (list, tuple)):
        out["block_sizes"] = [x for b in bs for x in (b if isinstance(b, (list, tuple)) else [b])]
    ix = out.get("indexing")
    if isinstance(ix, (list, tuple)):
        ix = "tensor_descriptor" if ix and all(i == "tensor_descriptor" for i in ix) else "pointer"
    if ix is not None:
        out["indexing"] = "pointer" if ix == "block_ptr" else ix
    return out

def _freeze(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v

def _thaw(v: Any) -> Any: return [_thaw(x) for x in v] if isinstance(v, tuple) else v

@dataclass(frozen=True)
class BlockSpec:
    """Bounds of one block size (powers of two)."""
    min: int = 1
    max: int = 1024
    default: int = 64

@dataclass
class SpaceSpec:
    """Which knobs a bound kernel has (what the compiler declares); see docs/CONTRACTS.md §3."""
    block_sizes: list = field(default_factory=list)        # BlockSpec per block-size id
    reduction_extents: list = field(default_factory=list)  # extent of each ":" reduction dim
    grid_loops: list = field(default_factory=list)         # tile dims of each top-level loop
    inner_loops: int = 0                                   # tl.range loops
    loads: int = 0                                         # loads (eviction policy each)
    tensor_descriptor: bool = False                        # TMA indexing possible
    tunables: dict = field(default_factory=dict)           # name -> Fragment (hl.register_tunable)
    warp_specialize: bool = False                          # tl.range(warp_specialize=) available
    uneven_grid: bool = False                              # some program's work depends on its tile
    reversible_loops: tuple = ()                           # inner loop ids that may run last to first
    gluon: bool = False                                    # the Gluon backend is searchable (sm_90 GPU)

class ConfigSpace:
    """A kernel's space: ``fragments``, a Fragment per knob that can matter for it (the search tries no others)."""
    def __init__(self, spec: SpaceSpec) -> None:
        self.spec, self._default, f = spec, None, {}
        self.fragments: dict[str, Fragment] = f
        if spec.block_sizes:
            f["block_sizes"] = ListOf([PowerOfTwoFragment(b.min, b.max, b.default) for b in spec.block_sizes])
        if multi := [n for n in spec.grid_loops if n >= 2]:
            f["loop_orders"] = ListOf([PermutationFragment(n) for n in multi])
            f["l2_groupings"] = ListOf(PowerOfTwoFragment(1, 64, 1), len(multi))
        if spec.reduction_extents:
            f["reduction_loops"] = ListOf([ReductionLoopFragment(e) for e in spec.reduction_extents])
        f["num_warps"] = PowerOfTwoFragment(1, 32, 4)
        f["num_stages"] = IntegerFragment(1, 8, 3 if spec.inner_loops else 2)
        xyz = ["xyz"] if all(n <= 3 for n in spec.grid_loops) else []
        f["pid_type"] = EnumFragment(["flat", *xyz, "persistent_blocked", "persistent_interleaved"], "flat")
        if spec.uneven_grid:  # launch order only matters when programs differ in work (a triangular loop)
            f["grid_reverses"] = ListOf(BoolFragment(False), len(spec.grid_loops))
        if spec.tensor_descriptor:
            f["indexing"] = EnumFragment(["pointer", "tensor_descriptor"], "pointer")
        if n := spec.inner_loops:
            f["range_num_stages"] = f["range_unroll_factors"] = ListOf(IntegerFragment(0, 4, 0), n)
            if spec.warp_specialize:
                f["range_warp_specializes"] = ListOf(BoolFragment(False), n)
            f["range_flattens"] = ListOf(EnumFragment([None, False, True], None), n)
            if spec.reversible_loops:  # only loops whose iterations are independent (passes.reversible)
                f["range_reverses"] = ListOf([BoolFragment(False) if i in spec.reversible_loops
                                              else FixedFragment(False, NOT_REVERSIBLE) for i in range(n)])
        if spec.gluon:
            f.update({k: EnumFragment(choices, FIELDS[k]) for k, choices in BACKEND_CHOICES.items()})
        if spec.loads:
            f["load_eviction_policies"] = ListOf(EnumFragment(["", "first", "last"], ""), spec.loads)
        for name, frag in spec.tunables.items():
            if name in FIELDS:
                raise ValueError(f"tunable {name!r} collides with a Config field")
            if not isinstance(frag, Fragment):
                raise TypeError(f"tunable {name!r}: expected a Fragment, got {frag!r}")
            f[name] = frag
    def default(self) -> Config:  # `or`: a Config of a space is never empty (num_warps is always a knob)
        return self._default or Config(**{k: f.default() for k, f in self.fragments.items()})
    def set_default(self, cfg: Mapping[str, Any]) -> None:
        """Make ``cfg`` (normalised) the default point, from which ``normalize`` fills missing knobs."""
        self._default = None
        self._default = self.normalize(cfg)
    def random(self, rng: _random.Random) -> Config:
        return Config(**{k: f.random(rng) for k, f in self.fragments.items()})
    def mutate(self, cfg: Config, rng: _random.Random) -> Config:
        d = self._values(cfg)
        names = [k for k, f in self.fragments.items() if not isinstance(f, ListOf) or len(f)]  # never empty
        for k in rng.sample(names, min(len(names), 2 if rng.random() < 0.3 else 1)):
            d[k] = self.fragments[k].mutate(d[k], rng)
        return Config(**d)
    def crossover(self, a: Config, b: Config, rng: _random.Random) -> Config:
        da, db = self._values(a), self._values(b)
        return Config(**{k: f.crossover(da[k], db[k], rng) for k, f in self.fragments.items()})
    def differential(self, x: Config, a: Config, b: Config, c: Config, rng: _random.Random, cr: float = 0.7) -> Config:
        """DE/rand/1/bin trial: each knob ``a + (b - c)`` with probability ``cr`` (one at least), else x's."""
        dx, da, db, dc = (self._values(v) for v in (x, a, b, c))
        forced = rng.choice(list(self.fragments)) if self.fragments else None
        return Config(**{k: f.differential(da[k], db[k], dc[k], rng) if k == forced or rng.random() < cr else dx[k]
                         for k, f in self.fragments.items()})
    def neighbors(self, cfg: Config) -> list[Config]:
        """Configs one knob-step away, in field order (the knobs that usually matter most first)."""
        d = self._values(cfg)
        return [Config(**{**d, k: v}) for k, f in self.fragments.items() for v in f.neighbors(d[k])]
    def normalize(self, cfg: Optional[Mapping[str, Any]]) -> Config:
        """``cfg`` (Config, dict or None) completed from the default, less standard fields the kernel lacks, validated;
        Helion's leniency: block sizes clamp into range, reduction chunks too (>= the row: None, i.e. persistent)."""
        # a backend named for codegen stays although the space lacks it (see BACKEND_CHOICES)
        d = {k: _thaw(_freeze(v)) for k, v in _helion_spellings(dict(cfg or {})).items()
             if k not in FIELDS or v is not None and (k in self.fragments or k in BACKEND_CHOICES)}
        for k in ("block_sizes", "reduction_loops"):
            f, v = self.fragments.get(k), d.get(k)
            if isinstance(f, ListOf) and isinstance(v, list) and len(v) == len(f.items):
                d[k] = [x if not _is_pow2(x) else _clip(x, fr.min, fr.max) if k == "block_sizes"
                        else None if x >= next_pow2(fr.extent) or fr.min is None else max(x, fr.min)
                        for x, fr in zip(v, f.items)]
        out = Config(**self._values(d))
        self.validate(out)
        return out
    def validate(self, cfg: Mapping[str, Any]) -> None:
        """Raise ValueError naming the first bad field. ``cfg`` must be complete (see ``normalize``)."""
        for k in (k for k in cfg if k not in self.fragments):
            if k not in BACKEND_CHOICES:
                what = "not a knob of this kernel" if k in FIELDS else "unknown field"
                raise ValueError(f"Config.{k}: {what} (knobs: {', '.join(self.fragments)})")
            if cfg[k] not in BACKEND_CHOICES[k]:
                raise ValueError(f"Config.{k}: {cfg[k]!r} is not one of {BACKEND_CHOICES[k]}")
        for k, f in self.fragments.items():
            if k not in cfg:
                raise ValueError(f"Config.{k}: missing")
            try:
                f.validate(_thaw(_freeze(cfg[k])))
            except ValueError as e:
                raise ValueError(f"Config.{k}: {e}") from None
    def _values(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        d = {k: _thaw(_freeze(v)) for k, v in dict(cfg).items()}
        if any(k not in d for k in self.fragments):
            d.update({k: _thaw(v) for k, v in self.default().items() if k not in d})
        return d
    def __repr__(self) -> str: return "ConfigSpace(" + ", ".join(f"{k}={f!r}" for k, f in self.fragments.items()) + ")"

def unique_configs(space: ConfigSpace, configs: Iterable[Any]) -> list[Config]:
    """Normalised configs, deduplicated, in order; invalid ones dropped (a stale pretuned or seed config)."""
    out: dict[Config, None] = {}
    for c in configs:
        with suppress(ValueError):
            out[space.normalize(c)] = None
    return list(out)

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages), good on Hopper/Ampere for 16-bit GEMMs. 128x256x64 w8 s3
# was the best plain Triton config on H100 (shared/anchors/); 4 stages of it exceed shared memory.
_MATMUL_TILES = [(128, 128, 64, 8, 3), (128, 256, 64, 8, 3), (64, 64, 32, 4, 4), (128, 64, 64, 4, 4),
                 (64, 128, 64, 4, 3)]

def _warps_for(elems: int, per_warp: int = 512) -> int:
    # ~1 warp per 256-512 elements keeps per-thread registers reasonable without starving small blocks.
    return _clip(next_pow2(max(1, elems // per_warp)), 1, 32)

def heuristic_configs(spec: SpaceSpec, shape_hint: Optional[Sequence[int]] = None) -> list[Config]:
    """Analytic seeds valid for ``ConfigSpace(spec)`` (DESIGN §4): whole rows for reductions (looped when long), the
    classic matmul tiles, else 1K-4K elements; ``shape_hint`` (block dims' extents) keeps blocks within the data."""
    space = ConfigSpace(spec)
    base = space.default().to_dict()
    bspecs, nb = spec.block_sizes, len(spec.block_sizes)
    caps = ([b.max for b in bspecs] if shape_hint is None
            else [min(b.max, max(b.min, next_pow2(s))) for b, s in zip(bspecs, shape_hint)])
    def block(i: int, v: int) -> int: return _clip(next_pow2(v), bspecs[i].min, max(bspecs[i].min, caps[i]))
    def blocks(*lead: int) -> list[int]:  # the leading block sizes given, the others at their defaults
        return [block(i, lead[i] if i < len(lead) else bspecs[i].default) for i in range(nb)]
    raw: list[dict] = []
    if spec.reduction_extents:
        row = math.prod(next_pow2(e) for e in spec.reduction_extents)
        # Persistent up to 32K elements per row; beyond that only looped.
        rows_options = ([1] if row <= 32768 else []) + ([max(1, 2048 // row), max(1, 8192 // row)] * (row <= 8192))
        raw += [{**base, "block_sizes": blocks(rows), "reduction_loops": [None] * len(spec.reduction_extents),
                 "num_warps": _warps_for(row * math.prod(blocks(rows)), per_warp), "num_stages": 1}
                for rows in dict.fromkeys(rows_options) for per_warp in (512, 256)]
        if row > 4096:  # long rows: looped reductions in 4K chunks keep registers bounded
            chunks = [4096 if 4096 in f.choices else f.choices[0] for f in space.fragments["reduction_loops"].items]
            raw += [{**base, "block_sizes": blocks(1), "reduction_loops": chunks, "num_warps": w} for w in (4, 8, 16)]
    elif nb >= 3 or (nb == 2 and spec.inner_loops):
        # normalize (unique_configs) drops the knobs the kernel lacks (l2_groupings, indexing)
        raw += [{**base, "block_sizes": blocks(m, n, k), "num_warps": w, "num_stages": s,
                 "l2_groupings": [8] * len(base.get("l2_groupings", []))} for m, n, k, w, s in _MATMUL_TILES]
        # The anchor's winner: persistent + TMA, when the kernel allows it.
        raw.append({**raw[1], "pid_type": "persistent_interleaved", "indexing": "tensor_descriptor"})
    elif nb:
        for target in (1024, 4096):
            bs = [block(i, 1) for i in range(nb)]
            for i in reversed(range(nb)):  # grow the innermost (usually contiguous) dim first
                while math.prod(bs) < target and block(i, bs[i] * 2) != bs[i]:
                    bs[i] = block(i, bs[i] * 2)
            raw.append({**base, "block_sizes": bs, "num_warps": _warps_for(target)})
    return unique_configs(space, raw)  # drops e.g. a tile outside a BlockSpec's bounds after clipping
