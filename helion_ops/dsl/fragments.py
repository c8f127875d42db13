"""Typed tuning knobs (fragments): each draws, steps, crosses over and validates its values, so the searches in
autotune/ stay generic. A ConfigSpace (config.py) maps each Config field of a kernel to one."""
from __future__ import annotations

import random as _random
from typing import Any, Optional, Sequence

STEPS = (-2, -1, -1, 1, 1, 2)  # mostly one step, sometimes two: enough to escape a flat plateau

def next_pow2(n: int) -> int: return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()

def _clip(v: int, lo: int, hi: int) -> int: return lo if v < lo else hi if v > hi else v

def _is_int(n: Any) -> bool: return isinstance(n, int) and not isinstance(n, bool)

def _is_pow2(n: Any) -> bool: return _is_int(n) and n > 0 and n & (n - 1) == 0

def _same(a: Any, b: Any) -> bool:
    # Type-strict equality: in enum choices [None, False, True], 0 must not match False nor 1 match True.
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b

class Fragment:
    """A knob's value domain, by default the unordered ``choices``; the searches only call these methods."""
    choices: Sequence[Any]
    _default: Any
    def default(self) -> Any: return self._default
    def random(self, rng: _random.Random) -> Any: return rng.choice(self.choices)
    def mutate(self, value: Any, rng: _random.Random) -> Any:
        """A small random step away from ``value`` (``value`` itself when the domain has one point)."""
        others = self.neighbors(value)
        return rng.choice(others) if others else value
    def crossover(self, a: Any, b: Any, rng: _random.Random) -> Any: return a if rng.random() < 0.5 else b
    def differential(self, a: Any, b: Any, c: Any, rng: _random.Random) -> Any:
        """Discrete DE step ``a + (b - c)`` on one-hot vectors: b == c leaves a, a == c gives b, else a or b."""
        return a if _same(b, c) else b if _same(a, c) else self.crossover(a, b, rng)
    def neighbors(self, value: Any) -> list: return [c for c in self.choices if not _same(c, value)]
    def validate(self, value: Any) -> None: self._index(value)
    def _index(self, value: Any) -> int:
        for i, c in enumerate(self.choices):
            if _same(c, value):
                return i
        raise ValueError(f"{value!r} is not {self._describe()}")
    def _describe(self) -> str: return f"one of {self.choices}"

class _OrderedFragment(Fragment):
    """A finite domain whose ``choices`` are sorted; steps move along the order."""
    def mutate(self, value: Any, rng: _random.Random) -> Any:
        n = len(self.choices)
        if n == 1:
            return self.choices[0]
        i = self._index(value)
        j = _clip(i + rng.choice(STEPS), 0, n - 1)
        return self.choices[j if j != i else i - 1 if i > 0 else i + 1]
    def differential(self, a: Any, b: Any, c: Any, rng: _random.Random) -> Any:
        return self.choices[_clip(self._index(a) + self._index(b) - self._index(c), 0, len(self.choices) - 1)]
    def neighbors(self, value: Any) -> list:
        i = self._index(value)
        return [self.choices[j] for j in (i - 1, i + 1) if 0 <= j < len(self.choices)]
    def __repr__(self) -> str: return f"{type(self).__name__}({self.min}, {self.max}, {self._default})"

class PowerOfTwoFragment(_OrderedFragment):
    """Powers of two in [min, max]; steps are x2 / /2."""
    def __init__(self, min: int, max: int, default: Optional[int] = None) -> None:
        if not (_is_pow2(min) and _is_pow2(max) and min <= max):
            raise ValueError(f"PowerOfTwoFragment bounds must be powers of 2, min <= max: {min}, {max}")
        self.min, self.max = min, max
        self.choices = [1 << e for e in range(min.bit_length() - 1, max.bit_length())]
        self._default = _clip(next_pow2(min if default is None else default), min, max)
    def _describe(self) -> str: return f"a power of 2 in [{self.min}, {self.max}]"

class IntegerFragment(_OrderedFragment):
    """Integers in [min, max]; steps are +-1 (occasionally +-2)."""
    def __init__(self, min: int, max: int, default: Optional[int] = None) -> None:
        if not (_is_int(min) and _is_int(max) and min <= max):
            raise ValueError(f"IntegerFragment bounds must be ints, min <= max: {min}, {max}")
        self.min, self.max, self.choices = min, max, range(min, max + 1)
        self._default = _clip(min if default is None else default, min, max)
    def _index(self, value: Any) -> int:  # arithmetic, not a scan: a tunable's range may be wide
        if _is_int(value) and self.min <= value <= self.max:
            return value - self.min
        raise ValueError(f"{value!r} is not an integer in [{self.min}, {self.max}]")

class EnumFragment(Fragment):
    """One of ``choices`` (unordered: every other choice is a neighbour)."""
    def __init__(self, choices: Sequence[Any], default: Any = None) -> None:
        self.choices = list(choices)
        if not self.choices:
            raise ValueError("EnumFragment needs at least one choice")
        self._default = self.choices[0] if default is None and None not in self.choices else default
        self.validate(self._default)
    def __repr__(self) -> str: return f"EnumFragment({self.choices!r}, {self._default!r})"

class FixedFragment(EnumFragment):
    """A knob pinned to one value at this position, with the reason given when another is asked for."""
    def __init__(self, value: Any, why: str) -> None:
        super().__init__([value], value)
        self.why = why
    def validate(self, value: Any) -> None:
        if not _same(value, self._default):
            raise ValueError(f"{value!r}: {self.why}")

class BoolFragment(EnumFragment):
    def __init__(self, default: bool = False) -> None: super().__init__([False, True], bool(default))

class PermutationFragment(Fragment):
    """A permutation of range(n) (a loop order); steps swap two entries."""
    def __init__(self, n: int) -> None: self.n = n
    def default(self) -> list: return list(range(self.n))
    def random(self, rng: _random.Random) -> list:
        p = list(range(self.n))
        rng.shuffle(p)
        return p
    def mutate(self, value: list, rng: _random.Random) -> list:
        p = list(value)
        if self.n >= 2:
            i, j = rng.sample(range(self.n), 2)
            p[i], p[j] = p[j], p[i]
        return p
    def neighbors(self, value: list) -> list:
        return [[*value[:i], value[i + 1], value[i], *value[i + 2:]] for i in range(self.n - 1)]
    def validate(self, value: Any) -> None:
        if not (isinstance(value, list) and all(map(_is_int, value)) and sorted(value) == list(range(self.n))):
            raise ValueError(f"{value!r} is not a permutation of range({self.n})")
    def __repr__(self) -> str: return f"PermutationFragment({self.n})"

class ReductionLoopFragment(PowerOfTwoFragment):
    """Chunk size of a looped reduction, or None for persistent (the whole row at once). None sits above
    the largest chunk in the step order, so a neighbour of "persistent" is "the biggest chunk"."""
    def __init__(self, extent: int) -> None:
        self.extent = extent
        top = next_pow2(extent) // 2
        self.choices = [1 << e for e in range(4, top.bit_length())] + [None]
        self.min, self.max = (16, top) if top >= 16 else (None, None)
        self._default = None if next_pow2(extent) <= 16384 else 4096
    def _describe(self) -> str: return f"None or a power of 2 in [16, {self.max}]" if self.max else "None"
    def __repr__(self) -> str: return f"ReductionLoopFragment({self.extent})"

class ListOf(Fragment):
    """A fixed-length list: ``ListOf(fragment, n)`` or ``ListOf([f0, f1, ...])`` (a domain per position)."""
    def __init__(self, fragment: Any, n: Optional[int] = None) -> None:
        one = isinstance(fragment, Fragment)
        if n is None if one else n not in (None, len(fragment)):
            raise ValueError("ListOf takes (fragment, n) or a list of fragments (and n, if given, their number)")
        self.items = [fragment] * n if one else list(fragment)
    def __len__(self) -> int: return len(self.items)
    def default(self) -> list: return [f.default() for f in self.items]
    def random(self, rng: _random.Random) -> list: return [f.random(rng) for f in self.items]
    def mutate(self, value: list, rng: _random.Random) -> list:
        out = list(value)
        if out:
            i = rng.randrange(len(out))
            out[i] = self.items[i].mutate(out[i], rng)
        return out
    def crossover(self, a: list, b: list, rng: _random.Random) -> list:
        return [f.crossover(x, y, rng) for f, x, y in zip(self.items, a, b)]
    def differential(self, a: list, b: list, c: list, rng: _random.Random) -> list:
        return [f.differential(x, y, z, rng) for f, x, y, z in zip(self.items, a, b, c)]
    def neighbors(self, value: list) -> list:
        return [value[:i] + [v] + value[i + 1:] for i, f in enumerate(self.items) for v in f.neighbors(value[i])]
    def validate(self, value: Any) -> None:
        if not isinstance(value, list) or len(value) != len(self.items):
            raise ValueError(f"expected a list of {len(self.items)} entries, got {value!r}")
        for i, (f, v) in enumerate(zip(self.items, value)):
            try:
                f.validate(v)
            except ValueError as e:
                raise ValueError(f"[{i}]: {e}") from None
    def __repr__(self) -> str: return f"ListOf({self.items!r})"
