"""A self-contained HTML report: charts embedded with their JavaScript inlined, tables, no CDN.

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
import polars as pl

MAX_TABLE_ROWS = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSection:
    """A titled part of the report: some prose, charts and tables, in that order."""

    title: str
    text: str = ""
    charts: Sequence[alt.TopLevelMixin] = ()
    tables: Sequence[tuple[str, pl.DataFrame]] = ()


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


def _table_html(title: str, frame: pl.DataFrame) -> str:
    shown = frame.head(MAX_TABLE_ROWS)
    head = "".join(f"<th>{html.escape(name)}</th>" for name in shown.columns)
    rows = []
    for row in shown.iter_rows():
        cells = "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        rows.append(f"<tr>{cells}</tr>")
    more = ""
    if frame.height > MAX_TABLE_ROWS:
        more = (
            f"<p class='more'>{frame.height - MAX_TABLE_ROWS} more rows in the Parquet output</p>"
        )
    return (
        f"<h3>{html.escape(title)}</h3><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{more}"
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta, .more, footer { color: #666; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f4f4f4; } .chart { margin: 1rem 0 2rem; }
"""


def render_report(report: Report) -> str:
    """The report as one HTML document with everything it needs inline."""
    parts: list[str] = []
    specs: list[tuple[str, str]] = []
    for section_index, section in enumerate(report.sections):
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        for chart_index, chart in enumerate(section.charts):
            element_id = f"chart-{section_index}-{chart_index}"
            parts.append(f"<div class='chart' id='{element_id}'></div>")
            spec = json.dumps(chart.to_dict(), default=str).replace("</", "<\\/")
            specs.append((element_id, spec))
        for title, frame in section.tables:
            parts.append(_table_html(title, frame))
        parts.append("</section>")
    embeds = "\n".join(
        f"vegaEmbed('#{element_id}', {spec}, {{actions: false, renderer: 'svg'}})"
        ".catch(function (e) { console.error(e); });"
        for element_id, spec in specs
    )
    stamp = report.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(report.title)}</title><style>{_STYLE}</style>"
        f"<script>{_javascript_bundle()}</script></head><body>"
        f"<h1>{html.escape(report.title)}</h1><p class='meta'>generated {stamp}</p>"
        + "".join(parts)
        + f"<footer>{html.escape(report.footer)}</footer>"
        + f"<script>{embeds}</script></body></html>"
    )


def write_report(report: Report, path: str | Path) -> Path:
    """Write the report to `path` (UTF-8) and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(report), encoding="utf-8")
    return target
