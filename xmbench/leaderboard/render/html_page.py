"""One table's page for Snakemake's --report: ours, the spread, published numbers, gains, problems."""
from __future__ import annotations

import html

import pandas as pd

from ...grid import fraction_label
from ..schema import BASELINE
from .notes import GAIN_NOTE, RANK_NOTE, SPREAD_NOTE
from .tables import GAIN_SHOWN, cell_parts, fmt, is_nan, p_text, problems, rows, several_draws, shown, table_grid, title

_CSS = """body{font-family:system-ui,sans-serif;margin:1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}.best{font-weight:bold}
.ann{color:#777;font-size:.8em}.pub{background:#fff8e6}.bad{color:#a00}caption{text-align:left;font-weight:bold}
p.note{color:#555;font-size:.9em;max-width:60em}"""


def html_tables(long: pd.DataFrame, gains: pd.DataFrame, pub: pd.DataFrame, part: pd.DataFrame, info: dict,
                methods=None) -> str:
    e = html.escape
    order, fractions, cells = table_grid(long, methods)
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(info['name'])}</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<table id='ours'><caption>Ours: {e(title(info))}, mean ± std over draws and seeds</caption><tr><th>method</th>"
           + "".join(f"<th>{fraction_label(f)} labels</th>" for f in fractions) + "</tr>"]
    for m in order:
        tds = []
        for f in fractions:
            r = cells.get((m, f))
            if r is None:
                tds.append("<td>–</td>")
                continue
            txt, bold, ann = cell_parts(r)
            cls = " class='best'" if bold else (" class='bad'" if r.n == 0 else "")
            tds.append(f"<td{cls}>{e(txt)} <span class='ann'>{e(ann)}</span></td>")
        out.append(f"<tr><td>{e(shown(m, info))}</td>{''.join(tds)}</tr>")
    out.append(f"</table><p class='note'>{e(RANK_NOTE)}</p>")
    if info.get("protocol"):
        out.append(f"<p class='note' id='protocol'>Labelled subsets: {e(info['protocol'])}.</p>")
    if several_draws(long):
        out.append("<table id='spread'><caption>Spread: seed against draw</caption><tr><th>method</th>"
                   + "".join(f"<th>{fraction_label(f)}: sd seed / sd draw (draws)</th>" for f in fractions) + "</tr>")
        for m in order:
            tds = "".join("<td>–</td>" if (r := cells.get((m, f))) is None or r.n == 0 else
                          f"<td>{fmt(r.sd_seed)} / {fmt(r.sd_draw)} ({int(r.n_draws)})</td>" for f in fractions)
            out.append(f"<tr><td>{e(m)}</td>{tds}</tr>")
        out.append(f"</table><p class='note'>{e(SPREAD_NOTE)}</p>")
    if len(pub):
        out.append("<table id='published' class='pub'><caption>Published (not re-run here; never part of our "
                   "statistics)</caption><tr><th>method</th><th>dataset</th><th>protocol</th><th>metric</th>"
                   "<th>labels</th><th>value</th><th>source</th><th>note</th></tr>")
        for r in rows(pub):
            out.append(f"<tr class='pub'><td>{e(str(r.method))} (published)</td><td>{e(str(r.dataset))}</td>"
                       f"<td>{e(str(r.protocol))}</td><td>{e(str(r.metric))}</td><td>{fraction_label(r.fraction)}</td>"
                       f"<td>{r.value:g}</td><td>{e(str(r.source))}</td><td>{e(str(r.note or ''))}</td></tr>")
        out.append("</table>")
    out.append(f"<table id='gains'><caption>Gain over {e(shown(BASELINE, info))}</caption><tr><th>method</th><th>labels</th>"
               "<th>pairs</th><th>gain</th><th>95% CI</th><th>p (Holm)</th><th>note</th></tr>")
    for r in rows(gains, GAIN_SHOWN):
        ci = "n/a" if is_nan(r.ci95_low) else f"[{fmt(r.ci95_low, signed=True)}, {fmt(r.ci95_high, signed=True)}]"
        out.append(f"<tr><td>{e(shown(r.method, info))}</td><td>{fraction_label(r.fraction)}</td><td>{r.n_pairs}</td>"
                   f"<td>{fmt(r.mean_gain, signed=True)}</td><td>{ci}</td><td>{p_text(r.p_holm)}</td>"
                   f"<td>{e(r.note or '')}</td></tr>")
    out.append(f"</table><p class='note'>{e(GAIN_NOTE)}</p>")
    bad = problems(part)
    if len(bad):
        out.append("<table id='problems'><caption>Failed and missing runs</caption><tr><th>method</th>"
                   "<th>labels</th><th>draw</th><th>seed</th><th>status</th><th>reason</th></tr>")
        for r in bad:
            out.append(f"<tr class='bad'><td>{e(r.method)}</td><td>{fraction_label(r.fraction)}</td><td>{r.draw}</td>"
                       f"<td>{r.seed}</td>"
                       f"<td>{e(r.status)}</td><td style='text-align:left'>{e(str(r.reason or ''))}</td></tr>")
        out.append("</table>")
    out.append("</body></html>\n")
    return "\n".join(out)
