"""Parsing: errors with line, column and caret; type rules; bounds; hostile input; round trip."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricing_lab.errors import InputError
from pricing_lab.formula import MAX_FORMULA_LENGTH, Formula, FormulaError, check_formula
from pricing_lab.formula.parser import parse
from pricing_lab.formula.render import render
from tests.formula.strategies import formulas

# The recursive formula strategy has a very long repr; Hypothesis warns about building it.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")


def error_of(text: str) -> FormulaError:
    with pytest.raises(FormulaError) as info:
        Formula.parse(text)
    return info.value


def test_the_spec_example_parses_and_lists_its_dimensions() -> None:
    formula = Formula.parse("(1.1 * model1_tokens) + (1.5 * model2_tokens) + (5 * model3_tokens)")
    assert formula.dimensions == ("model1_tokens", "model2_tokens", "model3_tokens")
    assert formula.text == "1.1 * model1_tokens + 1.5 * model2_tokens + 5 * model3_tokens"
    assert str(formula) == formula.text


def test_error_names_line_and_column_and_shows_a_caret() -> None:
    error = error_of("1.1 * tokens +\n  2 * ) ")
    assert (error.line, error.column) == (2, 7)
    assert str(error) == (
        "line 2, column 7: unexpected ')': expected a number, a name or '('\n    2 * ) \n        ^"
    )
    assert isinstance(error, InputError)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("foo(tokens)", "unknown function 'foo'", 1),
        ("max(tokens)", "max() takes at least 2 arguments, got 1", 1),
        ("abs(a, b)", "abs() takes 1 argument, got 2", 1),
        ("if(a > 1, 2)", "if() takes 3 arguments, got 2", 1),
        ("round(a, 2, 3)", "round() takes 1 to 2 arguments, got 3", 1),
        ("round(a, b)", "the digits of round() must be a whole number from 0 to 12", 10),
        ("ceil(a, 13)", "the digits of ceil() must be a whole number from 0 to 12", 9),
        ("'a' + 1", "a string can only be an operand of == or !=", 1),
        ("model < 'x'", "strings can only be compared with == or !=, not <", 7),
        ("1 == 'x'", "a string can only be compared with a dimension or a string", 1),
        ("a > 1", "a formula must be a number, not a condition", 1),
        ("if(a, 1, 2)", "the first argument of if() must be a condition, not a number", 4),
        ("(a > 1) + 1", "the left operand of + must be a number, not a condition", 1),
        ("a and b > 1", "an operand of 'and' must be a condition, not a number", 1),
        ("a < b < c", "comparisons cannot be chained", 7),
        ("a = 1", "unexpected character '=' (use == for equality)", 3),
        ("a ! b", "unexpected character '!'", 3),
        ("1.", "a decimal point must be followed by digits", 3),
        ("1.5.2", "unexpected '.' in a number", 4),
        ("2x", "unexpected 'x' in a number", 2),
        ("(a + 1", "expected ')' to close the '(' at column 1", 7),
        ("a + 1)", "unbalanced ')'", 6),
        ("", "empty formula", 1),
        ("'open", "unterminated string", 1),
        ("`open", "unterminated quoted name", 1),
        ("``", "empty quoted name", 1),
        ("+a", "unary + is not allowed", 1),
        ("and + 1", "unexpected keyword 'and'", 1),
        ("0.0000000000001", "has 13 decimal places; at most 12 are allowed", 1),
        ("1" * 27, "is too large", 1),
    ],
)
def test_invalid_formulas_are_reported_where_they_go_wrong(
    text: str, message: str, column: int
) -> None:
    error = error_of(text)
    assert message in error.reason
    assert error.column == column


def test_size_and_nesting_bounds_give_a_clear_error() -> None:
    assert "at most 10000" in str(error_of("1" + " " * MAX_FORMULA_LENGTH))
    assert "nested too deeply" in str(error_of("(" * 100 + "1" + ")" * 100))
    assert "nested too deeply" in str(error_of("-" * 1000 + "1"))
    assert "nested too deeply" in str(error_of("not " * 1000 + "1 > 0"))
    assert "too complex" in str(error_of(" + ".join(["a"] * 2000)))


def test_case_spacing_and_redundant_parentheses_do_not_matter() -> None:
    a = Formula.parse("MAX( (a) , 1.50 )*B")
    b = Formula.parse("max(a, 1.5) * B")
    assert a == b
    assert a.text == "max(a, 1.5) * B"


def test_backquoted_names_allow_any_name_and_render_back() -> None:
    formula = Formula.parse("`input tokens` + `a``b` + `and` + `é`")
    assert formula.dimensions == ("a`b", "and", "input tokens", "é")
    assert formula.text == "`input tokens` + `a``b` + `and` + `é`"


def test_check_formula_returns_the_message_or_none() -> None:
    assert check_formula("1.1 * tokens") is None
    message = check_formula("1.1 * nope(tokens)")
    assert message is not None and message.startswith("line 1, column 7: unknown function 'nope'")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formulas)
def test_render_then_parse_gives_the_same_tree(tree) -> None:
    assert parse(render(tree)) == tree


_HOSTILE_PIECES = st.sampled_from(
    [
        "(",
        ")",
        ",",
        "'",
        "`",
        "''",
        "``",
        "-",
        "+",
        "*",
        "/",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        "and",
        "or",
        "not",
        "if",
        "min",
        "max",
        "round",
        "coalesce",
        "ceil",
        " ",
        "\n",
        "\t",
        "1",
        "1.5",
        ".",
        "a",
        "x_1",
        "\x00",
        "é",
        "🙂",
        "--",
        ";",
        '"',
        "DROP TABLE t",
        "e5",
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(_HOSTILE_PIECES, max_size=30).map("".join)))
def test_random_and_hostile_text_raises_only_formula_errors(text: str) -> None:
    try:
        formula = Formula.parse(text)
    except FormulaError:
        return
    # Whatever parses renders back to the same formula.
    assert Formula.parse(formula.text) == formula


@pytest.mark.parametrize(
    "text",
    [
        "(" * 64 + "1" + ")" * 64,
        "a" + " + a" * 150,
        "-" * 60 + "a",
        "max(" * 60 + "1" + ", 2)" * 60,
    ],
)
def test_inputs_at_the_bounds_still_compile_everywhere(text: str) -> None:
    formula = Formula.parse(text)
    assert formula.to_duckdb_sql()
    assert formula.to_snowflake_sql()
    formula.to_polars()
    formula.evaluate({"a": 1})
