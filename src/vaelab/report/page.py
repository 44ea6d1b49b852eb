"""The report's page: one self-contained HTML file, and the :class:`Report` that holds it.

Everything is inline (styles, scripts, PNGs as data URIs, figures as JSON): the file opens
from disk with no network and fetches nothing. plotly.js (the python package's own bundle,
4.8 MB) is inlined once, gzip-compressed and base64-encoded (2.0 MB), and unpacked by the
browser's own ``DecompressionStream``: that keeps one run's page well under 5 MB with the
complete, version-matched library, instead of a hand-picked partial bundle to maintain.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vaelab._version import __version__
from vaelab.errors import RunError
from vaelab.fileio import atomic_write_text

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1200px; margin: 0 auto; padding: 1em 1.5em 4em; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { margin-top: 1.8em; border-bottom: 1px solid
#ddd; } .sub { color: #555; margin-top: 0; } .note { background: #fff8e1; border-left: 4px solid
#f0b400; padding: 0.5em 0.9em; } .how { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.6em 0; } th, td { border-bottom: 1px solid #e3e3e3;
padding: 0.3em 0.7em; text-align: left; vertical-align: top; } td.num { text-align: right;
font-variant-numeric: tabular-nums; white-space: nowrap; } table.sortable th { cursor: pointer;
background: #f4f6f8; } table.sortable th:after { content: " \\2195"; color: #999; }
pre { background: #f6f8fa; padding: 0.8em; overflow: auto; font-size: 0.85em; }
code { background: #f2f2f2; padding: 0 0.25em; } .plot { width: 100%; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.4em 0; }
figure { margin: 0.5em 0 1.2em; } figcaption { color: #555; font-size: 0.92em; }
"""

# Draws every figure once plotly.js is unpacked; sets <html data-vaelab="ready"> (or "error")
# so that a reader, or a test, can tell the page finished.
LOADER = """
(async function () {
  const root = document.documentElement;
  try {
    const packed = document.getElementById('vaelab-plotly');
    if (packed && typeof Plotly === 'undefined') {
      const bytes = Uint8Array.from(atob(packed.textContent.trim()), c => c.charCodeAt(0));
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
      const script = document.createElement('script');
      script.textContent = await new Response(stream).text();
      document.head.appendChild(script);
    }
    for (const div of document.querySelectorAll('div[data-figure]')) {
      const fig = JSON.parse(document.getElementById(div.dataset.figure).textContent);
      div.replaceChildren();  // the "drawing..." placeholder
      await Plotly.newPlot(div, fig.data, fig.layout,
                           {responsive: true, displaylogo: false, scrollZoom: false});
      if (fig.frames) { await Plotly.addFrames(div, fig.frames); }
    }
    root.dataset.vaelab = 'ready';
  } catch (err) {
    root.dataset.vaelab = 'error';
    for (const el of document.querySelectorAll('.needs-js')) {
      el.textContent = 'The interactive figures could not be drawn in this browser (' + err +
        '); the PNG figures below show the same.';
    }
    console.error(err);
  }
})();
"""

# Sorts a table by the column whose header is clicked (numbers by data-sort): a few lines of
# our own, as plotly has no sortable HTML table.
SORTER = """
for (const table of document.querySelectorAll('table.sortable')) {
  table.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
    const dir = th.dataset.dir === 'up' ? -1 : 1;
    th.dataset.dir = dir > 0 ? 'up' : 'down';
    const key = row => {
      const cell = row.cells[col], text = cell.dataset.sort ?? cell.textContent;
      const n = parseFloat(text);
      return isNaN(n) ? [1, text] : [0, n];
    };
    const rows = Array.from(table.tBodies[0].rows);
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x[0] !== y[0]) return x[0] - y[0];
      return (x[1] > y[1] ? 1 : x[1] < y[1] ? -1 : 0) * dir;
    });
    rows.forEach(row => table.tBodies[0].appendChild(row));
  }));
}
"""


@functools.lru_cache(maxsize=1)
def packed_plotlyjs() -> str:
    """plotly.js of the installed plotly package, gzip-compressed, base64 text."""
    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), 9,
                                          mtime=0)).decode("ascii")


def _script_json(text: str) -> str:
    """JSON made safe inside a <script> element (no "</" can close it)."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e")


def png_uri(fig: Any, dpi: int = 100) -> str:
    """A matplotlib figure as a ``data:image/png;base64`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


class Page:
    """Sections of HTML and the plotly figures they place, assembled into one document."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self._figures: list[tuple[str, str]] = []

    def add(self, *fragments: str) -> None:
        self.parts.extend(fragments)

    def figure(self, fig: Any, caption: str = "") -> str:
        """A placeholder for the plotly figure ``fig`` (drawn when the page loads)."""
        name = f"vaelab-fig-{len(self._figures)}"
        self._figures.append((name, fig.to_json()))
        cap = f"<figcaption>{caption}</figcaption>" if caption else ""
        return (f'<figure><div class="plot" data-figure="{name}-json" id="{name}">'
                f'<p class="needs-js">Drawing the interactive figure…</p></div>{cap}</figure>')

    def render(self) -> str:
        figures = "".join(f'<script type="application/json" id="{name}-json">'
                          f"{_script_json(text)}</script>\n" for name, text in self._figures)
        plotly = (f'<script type="application/gzip-base64" id="vaelab-plotly">'
                  f"{packed_plotlyjs()}</script>\n" if self._figures else "")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f'<meta name="generator" content="vaelab {esc(__version__)}">\n'
                f"<title>{esc(self.title)}</title>\n<style>{STYLE}</style></head>\n<body>\n"
                + "\n".join(self.parts)
                + f'\n<p class="how">Written by vaelab {esc(__version__)}; a single file: '
                "everything it shows is inside it.</p>\n"
                + figures + plotly
                + f"<script>{SORTER}</script>\n<script>{LOADER}</script>\n</body></html>\n")


class Report:
    """A self-contained HTML report: ``save(path)`` writes it; in Jupyter it displays inline
    (``_repr_html_``: the page in an iframe, so that its styles and scripts stay its own)."""

    def __init__(self, html_text: str, title: str = "vaelab report") -> None:
        self.html = html_text
        self.title = title

    @property
    def size(self) -> int:
        """The page's size in bytes (UTF-8)."""
        return len(self.html.encode("utf-8"))

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` atomically (never half-written); returns the path."""
        path = Path(path)
        if path.is_dir():
            raise RunError(f"cannot write the report to {path}: it is a directory")
        try:
            atomic_write_text(path, self.html)
        except OSError as exc:
            raise RunError(f"cannot write the report to {path}: "
                           f"{exc.strerror or exc}") from None
        return path

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{esc(self.html)}" title="{esc(self.title)}" '
                'style="width: 100%; height: 900px; border: 1px solid #ddd;"></iframe>')

    def __repr__(self) -> str:
        return f"<vaelab Report {self.title!r}, {self.size / 1e6:.1f} MB>"


def json_block(data: Any) -> str:
    return f"<pre>{esc(json.dumps(data, indent=2))}</pre>"


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], sortable: bool = False) -> str:
    """An HTML table; ``rows`` hold ready HTML cells (``<td>...</td>``)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
