"""The page around the sections: style sheet, HTML escaping, number formats and the document template."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from frozenasd.text import printable

_CSS = """
:root { --fg: #1d2330; --muted: #5b6474; --line: #d9dee7; --bg: #ffffff; --panel: #f5f7fa;
        --accent: #2457a6; --bad: #b3261e; --good: #1e6b3a; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", Arial, sans-serif; }
main { max-width: 1160px; margin: 0 auto; padding: 0 24px 48px; }
header.top { background: #1d3557; color: #fff; padding: 20px 0 16px; margin-bottom: 20px; }
header.top > div { max-width: 1160px; margin: 0 auto; padding: 0 24px; }
header.top h1 { margin: 0 0 4px; font-size: 26px; font-weight: 650; overflow-wrap: anywhere; }
header.top p { margin: 0; color: #c9d6ea; font-size: 14px; }
nav.toc { font-size: 14px; margin-bottom: 8px; }
nav.toc a { margin-right: 14px; white-space: nowrap; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
h2 { font-size: 21px; margin: 32px 0 10px; padding-bottom: 6px; border-bottom: 2px solid var(--line);
     overflow-wrap: anywhere; }
h3 { font-size: 16px; margin: 22px 0 8px; }
section.machine { margin-top: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; margin: 6px 0 10px; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: middle;
         overflow-wrap: anywhere; }
th { background: var(--panel); font-weight: 600; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.nowrap { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.total td { font-weight: 650; border-top: 2px solid var(--fg); }
p.official { font-size: 17px; margin: 10px 0 4px; }
p.official strong { font-size: 22px; color: var(--accent); }
p.note, p.muted, .muted { color: var(--muted); font-size: 13.5px; }
p.warn { background: #fff6e0; border-left: 4px solid #e0a100; padding: 8px 12px; margin: 10px 0; }
dl.stats { display: flex; flex-wrap: wrap; gap: 8px 14px; margin: 8px 0 4px; }
dl.stats div { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
               padding: 6px 12px; }
dl.stats dt { font-size: 12px; color: var(--muted); }
dl.stats dd { margin: 0; font-size: 17px; font-weight: 600; font-variant-numeric: tabular-nums; }
div.plots { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
@media (max-width: 860px) { div.plots { grid-template-columns: minmax(0, 1fr); } }
figure { margin: 8px 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; background: #fff; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 13px; color: var(--muted); padding: 4px 6px 0; }
.badge { display: inline-block; white-space: nowrap; padding: 1px 8px; border-radius: 10px;
         font-size: 12.5px; font-weight: 600; }
.badge.anomaly { background: #fde3e1; color: var(--bad); }
.badge.normal { background: #dff3e6; color: var(--good); }
.badge.unknown { background: #eceff3; color: var(--muted); }
.badge.over { background: #fde3e1; color: var(--bad); margin-left: 6px; }
td.clip { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12.5px; }
audio { width: 280px; height: 36px; vertical-align: middle; }
pre.config { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px;
             font: 13px/1.45 ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace;
             white-space: pre-wrap; overflow-wrap: anywhere; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"""


def _esc(value: Any) -> str:
    """HTML-escaped text; a file name's bytes that are not UTF-8 are written as ``\\xNN``."""
    return html.escape(printable(str(value)), quote=True)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f}"


def _num(value: float) -> str:
    return f"{value:.6g}"


def _document(title: str, body: Sequence[str]) -> str:
    """The whole HTML document: head with the inline style sheet, then the body parts one per line."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
