"""The report's page: an HTML document and its Markdown twin built side by side, and the cell formats every
section shares."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import List, Sequence

import numpy as np

SECTIONS = ("Final comparison", "Budget", "Learning curves and forgetting", "Interference", "Gradient variance",
            "Reward hacking", "Statistics", "Samples")

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}figure{margin:1em 0}
figure.wide{overflow-x:auto}figure.wide img{max-width:none}
.sign{background:#f7f7ee;border-left:3px solid #bb9;padding:.2em .6em}
.note{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
"""


#: the page's content width in CSS pixels (max-width 1200px less padding); wider figures scroll
PAGE_WIDTH_PX = 1150


def png_width(data: bytes) -> int:
    """The pixel width of a PNG (its IHDR chunk)."""
    return int.from_bytes(data[16:20], "big") if data[:8] == b"\x89PNG\r\n\x1a\n" else 0



class Doc:
    """Builds the HTML page and its Markdown twin side by side."""

    def __init__(self, out_dir: Path, title: str):
        self.out = Path(out_dir)
        self.title = title
        self.html: List[str] = []
        self.md: List[str] = [f"# {title}\n"]

    def h2(self, text: str) -> None:
        anchor = text.lower().replace(" ", "-")
        self.html.append(f'<h2 id="{anchor}">{html.escape(text)}</h2>')
        self.md.append(f"\n## {text}\n")

    def h3(self, text: str) -> None:
        self.html.append(f"<h3>{html.escape(text)}</h3>")
        self.md.append(f"\n### {text}\n")

    def p(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.html.append(f"<p{cls}>{html.escape(text)}</p>")
        self.md.append(f"\n{'*' if note else ''}{text}{'*' if note else ''}\n")

    def sign(self, text: str) -> None:
        """The sign convention of the table that follows, set apart so that it is read with the table."""
        self.html.append(f'<p class="note sign"><b>Reading the signs:</b> {html.escape(text)}</p>')
        self.md.append(f"\n> **Reading the signs:** {text}\n")

    def code(self, text: str) -> None:
        self.html.append(f"<pre><code>{html.escape(text)}</code></pre>")
        self.md.append(f"\n```\n{text}\n```\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        h = "".join(f"<th>{html.escape(str(x))}</th>" for x in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.html.append(f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>")
        esc = lambda c: str(c).replace("|", "\\|")
        self.md.append("\n| " + " | ".join(esc(x) for x in headers) + " |\n|" + "---|" * len(headers) + "\n"
                       + "".join("| " + " | ".join(esc(c) for c in r) + " |\n" for r in rows))

    def image(self, path: Path, caption: str) -> None:
        raw = Path(path).read_bytes()
        data = base64.b64encode(raw).decode()
        # a figure wider than the page is shown at its own size in a scrolling box, so its text stays legible
        cls = ' class="wide"' if png_width(raw) > PAGE_WIDTH_PX else ""
        self.html.append(f'<figure{cls}><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f'<figcaption class="note">{html.escape(caption)}</figcaption></figure>')
        self.md.append(f"\n![{caption}]({Path(path).name})\n")

    def render_html(self) -> str:
        toc = "".join(f'<li><a href="#{s.lower().replace(" ", "-")}">{html.escape(s)}</a></li>' for s in SECTIONS)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1><ul>{toc}</ul>" + "\n".join(self.html) + "</body></html>\n")

    def render_md(self) -> str:
        return "".join(self.md)


# ----------------------------------------------------------------------------------------------- cells


def fmt(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    s = f"{x:.{nd}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s  # no "-0.000"


def seeds_cell(seeds: Sequence[int]) -> str:
    """The number of seeds, then which: '1 (seed 0)', '3 (seeds 0, 1, 2)' -- the same cell in every table."""
    seeds = list(seeds)
    return f"{len(seeds)} (seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))})"


def ci_cell(d) -> str:
    return f"{fmt(d['mean'])} [{fmt(d['ci'][0])}, {fmt(d['ci'][1])}]"


def num(x, nd: int = 4) -> str:
    """A count or cost cell: whole numbers below 10^7 in full (95,360), others to ``nd`` significant digits,
    '–' when unknown."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if float(x).is_integer() and abs(x) < 1e7:
        return f"{int(x):,}"
    return f"{x:.{nd}g}"


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return jsonable(x.item())
    return x
