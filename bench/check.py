"""Regression check of ours' timings: python -m bench.check --new DIR --old DIR [--band 0.05]
(or --csv new.csv --baseline old.csv). `--old git:REV` compares with the CSVs committed at REV
(e.g. `--new results/H100 --old git:HEAD`: this run against the committed one).

For every (gpu, op, mode, shape, dtype) present in both runs, ours' ms may grow by at
most `band` (relative); ours turning from ok to FAIL/error is also a regression.
Exits 1 naming each regression, 2 when no case is in both runs, 0 otherwise.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from bench.baselines import OURS
from bench.schema import read_rows

KEY = ("gpu", "op", "mode", "shape", "dtype")


def ours_rows(paths: list[Path]) -> dict[tuple, dict]:
    """Ours' rows from CSV files, by KEY."""
    out = {}
    for p in paths:
        for r in read_rows(p):
            if r.get("impl") == OURS:
                out[tuple(r.get(k, "") for k in KEY)] = r
    return out


def csvs(path: Path) -> list[Path]:
    """A CSV file itself, or every CSV under a directory (recursively)."""
    return [path] if path.is_file() else sorted(path.rglob("*.csv"))


def git_top(path: Path) -> str:
    """The git work tree holding path ("" outside git)."""
    import subprocess

    where = path if path.is_dir() else path.parent
    return subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=where,
                          capture_output=True, text=True).stdout.strip()


def bad_revision(rev: str, where: Path) -> str | None:
    """Why `rev` names no commit of the repository at `where`, or None when it does."""
    import subprocess

    top = git_top(where)
    if not top:
        return f"{where} is not inside a git repository"
    ok = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=top,
                        capture_output=True, text=True).returncode == 0
    return None if ok else f"git revision {rev!r} not found in {top}"


def committed(rev: str, new_paths: list[Path], tmp: Path) -> list[Path]:
    """The committed versions (at git revision rev) of the CSVs new_paths, copied under tmp."""
    import subprocess

    out = []
    for p in new_paths:
        p = p.resolve()
        top = git_top(p)
        if not top:
            continue
        rel = p.relative_to(Path(top).resolve()).as_posix()
        show = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=top, capture_output=True, text=True)
        if show.returncode == 0:
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(show.stdout)
            out.append(dst)
    return out


def _ms(r: dict) -> float:
    try:
        return float(r.get("ms") or "nan")
    except ValueError:
        return math.nan


def compare(new: dict, old: dict, band: float) -> tuple[list[str], int]:
    """(regression messages, number of cases compared)."""
    problems, n = [], 0
    for key in sorted(set(new) & set(old)):
        a, b = old[key], new[key]
        label = " ".join(key)
        if a.get("status") == "ok" and b.get("status") != "ok":
            problems.append(f"{label}: status {a.get('status')} -> {b.get('status')}")
            continue
        if b.get("status") != "ok" or a.get("status") != "ok":
            continue  # the time of a wrong result is no baseline to hold
        ms_old, ms_new = _ms(a), _ms(b)
        if not (math.isfinite(ms_old) and math.isfinite(ms_new)):
            continue
        n += 1
        if ms_new > ms_old * (1 + band):
            problems.append(f"{label}: {ms_old:.4f} ms -> {ms_new:.4f} ms (+{(ms_new / ms_old - 1) * 100:.1f}%)")
    return problems, n


def main(argv=None) -> int:
    """CLI entry point; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m bench.check", description=__doc__.split("\n\n")[0])
    p.add_argument("--new", help="directory of the new run's CSVs")
    p.add_argument("--old", help="directory of the committed run's CSVs, or git:REV (the CSVs of --new at REV)")
    p.add_argument("--csv", help="new CSV file")
    p.add_argument("--baseline", help="old CSV file")
    p.add_argument("--band", type=float, default=0.05, help="allowed relative slowdown (default 0.05)")
    args = p.parse_args(argv)
    new_path, old_path = (args.new, args.old) if args.new or args.old else (args.csv, args.baseline)
    new_opt, old_opt = ("--new", "--old") if args.new or args.old else ("--csv", "--baseline")
    if not (new_path and old_path):
        p.error("give --new DIR --old DIR, or --csv NEW --baseline OLD")
    if args.band < 0:
        p.error(f"argument --band: {args.band} is negative (want a relative slowdown such as 0.05)")
    if not Path(new_path).exists():
        p.error(f"argument {new_opt}: no such file or directory: {new_path}")
    new_csvs = csvs(Path(new_path))
    if old_path.startswith("git:"):
        import tempfile

        rev = old_path[4:] or "HEAD"
        why = bad_revision(rev, Path(new_path).resolve())
        if why:
            p.error(f"argument {old_opt}: {why} (want git:REV, e.g. git:HEAD or git:HEAD~3)")
        old_csvs = committed(rev, new_csvs, Path(tempfile.mkdtemp(prefix="bench_check_")))
        if new_csvs and not old_csvs:
            p.error(f"argument {old_opt}: none of the CSVs under {new_path} exists at {rev}")
    else:
        if not Path(old_path).exists():
            p.error(f"argument {old_opt}: no such file or directory: {old_path}")
        old_csvs = csvs(Path(old_path))
    new, old = ours_rows(new_csvs), ours_rows(old_csvs)
    problems, n = compare(new, old, args.band)
    only = len(set(new) ^ set(old))
    for msg in problems:
        print(f"REGRESSION {msg}")
    print(f"compared {n} cases of {OURS} (band {args.band:.0%}); {len(problems)} regressions; "
          f"{only} cases in only one run")
    if problems:
        return 1
    if n == 0:
        print("nothing to compare: no case of ours is in both runs")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
