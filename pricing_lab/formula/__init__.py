"""Consumption formulas (SPEC §3): parse once, then compile to DuckDB, Snowflake, Polars or Decimal.

    >>> f = Formula.parse("(1.1 * model1_tokens) + (1.5 * model2_tokens) + (5 * model3_tokens)")
    >>> f.dimensions
    ('model1_tokens', 'model2_tokens', 'model3_tokens')
    >>> f.evaluate({"model1_tokens": 10, "model2_tokens": 2, "model3_tokens": 1})
    Decimal('19.0')

The language, its value rules (exact decimals, 12 working places, half-away-from-zero rounding,
nulls, division by zero) and how each backend follows them are in docs/formulas.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pricing_lab.formula.ast import Node, dimension_columns, dimensions
from pricing_lab.formula.decimal_eval import evaluate
from pricing_lab.formula.duckdb_sql import to_duckdb_sql
from pricing_lab.formula.errors import FormulaError, FormulaOverflowError
from pricing_lab.formula.parser import MAX_NESTING, WORKING_SCALE, parse
from pricing_lab.formula.render import render
from pricing_lab.formula.snowflake_sql import to_snowflake_sql
from pricing_lab.formula.tokens import MAX_FORMULA_LENGTH

if TYPE_CHECKING:
    import duckdb
    import polars as pl

__all__ = [
    "MAX_FORMULA_LENGTH",
    "MAX_NESTING",
    "WORKING_SCALE",
    "Formula",
    "FormulaError",
    "FormulaOverflowError",
    "check_formula",
]

RESULT_COLUMN = "value"


@dataclass(frozen=True, slots=True)
class Formula:
    """A parsed, type-checked formula. Equal formulas have equal trees and equal `text`."""

    tree: Node
    source: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> Formula:
        """Parse formula text; raises FormulaError (line, column and a caret) when invalid."""
        return cls(parse(text), text)

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Sorted names of the event dimensions the formula reads."""
        return dimensions(self.tree)

    @property
    def text(self) -> str:
        """The canonical text: `Formula.parse(f.text) == f`."""
        return render(self.tree)

    def __str__(self) -> str:
        return self.text

    def to_duckdb_sql(self, column_types: Mapping[str, str] | None = None) -> str:
        """A DuckDB SQL expression of type DECIMAL(38, 12); see `duckdb_sql.to_duckdb_sql`.
        `column_types`: column → DuckDB type (`dict(zip(relation.columns, relation.types))`),
        dimensions matched to columns as `dimension_columns` says."""
        if column_types is not None:
            column_types = {**column_types, **self.dimension_types(column_types)}
        return to_duckdb_sql(self.tree, column_types)

    def to_snowflake_sql(self, column_types: Mapping[str, str] | None = None) -> str:
        """A Snowflake SQL expression of type NUMBER(38, 12)."""
        return to_snowflake_sql(self.tree, column_types)

    def to_polars(self, schema: Mapping[str, pl.DataType] | None = None) -> pl.Expr:
        """A Polars expression of dtype Decimal(38, 12); pass the frame's schema when known."""
        from pricing_lab.formula.polars_expr import to_polars

        return to_polars(self.tree, schema)

    def dimension_columns(self, columns: Iterable[str]) -> dict[str, str]:
        """The column each dimension this formula reads, keyed by the formula's spelling.

        Dimension names match columns case-insensitively, as DuckDB identifiers do (an exact
        match first): `Output_Tokens` reads the column `output_tokens`. A dimension with no
        column is left out (it is null in every row).
        """
        return dimension_columns(self.dimensions, columns)

    def dimension_types(self, column_types: Mapping[str, str]) -> dict[str, str]:
        """The column type of each dimension this formula reads, keyed by the formula's spelling
        (matched as `dimension_columns` says)."""
        return {
            name: column_types[column]
            for name, column in self.dimension_columns(column_types).items()
        }

    def evaluate(self, row: Mapping[str, Any]) -> Decimal | None:
        """The reference value for one event (dimension name → value); None means null."""
        return evaluate(self.tree, row)

    def evaluate_duckdb(
        self, con: duckdb.DuckDBPyConnection, relation_or_table_sql: duckdb.DuckDBPyRelation | str
    ) -> duckdb.DuckDBPyRelation:
        """The formula over every row of a relation, a table name or a query.

        Returns a one-column relation `value` (DECIMAL(38, 12)), rows in input order. Column types
        are read from the relation, so the SQL is the exact per-type reading.
        """
        relation = _relation(con, relation_or_table_sql)
        columns = dict(zip(relation.columns, (str(t) for t in relation.types), strict=True))
        sql = self.to_duckdb_sql(columns)
        try:
            return relation.select(f"{sql} AS {RESULT_COLUMN}")
        except Exception as exc:  # binder errors surface here (e.g. an unusual column type)
            raise FormulaError(f"DuckDB could not compile the formula: {exc}") from exc

    def evaluate_polars(self, frame: pl.DataFrame) -> pl.Series:
        """The formula over every row of a Polars frame, as a Decimal(38, 12) series `value`.

        Raises FormulaOverflowError when a value leaves the DECIMAL(38, s) range.
        """
        import polars as pl

        expr = self.to_polars(frame.schema)
        try:
            # with_columns (not select): a formula without dimensions still gives one value a row.
            result = frame.with_columns(expr.alias(_TEMP)).get_column(_TEMP)
        except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError) as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise FormulaOverflowError(f"value out of range in Polars: {first_line}") from exc
        return result.alias(RESULT_COLUMN)


_TEMP = "__pricing_lab_formula_value__"


def _relation(
    con: duckdb.DuckDBPyConnection, source: duckdb.DuckDBPyRelation | str
) -> duckdb.DuckDBPyRelation:
    if not isinstance(source, str):
        return source
    stripped = source.strip()
    if stripped.split(None, 1)[0].lower() in ("select", "with", "from", "values", "table"):
        return con.sql(stripped)
    return con.table(stripped)


def check_formula(text: str) -> str | None:
    """None when `text` is a valid formula, else the error message (for catalog validation)."""
    try:
        parse(text)
    except FormulaError as exc:
        return str(exc)
    return None
