"""Rebuild reports from the results CSVs: python -m bench.report [--results DIR] [--readme FILE].

Writes results/<GPU>/README.md (tables per op/mode/dtype), results/<GPU>/<op>.png
(throughput vs shape), results/README.md (geomean speedups of ours per op and GPU),
and copies that summary into the project README between the results markers.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.baselines import OURS
from bench.metrics import geomean

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
NO_RESULTS = "*No GPU results committed yet.*"


def load(gpu_dir: Path) -> pd.DataFrame:
    """All <op>.csv rows of one GPU directory, in file order."""
    frames = [pd.read_csv(p, dtype={"shape": str, "commit": str, "date": str})
              for p in sorted(gpu_dir.glob("*.csv"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def gpu_dirs(results: Path) -> list[Path]:
    """Subdirectories of results/ that hold CSVs, sorted by name."""
    return sorted(d for d in results.iterdir() if d.is_dir() and any(d.glob("*.csv"))) if results.is_dir() else []


def impl_order(df: pd.DataFrame) -> list[str]:
    """Ours, eager, compile, then the rest in order of appearance."""
    seen = list(dict.fromkeys(df["impl"]))
    first = [n for n in (OURS, "eager", "compile") if n in seen]
    return first + [n for n in seen if n not in first]


def baselines_of(df: pd.DataFrame) -> list[str]:
    """Names b with a speedup_vs_b column, eager and compile first."""
    cols = [c[len("speedup_vs_"):] for c in df.columns if c.startswith("speedup_vs_")]
    first = [b for b in ("eager", "compile") if b in cols]
    return first + [b for b in cols if b not in first]


def _num(v: float) -> str:
    return "—" if not math.isfinite(v) else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}")


def _x(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{v:.2f}x"


def _fraction(r, ceiling: float | None) -> float:
    """ours' share of the ceiling: the row's frac_of_ceiling (measured in its run), else from ceilings.json."""
    v = getattr(r, "frac_of_ceiling", math.nan)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return r.metric / ceiling if ceiling and math.isfinite(r.metric) else math.nan


def case_table(df: pd.DataFrame, ceiling: float | None = None) -> str:
    """Markdown table for one (op, mode, dtype): throughput per impl, ours' % of the ceiling, speedups of ours."""
    impls = impl_order(df)
    unit = df["unit"].iloc[0]
    vs = [b for b in baselines_of(df) if b in impls]
    rows = []
    for shape, g in df.groupby("shape", sort=False):
        by = {r.impl: r for r in g.itertuples()}
        row = [shape]
        for n in impls:
            r = by.get(n)
            row.append("" if r is None else (_num(r.metric) if r.status == "ok" else r.status))
        ours = by.get(OURS)
        frac = _fraction(ours, ceiling) if ours is not None and ours.status == "ok" else math.nan
        row.append("—" if not math.isfinite(frac) else f"{100 * frac:.0f}%")
        for b in vs:
            row.append("FAIL" if ours is not None and ours.status == "FAIL"
                       else _x(getattr(ours, f"speedup_vs_{b}", math.nan) if ours is not None else math.nan))
        rows.append(row)
    headers = ["shape"] + [f"{n} ({unit})" for n in impls] + ["ours % of ceiling"] + [f"vs {b}" for b in vs]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def ceilings_of(gpu_dir: Path) -> dict:
    """ceilings.json written by bench.run, or {}."""
    p = gpu_dir / "ceilings.json"
    return json.loads(p.read_text()) if p.exists() else {}


def runs_of(gpu_dir: Path) -> dict:
    """runs.json written by bench.run (one entry per op: command, time spent, notes), or {}."""
    p = gpu_dir / "runs.json"
    try:
        return json.loads(p.read_text()) if p.exists() else {}
    except ValueError:
        return {}


def runs_section(runs: dict) -> list[str]:
    """Markdown lines: how each op was last run (command, cases, seconds, first calls, notes)."""
    if not runs:
        return []
    lines = ["## How these were run", "",
             "| op | cases run | seconds | first calls (s) | do_bench warmup/rep ms | date | command |",
             "|---|---|---|---|---|---|---|"]
    notes, helion = [], set()
    for op, r in sorted(runs.items()):
        firsts = ", ".join(f"{k} {v}" for k, v in r.get("first_call_s", {}).items())
        wr = "/".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in r.get("do_bench_ms", [])) or "?"
        lines.append(f"| {op} | {r.get('cases_run', '?')}/{r.get('cases_planned', '?')} | {r.get('seconds', '?')} | "
                     f"{firsts} | {wr} | {r.get('date', '')} | `{r.get('command', '')}` |")
        notes += [f"- {n}" for n in r.get("notes", [])]
        if r.get("cuda_error"):
            notes.append(f"- {op}: run stopped, CUDA context broken: {r['cuda_error']}")
        if r.get("helion"):
            helion.add(r["helion"])
    lines.append("")
    if helion:
        lines += [f"- `helion` column: {h}" for h in sorted(helion)]
    if notes:
        lines += notes
    return lines + [""]


def gpu_readme(gpu_dir: Path, df: pd.DataFrame) -> str:
    """Markdown for results/<GPU>/README.md."""
    ceil = ceilings_of(gpu_dir)
    uniq = lambda c: ", ".join(sorted(df[c].dropna().astype(str).unique())) if c in df else "?"  # noqa: E731
    lines = [f"# Results: {ceil.get('gpu_full', gpu_dir.name)}", "",
             f"- torch {uniq('torch')}, triton {uniq('triton')}; commit {uniq('commit')}",
             f"- dates: {df['date'].min()} to {df['date'].max()}" if "date" in df else "- dates: ?"]
    if ceil:
        lines.append(f"- ceilings (measured in the run): copy {ceil['copy_GBps']:,.0f} GB/s (1 GiB D2D, read+write); "
                     f"cuBLAS bf16 8192³ {ceil['matmul_TFLOPs']:,.0f} TFLOP/s")
    lines += ["- cells: median throughput; `ours % of ceiling`: ours' throughput over the copy bandwidth (GB/s) "
              "or cuBLAS bf16 (TFLOP/s) ceiling measured in the same run; `vs X` = X's ms / ours' ms (> 1: ours faster); "
              "FAIL = error above tolerance, no speedup reported", "",
              "Generated by `python -m bench.report` from the CSVs here.", ""]
    for op, g_op in df.groupby("op", sort=True):
        lines += [f"## {op}", "", f"![{op}]({op}.png)", ""]
        for (mode, dtype), g in g_op.groupby(["mode", "dtype"], sort=False):
            unit = g["unit"].iloc[0]
            ceiling = ceil.get({"GB/s": "copy_GBps", "TFLOP/s": "matmul_TFLOPs"}.get(unit, ""))
            lines += [f"### {op} {mode} {dtype}", "", case_table(g, ceiling), ""]
    lines += runs_section(runs_of(gpu_dir))
    return "\n".join(lines)


def plot(df: pd.DataFrame, op: str, path: Path, ceilings: dict) -> None:
    """PNG of throughput vs shape for one op, a panel per (mode, dtype), a line per impl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(df.groupby(["mode", "dtype"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    unit = df["unit"].iloc[0]
    ceiling = ceilings.get({"GB/s": "copy_GBps", "TFLOP/s": "matmul_TFLOPs"}.get(unit, ""))
    for ax, ((mode, dtype), g) in zip(axes[0], panels):
        shapes = list(dict.fromkeys(g["shape"]))
        for n in impl_order(g):
            sub = g[(g["impl"] == n) & (g["status"] == "ok")]
            ys = [sub[sub["shape"] == s]["metric"].max() if s in set(sub["shape"]) else math.nan for s in shapes]
            ax.plot(range(len(shapes)), ys, marker="o", label=n, linewidth=2.5 if n == OURS else 1.2)
        if ceiling:
            ax.axhline(ceiling, color="gray", linestyle="--", label=f"ceiling {ceiling:,.0f} {unit}")
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels(shapes, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{op} {mode} {dtype}")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary(results: Path, link_prefix: str = "") -> str:
    """Markdown table: geomean speedup of ours vs each baseline, per GPU, op and mode."""
    rows, vs_all = [], []
    for d in gpu_dirs(results):
        df = load(d)
        for (op, mode), g in df.groupby(["op", "mode"], sort=True):
            ours = g[g["impl"] == OURS]
            vs = baselines_of(g)
            vs_all += [b for b in vs if b not in vs_all]
            cell = {b: _x(geomean(ours[f"speedup_vs_{b}"].tolist())) for b in vs}
            fails = int((ours["status"] != "ok").sum())
            rows.append((f"[{d.name}]({link_prefix}{d.name}/README.md)", op, mode, cell, len(ours), fails))
    if not rows:
        return NO_RESULTS
    body = [[gpu, op, mode] + [c.get(b, "") for b in vs_all] + [n, f] for gpu, op, mode, c, n, f in rows]
    return tabulate(body, headers=["GPU", "op", "mode"] + [f"vs {b}" for b in vs_all] + ["cases", "ours not ok"],
                    tablefmt="github", disable_numparse=True)


def results_readme(results: Path) -> str:
    """Markdown for results/README.md."""
    return "\n".join([
        "# Benchmark results", "",
        "Geomean over shapes and dtypes of `X ms / helion_ops ms` (> 1: helion_ops faster). "
        "Cases where either side failed its accuracy check or errored are left out of the geomean; "
        "`ours not ok` counts those where helion_ops did. One directory per GPU holds the CSVs (`<op>.csv`), tables "
        "(`README.md`), plots (`<op>.png`) and the measured ceilings (`ceilings.json`).", "",
        summary(results), "",
        "Regenerate with `python -m bench.report`; produce with `scripts/run` on a GPU; "
        "compare two runs with `python -m bench.check --new DIR --old DIR`.", ""])


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between the results markers; False when the markers are missing."""
    text = readme.read_text()
    pat = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pat.search(text):
        return False
    readme.write_text(pat.sub(lambda _: f"{BEGIN}\n{table}\n{END}", text, count=1))
    return True


def build(results: Path, readme: Path | None = None) -> list[Path]:
    """Rebuild every report under results/ (and the project README's table); returns files written."""
    results = Path(results)
    written = []
    for d in gpu_dirs(results):
        df = load(d)
        (d / "README.md").write_text(gpu_readme(d, df))
        written.append(d / "README.md")
        for op, g in df.groupby("op", sort=True):
            plot(g, op, d / f"{op}.png", ceilings_of(d))
            written.append(d / f"{op}.png")
    results.mkdir(parents=True, exist_ok=True)
    (results / "README.md").write_text(results_readme(results))
    written.append(results / "README.md")
    if readme is not None and update_readme(Path(readme), summary(results, link_prefix=f"{results.name}/")):
        written.append(Path(readme))
    return written


def main(argv=None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=str(REPO / "results"))
    p.add_argument("--readme", default=None, help="README to update (default: the project's, for the repo's results/)")
    p.add_argument("--no-readme", action="store_true")
    args = p.parse_args(argv)
    results = Path(args.results)
    readme = None if args.no_readme else (
        Path(args.readme) if args.readme else
        (REPO / "README.md" if results.resolve() == (REPO / "results").resolve() else None))
    for path in build(results, readme):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
