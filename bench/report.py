"""Rebuild reports from the results CSVs: python -m bench.report [--results DIR] [--readme FILE].

Writes results/<GPU>/README.md (tables per op/mode/dtype), results/<GPU>/<op>.png
(throughput per shape), results/README.md (geomean speedups of ours per op and GPU, each with the
number of shapes it rests on, and every baseline's version and tuning state), results/index.html
(one static page over every GPU: bench.site), and copies the summary into the project README
between the results markers.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.baselines import COMPILE_MAX, COPY, LIGER, MAX_MODE, OURS
from bench.metrics import geomean

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
NO_RESULTS = "*No GPU results committed yet.*"
FEW_SHAPES = 4  # a geomean over fewer shapes is marked FEW
FEW = "†"
TEXT_COLS = ("shape", "commit", "date", "tuning", "version", "note", "status", "impl", "op", "mode", "dtype",
             "graph_note")
NUM_COLS = ("ms", "metric", "err", "compile_s", "tune_s", "ms_graph")


def load(gpu_dir: Path) -> pd.DataFrame:
    """All <op>.csv rows of one GPU directory, in file order (text columns "" where a row has none)."""
    frames = [pd.read_csv(p, dtype={c: str for c in TEXT_COLS}, keep_default_na=False,
                          na_values={c: [""] for c in NUM_COLS})
              for p in sorted(gpu_dir.glob("*.csv"))]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for c in ("tuning", "version", "note"):
        if not df.empty and c not in df:
            df[c] = ""
    for c in TEXT_COLS:  # a column some CSVs lack (graph_note: runs without graph timing) is NaN there
        if c in df:
            df[c] = df[c].fillna("")
    for c in df.columns:
        if c.startswith("speedup_vs_") or c in NUM_COLS or c == "frac_of_ceiling":
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def is_tuned(tuning: str) -> bool:
    """Whether a row's tuning state is a search (helion "quick", "quick (stored)"; compile_max's mode)."""
    return bool(tuning) and tuning != "none"


def tuning_word(tuning: str) -> str:
    """'tuned: quick, cap 30 s' or 'untuned', for a cell (the search's effort and cap, stored or not)."""
    return f"tuned: {tuning.replace(' (stored)', '')}" if is_tuned(tuning) else "untuned"


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


def case_rows(df: pd.DataFrame, ceiling: float | None = None) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) for one (op, mode, dtype): throughput per impl (helion's marked tuned/untuned),
    ours' % of the ceiling, speedups of ours."""
    impls = impl_order(df)
    unit = df["unit"].iloc[0]
    vs = [b for b in baselines_of(df) if b in impls]
    rows = []
    for shape, g in df.groupby("shape", sort=False):
        by = {r.impl: r for r in g.itertuples()}
        row = [shape]
        for n in impls:
            r = by.get(n)
            cell = "" if r is None else (_num(r.metric) if r.status == "ok" else r.status)
            if r is not None and n == "helion":  # say beside each Helion figure whether it was tuned
                cell += f" ({tuning_word(getattr(r, 'tuning', ''))})"
            row.append(cell)
        ours = by.get(OURS)
        frac = _fraction(ours, ceiling) if ours is not None and ours.status == "ok" else math.nan
        row.append("—" if not math.isfinite(frac) else f"{100 * frac:.0f}%")
        for b in vs:
            row.append("FAIL" if ours is not None and ours.status == "FAIL"
                       else _x(getattr(ours, f"speedup_vs_{b}", math.nan) if ours is not None else math.nan))
        rows.append(row)
    headers = ["shape"] + [f"{n} ({unit})" for n in impls] + ["ours % of ceiling"] + [f"vs {b}" for b in vs]
    gvs = graph_baselines(df)
    if gvs is not None:  # the graph columns: ours' throughput and speedups, every impl captured and replayed
        for row, (shape, g) in zip(rows, df.groupby("shape", sort=False)):
            by = {r.impl: r for r in g.itertuples()}
            ours = by.get(OURS)
            ours_ms = _graph_ms(ours)
            row.append(_num(ours.metric * ours.ms / ours_ms) if math.isfinite(ours_ms) else _graph_why(ours))
            for b in gvs:
                b_ms = _graph_ms(by.get(b))
                row.append(_x(b_ms / ours_ms) if math.isfinite(b_ms) and math.isfinite(ours_ms)
                           else _graph_why(by.get(b)) if math.isfinite(ours_ms) else "—")
        headers += [f"ours graph ({unit})"] + [f"vs {b} (graph)" for b in gvs]
    return headers, rows


def graph_baselines(df: pd.DataFrame) -> list[str] | None:
    """The impls other than ours with a graph timing column in df (None: no row of df was graph-timed)."""
    if "ms_graph" not in df or not df["ms_graph"].notna().any():
        return None
    timed = df[df["ms_graph"].notna() | (df.get("graph_note", "") != "")]
    return [n for n in impl_order(df) if n != OURS and n in set(timed["impl"])]


def _graph_ms(r) -> float:
    """A row's graph-replayed ms when it passed its check, else NaN."""
    v = getattr(r, "ms_graph", math.nan) if r is not None and r.status == "ok" else math.nan
    return float(v) if isinstance(v, (int, float)) else math.nan


def _graph_why(r) -> str:
    """The cell of a missing graph timing: "n/c" (not capturable, see the graph section), else "—"."""
    return "n/c" if r is not None and getattr(r, "graph_note", "") else "—"


def graph_section(df: pd.DataFrame) -> list[str]:
    """Markdown lines: what the graph columns are, and every impl that could not be captured, with why."""
    if graph_baselines(df) is None:
        return []
    lines = ["## Graph timing", "",
             "`graph` columns: each impl's calls captured once in a `torch.cuda.CUDAGraph` and replayed "
             "(`bench.run --timing plain,graph`), so host time per call is out of the figure; `vs X (graph)` = "
             "X's graph ms / ours' graph ms. `n/c`: the impl could not be captured (below); `—`: not graph-timed.",
             ""]
    nc = df[df.get("graph_note", "") != ""] if "graph_note" in df else df.iloc[0:0]
    if not nc.empty:
        lines += ["| op | mode | shape | dtype | impl | why |", "|---|---|---|---|---|---|"]
        lines += [f"| {r.op} | {r.mode} | {r.shape} | {r.dtype} | {r.impl} | {r.graph_note.replace('|', '/')} |"
                  for r in nc.itertuples()]
    return lines + [""]


def case_table(df: pd.DataFrame, ceiling: float | None = None) -> str:
    """Markdown table for one (op, mode, dtype) (see case_rows)."""
    headers, rows = case_rows(df, ceiling)
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


def tuned_section(df: pd.DataFrame) -> list[str]:
    """Markdown lines: every tuned baseline's search per case (state and seconds; never in ms)."""
    t = df[df["tuning"].map(is_tuned)] if "tuning" in df else df.iloc[0:0]
    if t.empty:
        return []
    lines = ["## Tuned baselines: search time per case", "",
             "Seconds of each search (compile_max: its first call, inductor's autotuning with compile; helion: "
             "Helion's own search, done once and stored under `helion_configs/`, then reused: `(stored)`).", "",
             "| op | mode | shape | dtype | impl | tuning | tune s |", "|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.op} | {r.mode} | {r.shape} | {r.dtype} | {r.impl} | {r.tuning} | {_num(r.tune_s)} |")
    return lines + [""]


def not_ok_section(df: pd.DataFrame) -> list[str]:
    """Markdown lines: every row that is not ok (FAIL or error), with the note saying why."""
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return []
    lines = ["## Rows not ok, and why", "", "| op | mode | shape | dtype | impl | status | why |", "|---|---|---|---|---|---|---|"]
    for r in bad.itertuples():
        why = (getattr(r, "note", "") or "(no note: a run before the note column)").replace("|", "\\|")
        lines.append(f"| {r.op} | {r.mode} | {r.shape} | {r.dtype} | {r.impl} | {r.status} | {why} |")
    return lines + [""]


def baseline_info(df: pd.DataFrame, runs: dict | None = None) -> dict[str, dict]:
    """{impl: {"what", "version", "tuning", "cases"}} for every impl but ours in df: what it is, its library
    version(s), and its tuning state (with the tuned share of its cases where that varies)."""
    runs = runs or {}
    info = {}
    for impl, g in df[df["impl"] != OURS].groupby("impl", sort=False):
        versions = sorted({v for v in g["version"] if v}) if "version" in g else []
        if not versions and impl not in (COPY, "helion", LIGER):
            versions = sorted({f"torch {v}" for v in g["torch"].astype(str) if v and v != "nan"})
        if impl == "helion" and not versions:  # rows from before the version column: runs.json's label
            versions = sorted({f"helion {m.group(1)}" for r in runs.values() if isinstance(r.get("helion"), str)
                               for m in [re.search(r"Helion (\d[\w.+-]*)", r["helion"])] if m})
        tuned = int(g["tuning"].map(is_tuned).sum()) if "tuning" in g else 0
        if impl == "helion":
            efforts = sorted({t.replace(" (stored)", "") for t in g["tuning"] if is_tuned(t)})
            state = (f"tuned by Helion's own search ({'; '.join(efforts)}) in {tuned} of {len(g)} cases"
                     + ("; default config (untuned) in the rest" if tuned < len(g) else "")) if tuned else \
                "untuned (Helion's default config)"
        elif impl == COMPILE_MAX:
            state = f"tuned per shape by inductor ({MAX_MODE})"
        elif impl == COPY:
            state = "not an implementation: a device copy of the op's bytes (the bandwidth reachable at that size)"
        elif impl == "compile":
            state = "untuned: default mode (no autotuning)"
        elif impl == "eager":
            state = "untuned: PyTorch's eager kernels"
        elif impl == LIGER:
            state = "untuned: Liger's built-in block-size heuristics"
        else:
            state = "untuned: the vendor library's own heuristics, called through torch"
        info[impl] = {"version": ", ".join(versions) or ("—" if impl == COPY else "?"), "tuning": state,
                      "cases": len(g)}
    return info


def baselines_section(df: pd.DataFrame, runs: dict) -> list[str]:
    """Markdown lines: a table of each baseline's version and tuning state."""
    info = baseline_info(df, runs)
    if not info:
        return []
    lines = ["## Baselines", "", "| impl | version | tuning | cases |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['version']} | {v['tuning']} | {v['cases']} |" for k, v in info.items()]
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
    runs = runs_of(gpu_dir)
    lines += (baselines_section(df, runs) + graph_section(df) + not_ok_section(df) + tuned_section(df)
              + runs_section(runs))
    return "\n".join(lines)


def plot(df: pd.DataFrame, op: str, path: Path, ceilings: dict) -> None:
    """PNG of throughput per shape for one op, a panel per (mode, dtype), stacked: shapes are categories (grouped
    bars, one per impl; no lines joining unrelated shapes), log scale where values span a decade or more."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(df.groupby(["mode", "dtype"], sort=False))
    widest = max(len(set(g["shape"])) for _, g in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(min(max(6.0, 0.75 * widest + 2), 16), 4.2 * len(panels)),
                             squeeze=False)
    unit = df["unit"].iloc[0]
    ceiling = ceilings.get({"GB/s": "copy_GBps", "TFLOP/s": "matmul_TFLOPs"}.get(unit, ""))
    for ax, ((mode, dtype), g) in zip(axes[:, 0], panels):
        shapes = list(dict.fromkeys(g["shape"]))
        impls = impl_order(g)
        width = 0.8 / max(len(impls), 1)
        values = []
        for i, n in enumerate(impls):
            sub = g[(g["impl"] == n) & (g["status"] == "ok")]
            ys = [sub[sub["shape"] == s]["metric"].max() if s in set(sub["shape"]) else math.nan for s in shapes]
            values += [y for y in ys if math.isfinite(y) and y > 0]
            xs = [k - 0.4 + width * (i + 0.5) for k in range(len(shapes))]
            ax.bar(xs, ys, width=width, label=n, edgecolor="black" if n == OURS else "none",
                   linewidth=1.2 if n == OURS else 0)
        if ceiling:
            ax.axhline(ceiling, color="gray", linestyle="--", linewidth=1, label=f"ceiling {ceiling:,.0f} {unit}")
            values.append(ceiling)
        if values and max(values) / min(values) >= 10:
            ax.set_yscale("log")
            ax.set_ylabel(f"{unit} (log scale)")
        else:
            ax.set_ylim(bottom=0)
            ax.set_ylabel(unit)
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels(shapes, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(shapes) - 0.4)
        ax.set_title(f"{op} {mode} {dtype}")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _tuning_of(g: pd.DataFrame, b: str) -> dict:
    """{(shape, dtype): tuning} of baseline b's rows in one (op, mode) group."""
    rows = g[g["impl"] == b]
    return {(r.shape, r.dtype): getattr(r, "tuning", "") for r in rows.itertuples()}


def summary_cell(g: pd.DataFrame, b: str) -> str:
    """Geomean of ours' speedup vs b over the group's cases, with the shapes it rests on: '1.23x (n=5)';
    marked FEW when under FEW_SHAPES shapes; for helion, over its tuned cases when it has any."""
    ours = g[g["impl"] == OURS]
    col = f"speedup_vs_{b}"
    if col not in ours:
        return ""
    tuning = _tuning_of(g, b)
    pairs = [(r.shape, r.dtype, getattr(r, col)) for r in ours.itertuples()]
    pairs = [(s, d, v) for s, d, v in pairs if isinstance(v, float) and math.isfinite(v) and v > 0]
    state = ""
    if b == "helion" and pairs:
        tuned = [p for p in pairs if is_tuned(tuning.get(p[:2], ""))]
        states = sorted({tuning_word(tuning.get(p[:2], "")) for p in tuned})
        pairs, state = (tuned, ", " + "; ".join(states)) if tuned else (pairs, ", untuned")
    if not pairs:
        return "—"
    n = len({s for s, _, _ in pairs})
    return f"{geomean([v for _, _, v in pairs]):.2f}x (n={n}{state}){FEW if n < FEW_SHAPES else ''}"


def _lead(cell: str) -> float:
    """The speedup at the start of a summary cell ('0.93x (n=5)' -> 0.93; NaN when none)."""
    m = re.match(r"([0-9.]+)x", cell)
    return float(m.group(1)) if m else math.nan


def summary(results: Path, link_prefix: str = "") -> str:
    """Markdown: geomean speedup of ours vs each baseline per GPU, op and mode (with its shape count), then
    each baseline's version and tuning state per GPU."""
    rows, vs_all, info = [], [], {}
    for d in gpu_dirs(results):
        df = load(d)
        info[d.name] = baseline_info(df, runs_of(d))
        for (op, mode), g in df.groupby(["op", "mode"], sort=True):
            ours = g[g["impl"] == OURS]
            vs = baselines_of(g)
            vs_all += [b for b in vs if b not in vs_all]
            cell = {b: summary_cell(g, b) for b in vs}
            fails = int((ours["status"] != "ok").sum())
            rows.append((f"[{d.name}]({link_prefix}{d.name}/README.md)", op, mode, cell, len(ours), fails))
    if not rows:
        return NO_RESULTS
    body = [[gpu, op, mode] + [c.get(b, "") for b in vs_all] + [n, f] for gpu, op, mode, c, n, f in rows]
    table = tabulate(body, headers=["GPU", "op", "mode"] + [f"vs {b}" for b in vs_all] + ["cases", "ours not ok"],
                     tablefmt="github", disable_numparse=True)
    lines = [table, "",
             f"`vs X`: geomean over cases of X's ms / ours' ms (> 1: ours faster); `(n=K)`: the number of shapes "
             f"it rests on; {FEW} fewer than {FEW_SHAPES} shapes, too few for a geomean to mean much. "
             "`helion`: over its tuned cases where it has any.", ""]
    gaps = []
    for gpu, op, mode, c, _, _ in rows:
        behind = [f"{c[b]} vs {b}" for b in vs_all if b != COPY and _lead(c.get(b, "")) < 1.0]
        if behind:
            gaps.append(f"- {gpu.split(']')[0].lstrip('[')} {op} {mode}: " + "; ".join(behind))
    if gaps:
        lines += ["Where ours trails a baseline on geomean (one line per op and mode; the copy ceiling aside):"]
        lines += gaps + [""]
    body = [[gpu, f"`{k}`", v["version"], v["tuning"], v["cases"]] for gpu, impls in info.items() for k, v in impls.items()]
    lines += ["Baselines: version and tuning state", "",
              tabulate(body, headers=["GPU", "baseline", "version", "tuning", "cases"], tablefmt="github",
                       disable_numparse=True)]
    return "\n".join(lines)


def results_readme(results: Path) -> str:
    """Markdown for results/README.md."""
    return "\n".join([
        "# Benchmark results", "",
        "Geomean over shapes and dtypes of `X ms / helion_ops ms` (> 1: helion_ops faster). "
        "Cases where either side failed its accuracy check or errored are left out of the geomean; "
        "`ours not ok` counts those where helion_ops did. One directory per GPU holds the CSVs (`<op>.csv`), tables "
        "(`README.md`), plots (`<op>.png`) and the measured ceilings (`ceilings.json`); "
        "[index.html](index.html) shows them all on one page.", "",
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
    from bench import site

    written.append(site.write(results))
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
