"""Typed tuning knobs (fragments): each knows its default, how to draw a random
value, mutate one and cross two over, so the search in autotune/ stays generic.

A ConfigSpace (config.py) is a dict of Config field -> Fragment built from what
the compiler declares about a kernel.
"""
from __future__ import annotations

import random as _random
from typing import Any, Optional, Sequence

# ---------------------------------------------------------------------------
# Fragments: one typed knob each. The search (autotune/search.py) only ever
# talks to these methods, so adding a knob never touches the search.
# ``rng`` is a ``random.Random``.
# ---------------------------------------------------------------------------

def next_pow2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()

def _clip(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else hi if v > hi else v

def _is_pow2(n: Any) -> bool:
    return _is_int(n) and n > 0 and n & (n - 1) == 0

def _is_int(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool)

def _same(a: Any, b: Any) -> bool:
    # Type-strict equality: in enum choices [None, False, True], 0 must not
    # match False nor 1 match True.
    return type(a) is type(b) and a == b

class Fragment:
    """Base class of a tunable knob's value domain."""

    def default(self) -> Any:
        raise NotImplementedError

    def random(self, rng: _random.Random) -> Any:
        raise NotImplementedError

    def mutate(self, value: Any, rng: _random.Random) -> Any:
        """A small random step away from ``value`` (may return ``value`` when
        the domain has a single point)."""
        raise NotImplementedError

    def crossover(self, a: Any, b: Any, rng: _random.Random) -> Any:
        """Uniform crossover: one parent's value."""
        return a if rng.random() < 0.5 else b

    def differential(self, a: Any, b: Any, c: Any, rng: _random.Random) -> Any:
        """Discrete DE step ``a + (b - c)``. For categorical values think of
        one-hot vectors: b == c leaves a; a == c gives b; otherwise a or b."""
        if _same_value(b, c):
            return a
        if _same_value(a, c):
            return b
        return a if rng.random() < 0.5 else b

    def neighbors(self, value: Any) -> list:
        """Values one step away (pattern search), excluding ``value``."""
        raise NotImplementedError

    def validate(self, value: Any) -> None:
        """Raise ValueError when ``value`` is outside the domain."""
        raise NotImplementedError

def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return _same(a, b)

class _OrderedFragment(Fragment):
    """A finite ordered domain; steps move along the order. Subclasses give
    ``choices`` (sorted) and may override index arithmetic."""

    choices: list
    _default: Any

    def default(self) -> Any:
        return self._default

    def _index(self, value: Any) -> int:
        for i, c in enumerate(self.choices):
            if _same(c, value):
                return i
        raise ValueError(f"{value!r} is not {self._describe()}")

    def _describe(self) -> str:
        return f"one of {self.choices}"

    def random(self, rng: _random.Random) -> Any:
        return rng.choice(self.choices)

    def mutate(self, value: Any, rng: _random.Random) -> Any:
        n = len(self.choices)
        if n == 1:
            return self.choices[0]
        i = self._index(value)
        # Mostly one step, sometimes two: enough to escape a flat plateau.
        step = rng.choice((-2, -1, -1, 1, 1, 2))
        j = min(max(i + step, 0), n - 1)
        if j == i:
            j = i - 1 if i > 0 else i + 1
        return self.choices[j]

    def differential(self, a: Any, b: Any, c: Any, rng: _random.Random) -> Any:
        j = self._index(a) + self._index(b) - self._index(c)
        return self.choices[min(max(j, 0), len(self.choices) - 1)]

    def neighbors(self, value: Any) -> list:
        i = self._index(value)
        return [self.choices[j] for j in (i - 1, i + 1) if 0 <= j < len(self.choices)]

    def validate(self, value: Any) -> None:
        self._index(value)

class PowerOfTwoFragment(_OrderedFragment):
    """Powers of two in [min, max]; steps are x2 / /2."""

    def __init__(self, min: int, max: int, default: Optional[int] = None) -> None:
        if not (_is_pow2(min) and _is_pow2(max) and min <= max):
            raise ValueError(f"PowerOfTwoFragment bounds must be powers of 2, min <= max: {min}, {max}")
        self.min, self.max = min, max
        self.choices = [1 << e for e in range(min.bit_length() - 1, max.bit_length())]
        self._default = _clip(next_pow2(min if default is None else default), min, max)

    def _describe(self) -> str:
        return f"a power of 2 in [{self.min}, {self.max}]"

    def __repr__(self) -> str:
        return f"PowerOfTwoFragment({self.min}, {self.max}, {self._default})"

class IntegerFragment(Fragment):
    """Integers in [min, max]; steps are +-1 (occasionally +-2)."""

    def __init__(self, min: int, max: int, default: Optional[int] = None) -> None:
        if not (_is_int(min) and _is_int(max) and min <= max):
            raise ValueError(f"IntegerFragment bounds must be ints, min <= max: {min}, {max}")
        self.min, self.max = min, max
        self._default = _clip(min if default is None else default, min, max)

    def default(self) -> int:
        return self._default

    def random(self, rng: _random.Random) -> int:
        return rng.randint(self.min, self.max)

    def mutate(self, value: int, rng: _random.Random) -> int:
        if self.min == self.max:
            return value
        v = _clip(value + rng.choice((-2, -1, -1, 1, 1, 2)), self.min, self.max)
        return v if v != value else (value - 1 if value > self.min else value + 1)

    def differential(self, a: int, b: int, c: int, rng: _random.Random) -> int:
        return _clip(a + b - c, self.min, self.max)

    def neighbors(self, value: int) -> list:
        return [v for v in (value - 1, value + 1) if self.min <= v <= self.max]

    def validate(self, value: Any) -> None:
        if not (_is_int(value) and self.min <= value <= self.max):
            raise ValueError(f"{value!r} is not an integer in [{self.min}, {self.max}]")

    def __repr__(self) -> str:
        return f"IntegerFragment({self.min}, {self.max}, {self._default})"

class EnumFragment(Fragment):
    """One of ``choices`` (unordered: every other choice is a neighbour)."""

    def __init__(self, choices: Sequence[Any], default: Any = None) -> None:
        self.choices = list(choices)
        if not self.choices:
            raise ValueError("EnumFragment needs at least one choice")
        self._default = self.choices[0] if default is None and None not in self.choices else default
        self.validate(self._default)

    def default(self) -> Any:
        return self._default

    def random(self, rng: _random.Random) -> Any:
        return rng.choice(self.choices)

    def mutate(self, value: Any, rng: _random.Random) -> Any:
        others = self.neighbors(value)
        return rng.choice(others) if others else value

    def neighbors(self, value: Any) -> list:
        return [c for c in self.choices if not _same(c, value)]

    def validate(self, value: Any) -> None:
        if not any(_same(c, value) for c in self.choices):
            raise ValueError(f"{value!r} is not one of {self.choices}")

    def __repr__(self) -> str:
        return f"EnumFragment({self.choices!r}, {self._default!r})"

class FixedFragment(EnumFragment):
    """A knob pinned to one value at this position, with the reason given when another is asked for."""

    def __init__(self, value: Any, why: str) -> None:
        super().__init__([value], value)
        self.why = why

    def validate(self, value: Any) -> None:
        if not _same(value, self._default):
            raise ValueError(f"{value!r}: {self.why}")

class BoolFragment(EnumFragment):
    """False or True."""

    def __init__(self, default: bool = False) -> None:
        super().__init__([False, True], bool(default))

class PermutationFragment(Fragment):
    """A permutation of range(n) (a loop order); steps swap two entries."""

    def __init__(self, n: int) -> None:
        self.n = n

    def default(self) -> list:
        return list(range(self.n))

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
        out = []
        for i in range(self.n - 1):
            p = list(value)
            p[i], p[i + 1] = p[i + 1], p[i]
            out.append(p)
        return out

    def validate(self, value: Any) -> None:
        if not (isinstance(value, list) and all(_is_int(v) for v in value)
                and sorted(value) == list(range(self.n))):
            raise ValueError(f"{value!r} is not a permutation of range({self.n})")

    def __repr__(self) -> str:
        return f"PermutationFragment({self.n})"

class ReductionLoopFragment(PowerOfTwoFragment):
    """Chunk size of a looped reduction, or None for persistent (the whole
    row at once). None sits above the largest chunk in the step order, so a
    neighbour of "persistent" is "the biggest chunk"."""

    def __init__(self, extent: int) -> None:
        self.extent = extent
        top = next_pow2(extent) // 2
        self.choices = [] if top < 16 else [1 << e for e in range(4, top.bit_length())]
        self.choices.append(None)
        self.min, self.max = (16, top) if top >= 16 else (None, None)
        self._default = None if next_pow2(extent) <= 16384 else 4096

    def _describe(self) -> str:
        return f"None or a power of 2 in [16, {self.max}]" if self.max else "None"

    def __repr__(self) -> str:
        return f"ReductionLoopFragment({self.extent})"

class ListOf(Fragment):
    """A fixed-length list. ``ListOf(fragment, n)`` repeats one fragment;
    ``ListOf([f0, f1, ...])`` gives each position its own domain."""

    def __init__(self, fragment: Any, n: Optional[int] = None) -> None:
        if isinstance(fragment, Fragment):
            if n is None:
                raise ValueError("ListOf(fragment, n) needs n")
            self.items = [fragment] * n
        else:
            self.items = list(fragment)
            if n is not None and n != len(self.items):
                raise ValueError("ListOf: n does not match the number of fragments")

    def __len__(self) -> int:
        return len(self.items)

    def default(self) -> list:
        return [f.default() for f in self.items]

    def random(self, rng: _random.Random) -> list:
        return [f.random(rng) for f in self.items]

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
        out = []
        for i, f in enumerate(self.items):
            for v in f.neighbors(value[i]):
                out.append(value[:i] + [v] + value[i + 1:])
        return out

    def validate(self, value: Any) -> None:
        if not isinstance(value, list) or len(value) != len(self.items):
            raise ValueError(f"expected a list of {len(self.items)} entries, got {value!r}")
        for i, (f, v) in enumerate(zip(self.items, value)):
            try:
                f.validate(v)
            except ValueError as e:
                raise ValueError(f"[{i}]: {e}") from None

    def __repr__(self) -> str:
        return f"ListOf({self.items!r})"
