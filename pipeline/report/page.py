"""The report page: sections of tables, chart placeholders and pictures as HTML, one script that draws every
chart with the inlined Vega bundle, and the pictures copied into the report folder (relative links)."""

from __future__ import annotations

import json
import shutil
from html import escape
from pathlib import Path
from typing import Any

from pipeline.report.bundle import script_safe, vega_bundle

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
nav { position: fixed; top: 0; left: 0; bottom: 0; width: 190px; overflow-y: auto; background: #f4f5f7;
      padding: 12px; font-size: 14px; box-sizing: border-box; }
nav a { display: block; color: #245; text-decoration: none; padding: 3px 0; }
main { margin-left: 190px; padding: 8px 24px 40px; max-width: 1400px; }
h1 { font-size: 24px; } h2 { border-bottom: 1px solid #ccc; margin-top: 36px; } h3 { margin-top: 24px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.chart { min-height: 40px; }
figure { display: inline-block; margin: 6px 12px 6px 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #555; }
.note { color: #666; font-size: 14px; }
code { background: #f4f5f7; padding: 0 3px; }
"""

DRAW = """
const specs = JSON.parse(document.getElementById("chart-specs").textContent);
for (const [id, spec] of Object.entries(specs)) {
  vegaEmbed("#" + id, spec, {actions: false, renderer: "svg"}).catch((err) => {
    document.getElementById(id).textContent = "chart failed: " + err;
    console.error(err);
  });
}
"""


class Page:
    """Collects sections, charts and pictures; `write` puts index.html and images/ into a folder."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.nav: list[tuple[str, str]] = []
        self.specs: dict[str, dict[str, Any]] = {}
        self.images: dict[Path, str] = {}

    def section(self, anchor: str, title: str) -> None:
        self.nav.append((anchor, title))
        self.parts.append(f'<h2 id="{anchor}">{escape(title)}</h2>')

    def heading(self, text: str) -> None:
        self.parts.append(f"<h3>{escape(text)}</h3>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{escape(text)}</p>')

    def html(self, markup: str) -> None:
        self.parts.append(markup)

    def chart(self, spec: dict[str, Any]) -> str:
        """A placeholder div for `spec`, drawn when the page loads; returns the div's markup."""
        chart_id = f"chart-{len(self.specs) + 1}"
        self.specs[chart_id] = spec
        return f'<div class="chart" id="{chart_id}"></div>'

    def charts(self, *specs: dict[str, Any]) -> None:
        self.parts.append('<div class="charts">' + "".join(self.chart(s) for s in specs) + "</div>")

    def picture(self, source: Path, caption: str, width: int | None = None) -> str:
        """A figure showing `source`, copied into images/ under a unique name."""
        name = self.images.setdefault(source, f"images/{len(self.images) + 1:03d}_{source.name}")
        style = f' style="max-width: {width}px"' if width else ""
        return (
            f'<figure><img src="{escape(name)}" alt="{escape(caption)}"{style}>'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )

    def pictures(self, sources: list[Path], caption_of=lambda p: p.stem, width: int | None = None) -> None:
        self.parts.append("<div>" + "".join(self.picture(p, caption_of(p), width) for p in sources) + "</div>")

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.parts.append(table_html(header, rows))

    def render(self) -> str:
        nav = "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in self.nav)
        specs = script_safe(json.dumps(self.specs).replace("<!--", "<\\!--"))
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{escape(self.title)}</title>\n<style>{STYLE}</style>\n"
            f"<script>\n{script_safe(vega_bundle())}\n</script>\n</head>\n<body>\n"
            f"<nav><strong>Report</strong>{nav}</nav>\n<main>\n<h1>{escape(self.title)}</h1>\n"
            + "\n".join(self.parts)
            + f'\n</main>\n<script type="application/json" id="chart-specs">{specs}</script>\n'
            f"<script>{DRAW}</script>\n</body>\n</html>\n"
        )

    def write(self, folder: Path) -> Path:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        for source, name in self.images.items():
            shutil.copyfile(source, folder / name)
        index = folder / "index.html"
        index.write_text(self.render(), encoding="utf-8")
        return index


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value:,}</td>'
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    return f"<td>{escape(str(value))}</td>"


def table_html(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
