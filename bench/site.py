"""The results site: results/index.html, one static page over every GPU and op (written by bench.report).

No server, no network: the CSS, the table-sorting script and the plots (the per-op PNGs, as data: URIs)
are inline, so the file opens from disk or from any static host. Per GPU: the measured ceilings, the
runs behind the rows (date, commit, command), each baseline's version and tuning state, then per op
its plot and one sortable table per (mode, dtype). A legend says what each op's shape label means.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

# What the dimensions in a shape label mean, per op (the order of the op's bench SHAPES tuples).
SHAPE_LEGEND = {
    "softmax": "<code>MxN</code>: M rows of N elements; softmax along each row (N).",
    "rms_norm": "<code>MxN</code>: M rows of N elements, normalised along N; weight of N.",
    "layer_norm": "<code>MxN</code>: M rows of N elements, normalised along N; weight and bias of N.",
    "matmul": "<code>MxNxK</code>: A is M&times;K, B is K&times;N, C = A&middot;B is M&times;N "
              "(e.g. <code>16x14336x4096</code>: 16 rows times a 4096&times;14336 weight).",
    "grouped_gemm": "<code>GxMxNxK</code>: G groups (experts); M rows of x in all, split unevenly among the "
                    "groups (fixed seed); each group's weight is K&times;N, so out is M&times;N.",
    "attention": "<code>BxHxSxDxCausal</code>: batch B, heads H, sequence length S (queries and keys), head "
                 "dim D, causal mask True/False; an optional 6th and 7th number are the key/value heads "
                 "(grouped-query attention) and the key length. <code>16x16x1024x128xFalse</code>: batch 16, "
                 "16 heads, 1024 tokens, head dim 128, no mask.",
}
GENERIC_LEGEND = "the op's dimensions joined by <code>x</code>, in the order of its bench SHAPES."

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:0 18px;color:#1b1f24}
h1{margin:18px 0 4px}h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:34px}
h3{margin:22px 0 6px}h4{margin:14px 0 4px;font-size:14px}
table{border-collapse:collapse;margin:6px 0 14px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f3f5f7;cursor:pointer;user-select:none}th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}
td:first-child,th:first-child,table.text td,table.text th{text-align:left;white-space:normal}
tr:nth-child(even) td{background:#fafbfc}td.ours{font-weight:600}td.fail{color:#b42318;font-weight:600}
img.plot{max-width:100%;border:1px solid #d0d7de;margin:6px 0}
nav a{margin-right:12px}.muted{color:#57606a}code{background:#f3f5f7;padding:0 3px;border-radius:3px}
#js-errors{color:#b42318}.wrap{overflow-x:auto}#summary td:nth-child(-n+3){text-align:left}
"""

JS = r"""
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
(function () {
  var err = console.error;
  console.error = function () { window.__errors.push([].slice.call(arguments).join(' ')); err.apply(console, arguments); };
})();
function cellValue(td) {
  var t = td.textContent.trim(), m = t.replace(/,/g, '').match(/^-?\d+(\.\d+)?(e[-+]?\d+)?/i);
  return m ? parseFloat(m[0]) : null;
}
function sortTable(th) {
  var table = th.closest('table'), body = table.tBodies[0], idx = Array.prototype.indexOf.call(th.parentNode.children, th);
  var asc = !th.classList.contains('asc');
  Array.prototype.forEach.call(th.parentNode.children, function (h) { h.classList.remove('asc', 'desc'); });
  th.classList.add(asc ? 'asc' : 'desc');
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = a.cells[idx], y = b.cells[idx];
    var vx = x ? cellValue(x) : null, vy = y ? cellValue(y) : null;
    var c = (vx !== null && vy !== null) ? vx - vy : (vx !== null ? -1 : vy !== null ? 1 :
            (x ? x.textContent : '').localeCompare(y ? y.textContent : ''));
    return asc ? c : -c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
function selfTest() {
  // Sort every table by each numeric column both ways and check the order (used by the headless test).
  var bad = 0, checked = 0;
  document.querySelectorAll('table.sortable').forEach(function (t) {
    var ths = t.tHead.rows[0].cells;
    for (var i = 0; i < ths.length; i++) {
      [true, false].forEach(function (up) {
        sortTable(ths[i]);
        if (ths[i].classList.contains('asc') !== up) sortTable(ths[i]);
        var vals = Array.prototype.map.call(t.tBodies[0].rows, function (r) { return r.cells[i] ? cellValue(r.cells[i]) : null; })
                   .filter(function (v) { return v !== null; });
        for (var k = 1; k < vals.length; k++) if (up ? vals[k] < vals[k - 1] : vals[k] > vals[k - 1]) bad++;
        checked++;
      });
    }
  });
  document.body.setAttribute('data-selftest', bad === 0 && checked > 0 ? 'ok' : 'fail ' + bad + '/' + checked);
}
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('table.sortable th').forEach(function (th) {
    th.title = 'click to sort';
    th.addEventListener('click', function () { sortTable(th); });
  });
  if (location.hash === '#selftest') selfTest();
  document.getElementById('js-errors').textContent = window.__errors.join('\n');
  document.body.setAttribute('data-ready', '1');
});
"""


def _e(text) -> str:
    return html.escape(str(text))


def _table(headers: list[str], rows: list[list], table_id: str = "", cls: str = "sortable",
           raw: bool = False) -> str:
    """An HTML table; raw: cells are trusted HTML. Cells of ours' column are bold, FAIL/error cells red."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    ours_col = next((i for i, h in enumerate(headers) if h.startswith("helion_ops")), None)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            klass = "ours" if i == ours_col else ""
            if str(c).startswith(("FAIL", "error")):
                klass = "fail"
            cells.append(f"<td{f' class={chr(34)}{klass}{chr(34)}' if klass else ''}>{c if raw else _e(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return (f'<div class="wrap"><table{ident} class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _slug(*parts) -> str:
    return "-".join(str(p).replace(" ", "_").replace("/", "_") for p in parts)


def _img(path: Path, alt: str) -> str:
    if not path.exists():
        return f'<p class="muted">(no plot: {_e(path.name)} missing; run python -m bench.report)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _runs_html(df, runs: dict) -> str:
    """The runs behind each op's rows: runs.json's last command per op, and every (commit, date) in its CSV."""
    rows = []
    for op, g in df.groupby("op", sort=True):
        r = runs.get(op, {})
        seen = g.groupby(["commit", "date"], sort=True).size()
        behind = "; ".join(f"{c} at {d} ({n} rows)" for (c, d), n in seen.items())
        rows.append([op, _e(r.get("date", "")), _e(r.get("commit", "")),
                     f"{r.get('cases_run', '?')}/{r.get('cases_planned', '?')}" if r else "",
                     f"<code>{_e(r.get('command', ''))}</code>" if r else "", _e(behind)])
    return _table(["op", "last run (UTC)", "commit", "cases run", "command", "runs behind the rows (commit at date)"],
                  rows, cls="text", raw=True)


def gpu_section(gpu_dir: Path) -> tuple[str, list[str]]:
    """(HTML for one GPU directory, the ids of its op sections)."""
    from bench import report

    df = report.load(gpu_dir)
    ceil = report.ceilings_of(gpu_dir)
    runs = report.runs_of(gpu_dir)
    gpu = gpu_dir.name
    uniq = lambda c: ", ".join(sorted(df[c].dropna().astype(str).unique())) if c in df else "?"  # noqa: E731
    parts = [f'<h2 id="{_e(_slug("gpu", gpu))}">{_e(ceil.get("gpu_full", gpu))}</h2>',
             f"<p>torch {_e(uniq('torch'))}; triton {_e(uniq('triton'))}; rows dated {_e(df['date'].min())} to "
             f"{_e(df['date'].max())}."]
    if ceil:
        parts.append(f" Ceilings measured in the run: copy {ceil['copy_GBps']:,.0f} GB/s (1 GiB device-to-device, "
                     f"read + write); cuBLAS bf16 8192&sup3; {ceil['matmul_TFLOPs']:,.0f} TFLOP/s.")
    parts.append("</p><h3>Runs</h3>" + _runs_html(df, runs))
    info = report.baseline_info(df, runs)
    parts.append("<h3>Baselines</h3>" + _table(["impl", "version", "tuning", "cases"],
                                                [[k, v["version"], v["tuning"], v["cases"]] for k, v in info.items()],
                                                table_id=_slug("baselines", gpu), cls="text"))
    ids = []
    for op, g_op in df.groupby("op", sort=True):
        sid = _slug("op", gpu, op)
        ids.append(sid)
        parts.append(f'<section id="{_e(sid)}" data-gpu="{_e(gpu)}" data-op="{_e(op)}"><h3>{_e(gpu)}: {_e(op)}</h3>')
        parts.append(f'<p class="muted">Shapes: {SHAPE_LEGEND.get(op, GENERIC_LEGEND)}</p>')
        parts.append(_img(gpu_dir / f"{op}.png", f"{op} on {gpu}"))
        for (mode, dtype), g in g_op.groupby(["mode", "dtype"], sort=False):
            unit = g["unit"].iloc[0]
            ceiling = ceil.get({"GB/s": "copy_GBps", "TFLOP/s": "matmul_TFLOPs"}.get(unit, ""))
            headers, rows = report.case_rows(g, ceiling)
            parts.append(f"<h4>{_e(op)} {_e(mode)} {_e(dtype)}</h4>"
                         + _table(headers, rows, table_id=_slug("t", gpu, op, mode, dtype)))
        bad = g_op[g_op["status"] != "ok"]
        if not bad.empty:
            parts.append("<h4>rows not ok, and why</h4>" + _table(
                ["mode", "shape", "dtype", "impl", "status", "why"],
                [[r.mode, r.shape, r.dtype, r.impl, r.status, getattr(r, "note", "") or "(no note recorded)"]
                 for r in bad.itertuples()], table_id=_slug("notok", gpu, op), cls="text"))
        tuned = g_op[g_op["tuning"].map(report.is_tuned)]
        if not tuned.empty:
            parts.append("<h4>tuned baselines: search seconds per case</h4>" + _table(
                ["mode", "shape", "dtype", "impl", "tuning", "tune s"],
                [[r.mode, r.shape, r.dtype, r.impl, r.tuning, report._num(r.tune_s)] for r in tuned.itertuples()],
                table_id=_slug("tune", gpu, op)))
        parts.append("</section>")
    return "".join(parts), ids


def summary_html(results: Path) -> str:
    """The geomean summary as an HTML table (the cells of the README summary)."""
    from bench import report

    rows, vs_all = [], []
    for d in report.gpu_dirs(results):
        df = report.load(d)
        for (op, mode), g in df.groupby(["op", "mode"], sort=True):
            vs = report.baselines_of(g)
            vs_all += [b for b in vs if b not in vs_all]
            ours = g[g["impl"] == report.OURS]
            rows.append((d.name, op, mode, {b: report.summary_cell(g, b) for b in vs}, len(ours),
                         int((ours["status"] != "ok").sum())))
    body = [[f'<a href="#{_e(_slug("op", gpu, op))}">{_e(gpu)}</a>', _e(op), _e(mode)]
            + [_e(c.get(b, "")) for b in vs_all] + [n, f] for gpu, op, mode, c, n, f in rows]
    return _table(["GPU", "op", "mode"] + [f"vs {b}" for b in vs_all] + ["cases", "ours not ok"], body,
                  table_id="summary", raw=True)


def page(results: Path) -> str:
    """The whole page as one HTML string."""
    from bench import report

    dirs = report.gpu_dirs(results)
    sections, nav = [], []
    for d in dirs:
        body, _ = gpu_section(d)
        sections.append(body)
        nav.append(f'<a href="#{_e(_slug("gpu", d.name))}">{_e(d.name)}</a>')
    legend = "".join(f"<li><b>{_e(op)}</b>: {text}</li>" for op, text in SHAPE_LEGEND.items())
    content = (
        "<h1>helion_ops benchmark results</h1>"
        f"<nav>{''.join(nav)}<a href='#legend'>shape labels</a></nav>"
        "<p>Every figure was measured by <code>python -m bench.run</code> on the GPU named; a speedup compares "
        "timings of one run. Cells: median throughput (GB/s for memory-bound ops, TFLOP/s for GEMMs and "
        "attention); <code>vs X</code> = X's ms / ours' ms (&gt; 1: ours faster); FAIL = error above "
        "tolerance. Click a column header to sort.</p>"
        + ("<h2>Summary</h2>" + summary_html(results)
           + f"<p class='muted'>(n=K): shapes the geomean rests on; {report.FEW} fewer than {report.FEW_SHAPES}. "
             "helion: over its tuned cases where it has any.</p>" if dirs else f"<p>{_e(report.NO_RESULTS)}</p>")
        + f"<h2 id='legend'>Shape labels</h2><ul>{legend}<li>other ops: {GENERIC_LEGEND}</li></ul>"
        + "".join(sections))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><link rel='icon' href='data:,'>"
            f"<title>helion_ops results</title><style>{CSS}</style><script>{JS}</script></head>"
            f"<body>{content}<pre id='js-errors'></pre></body></html>\n")


def write(results: Path) -> Path:
    """Write results/index.html; returns its path."""
    path = Path(results) / "index.html"
    path.write_text(page(Path(results)))
    return path
