"""Tables for people: which columns of a frame to show, under which header, formatted how.

A `Table` names its columns (`Column`: the frame's column, a header, a kind of number and, for a
figure compared with a base, the column holding its change). The HTML report
(`report.html`), the command line (`cli.output`) and the notebook views (`report.views`) render the
same `Table` with the same cell texts (`cell_texts`), so a figure reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import polars as pl

from pricing_lab.report import format as fmt

Kind = Literal["text", "count", "credits", "money", "percent", "days", "time", "number"]
NUMERIC_KINDS = frozenset({"count", "credits", "money", "percent", "days", "number"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """One shown column: `name` in the frame, its `header`, how its values read (`kind`).

    Money takes its currency code from `currency`, or per row from the column `currency_from`.
    `change` / `change_pct` name columns shown under the value as its signed change against the
    base (`+5,215.31 (+2.7%)`).
    """

    name: str
    header: str = ""
    kind: Kind | None = None  # None: from the column's type
    currency: str = ""
    currency_from: str | None = None
    change: str | None = None
    change_pct: str | None = None

    @property
    def title(self) -> str:
        return self.header or fmt.label(self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    """A titled table: the rows of `frame`, the `columns` chosen (all of them when empty), at most
    `max_rows` rows shown (`more` says how many are not), `empty` said when there are none."""

    title: str
    frame: pl.DataFrame
    columns: Sequence[Column] = ()
    empty: str = "No rows."
    max_rows: int = 50
    more: str = "{hidden:,} more rows"  # said under a table cut at `max_rows`

    def shown_columns(self) -> list[Column]:
        if self.columns:
            return list(self.columns)
        return [Column(name=name, kind=kind_of(dtype)) for name, dtype in self.frame.schema.items()]

    @property
    def hidden_rows(self) -> int:
        return max(0, self.frame.height - self.max_rows)


@dataclass(frozen=True, slots=True)
class Cell:
    """A formatted cell: its text, the text of its change (or ""), right-aligned when numeric."""

    text: str
    change: str = ""
    numeric: bool = False


def kind_of(dtype: pl.DataType) -> Kind:
    """How a column reads when its table does not say: by its type."""
    if dtype.is_integer():
        return "count"
    if isinstance(dtype, pl.Decimal):
        return "credits"
    if dtype.is_float():
        return "number"
    if dtype.is_temporal():
        return "time"
    return "text"


def value_text(kind: Kind, value: Any, currency: str = "") -> str:
    """A value as its kind reads (see `report.format`)."""
    if value is None:
        return fmt.MISSING
    if kind == "count":
        return fmt.count(value)
    if kind == "credits":
        return fmt.credits(value)
    if kind == "money":
        return fmt.money(value, currency)
    if kind == "percent":
        return fmt.percent(value)
    if kind == "days":
        return fmt.days(value)
    if kind == "number":
        return f"{float(value):,.2f}"
    if kind == "time" and isinstance(value, datetime | date):
        return fmt.timestamp(value)
    return str(value)


def change_text(kind: Kind, value: Any, currency: str = "") -> str:
    """A change of a value of `kind`, signed."""
    if value is None:
        return fmt.MISSING
    if kind == "money":
        return fmt.money_change(value, currency)
    if kind == "count":
        return fmt.count_change(value)
    if kind == "percent":
        return fmt.percent(value, sign=True)
    if kind == "days":
        return fmt.days(value)
    if isinstance(value, Decimal | int):
        return fmt.credits_change(value)
    return fmt.signed(f"{abs(float(value)):,.2f}", value)


def cell_texts(table: Table) -> tuple[list[Column], list[list[Cell]]]:
    """The shown columns and, for each shown row, its cells."""
    columns = table.shown_columns()
    schema = table.frame.schema
    kinds: list[Kind] = [c.kind or kind_of(schema[c.name]) for c in columns]
    rows: list[list[Cell]] = []
    for row in table.frame.head(table.max_rows).iter_rows(named=True):
        cells = []
        for column, kind in zip(columns, kinds, strict=True):
            currency = column.currency
            if column.currency_from is not None:
                currency = str(row[column.currency_from] or "")
            change = ""
            if column.change is not None and row[column.change] is not None:
                change = change_text(kind, row[column.change], currency)
                if column.change_pct is not None and row[column.change_pct] is not None:
                    change += f", {fmt.percent(row[column.change_pct], sign=True)}"
            cells.append(
                Cell(
                    text=value_text(kind, row[column.name], currency),
                    change=change,
                    numeric=kind in NUMERIC_KINDS,
                )
            )
        rows.append(cells)
    return columns, rows


def text_table(table: Table, *, indent: str = "", transpose: bool = False) -> str:
    """The table as aligned plain text for a terminal or a log: a change follows its value in
    parentheses, numbers are right-aligned. With `transpose`, each row of the table is a column
    (headed by its first cell) and each column a row: a few scenarios compared on many figures."""
    columns, rows = cell_texts(table)
    texts = [[f"{c.text} ({c.change})" if c.change else c.text for c in cells] for cells in rows]
    numeric = [any(cells[i].numeric for cells in rows) for i in range(len(columns))]
    if transpose and rows:
        header = [columns[0].title] + [values[0] for values in texts]
        body = [
            [column.title] + [values[i] for values in texts] for i, column in enumerate(columns)
        ]
        grid, right = [header, *body[1:]], [False] + [True] * len(texts)
    else:
        grid, right = [[column.title for column in columns], *texts], numeric
    widths = [max(len(line[i]) for line in grid) for i in range(len(grid[0]))]

    def line(values: list[str]) -> str:
        parts = [
            value.rjust(width) if is_right else value.ljust(width)
            for value, width, is_right in zip(values, widths, right, strict=True)
        ]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(grid[0]), indent + "  ".join("-" * width for width in widths)]
    out.extend(line(values) for values in grid[1:])
    if not rows:
        out.append(indent + table.empty)
    if table.hidden_rows:
        out.append(indent + "… " + table.more.format(hidden=table.hidden_rows))
    return "\n".join(out)
