"""A self-contained HTML report: charts embedded with their JavaScript inlined, tables, no CDN.

A report is a list of sections; a section is a title, an introduction and parts in order: charts,
tables (`tables.Table`, formatted for people), findings (`Notes`) and paragraphs.

The Vega, Vega-Lite and Vega-Embed libraries come from `vl-convert-python`'s bundled copy, written
once into the page, so the report opens offline in any browser.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import altair as alt

from pricing_lab.output_staging import staged_files
from pricing_lab.report.tables import Cell, Table, cell_texts


@dataclass(frozen=True, slots=True, kw_only=True)
class Notes:
    """A bulleted list of short findings (plain text, one per item)."""

    items: Sequence[str]


Part = alt.TopLevelMixin | Table | Notes | str  # a chart, a table, findings, or a paragraph


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSection:
    """A titled part of the report: an introduction, then its parts in order."""

    title: str
    text: str = ""
    parts: Sequence[Part] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """A whole report: a title, sections and a footer (attribution of the data shown)."""

    title: str
    sections: Sequence[ReportSection] = ()
    footer: str = ""
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _javascript_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script, safe to inline.

    `vl_convert` builds the bundle in a few seconds; the result is kept in memory and in the user's
    cache folder (`$XDG_CACHE_HOME/pricing_lab`, one file per vl-convert version), so later runs
    reuse it. A cache that cannot be read or written is skipped.
    """
    global _BUNDLE
    if _BUNDLE is None:
        _BUNDLE = _cached_bundle().replace("</script", "<\\/script")
    return _BUNDLE


_BUNDLE: str | None = None


def _cached_bundle() -> str:
    import os
    from importlib.metadata import version

    import vl_convert

    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    cache = Path(root) / "pricing_lab" / f"vl-convert-{version('vl-convert-python')}-bundle.js"
    try:
        return cache.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    bundle: str = vl_convert.javascript_bundle()  # type: ignore[call-arg]
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        partial.write_text(bundle, encoding="utf-8")
        partial.replace(cache)  # atomic: a concurrent reader never sees half a file
    except OSError:
        pass
    return bundle


def table_html(table: Table) -> str:
    """A table as HTML: formatted cells, numbers right-aligned, a change under its value; wide or
    long tables scroll inside their box instead of running off the page."""
    columns, rows = cell_texts(table)
    head = "".join(
        f"<th class='{'num' if column_numeric else 'txt'}'>{html.escape(column.title)}</th>"
        for column, column_numeric in zip(
            columns, _numeric_columns(rows, len(columns)), strict=True
        )
    )
    body = []
    for cells in rows:
        tds = []
        for cell in cells:
            change = (
                f"<br><span class='change'>{html.escape(cell.change)}</span>" if cell.change else ""
            )
            css = "num" if cell.numeric else "txt"
            tds.append(f"<td class='{css}'>{html.escape(cell.text)}{change}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    title = f"<h3>{html.escape(table.title)}</h3>" if table.title else ""
    if not rows:
        return f"{title}<p class='empty'>{html.escape(table.empty)}</p>"
    more = ""
    if table.hidden_rows:
        more = f"<p class='more'>{html.escape(table.more.format(hidden=table.hidden_rows))}</p>"
    return (
        f"{title}<div class='table-wrap'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>{more}"
    )


def _numeric_columns(rows: list[list[Cell]], width: int) -> list[bool]:
    return [any(cells[i].numeric for cells in rows) for i in range(width)]


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222;
       padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .meta, .more, footer { color: #666; font-size: 0.9rem; }
ul.notes li { margin: 0.3rem 0; }
.table-wrap { overflow: auto; max-width: 100%; max-height: 32rem; margin: 0.5rem 0 1.5rem;
              border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; white-space: normal; vertical-align: bottom; }
.num { text-align: right; font-variant-numeric: tabular-nums; } .txt { text-align: left; }
.change { color: #666; font-size: 0.8rem; }
.empty { color: #555; font-style: italic; }
.chart { margin: 1rem 0 2rem; overflow-x: auto; }
"""


def render_report(report: Report) -> str:
    """The report as one HTML document with everything it needs inline."""
    parts: list[str] = []
    specs: list[tuple[str, str]] = []
    for section_index, section in enumerate(report.sections):
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        for part_index, part in enumerate(section.parts):
            if isinstance(part, Table):
                parts.append(table_html(part))
            elif isinstance(part, Notes):
                items = "".join(f"<li>{html.escape(item)}</li>" for item in part.items)
                parts.append(f"<ul class='notes'>{items}</ul>")
            elif isinstance(part, str):
                parts.append(f"<p>{html.escape(part)}</p>")
            else:
                element_id = f"chart-{section_index}-{part_index}"
                parts.append(f"<div class='chart' id='{element_id}'></div>")
                spec = json.dumps(part.to_dict(), default=str).replace("</", "<\\/")
                specs.append((element_id, spec))
        parts.append("</section>")
    embeds = "\n".join(
        f"vegaEmbed('#{element_id}', {spec}, {{actions: false, renderer: 'svg'}})"
        ".catch(function (e) { console.error(e); });"
        for element_id, spec in specs
    )
    stamp = report.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(report.title)}</title><style>{_STYLE}</style>"
        f"<script>{_javascript_bundle()}</script></head><body>"
        f"<h1>{html.escape(report.title)}</h1><p class='meta'>generated {stamp}</p>"
        + "".join(parts)
        + f"<footer>{html.escape(report.footer)}</footer>"
        + f"<script>{embeds}</script></body></html>"
    )


def write_report(report: Report, path: str | Path) -> Path:
    """Write the report to `path` (UTF-8) and return the path. The page is written beside it
    under a hidden name and renamed: a write that fails leaves the earlier report whole."""
    target = Path(path)
    text = render_report(report)
    with staged_files([target]) as staged:
        staged.twin(target).write_text(text, encoding="utf-8")
    return target
