"""The YAML catalog format: exact decimals, syntax errors with positions, dump ⇄ load round trip."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pricing_lab.catalog.model import MeteredEntitlement
from pricing_lab.catalog.yaml_format import dump_catalog, load_catalog, load_catalog_file
from pricing_lab.errors import InputError
from tests.conftest import EXAMPLES

SAMPLE = EXAMPLES / "ai_product.yaml"


def test_numbers_are_exact_decimals_from_their_text() -> None:
    catalog = load_catalog(
        """\
currencies:
  - {id: credits, name: Credits, unit_price: 0.1, precision: 4}
features:
  - id: chat
    name: Chat
    type: metered
    meter:
      source: events
      event_name: llm.request
      filters: [{dimension: input_tokens, operator: gt, value: 0.30000000000000004}]
plans:
  - id: pro
    name: Pro
    price: {amount: 19.99}
    entitlements: [{kind: metered, feature: chat, usage_limit: 1_000_000}]
"""
    )
    currency = catalog.currency("credits")
    assert currency.unit_price == Decimal("0.1") and isinstance(currency.unit_price, Decimal)
    assert str(currency.unit_price) == "0.1"
    assert currency.precision == 4
    meter = catalog.feature("chat").meter
    assert meter is not None
    assert meter.filters[0].value == Decimal("0.30000000000000004")
    pro = catalog.plan("pro")
    assert pro.price is not None and pro.price.amount == Decimal("19.99")
    assert pro.entitlements == (MeteredEntitlement(feature="chat", usage_limit=Decimal(1000000)),)


def test_syntax_error_names_line_and_column() -> None:
    text = "features:\n  - id: sso\n    name: SSO: single sign-on\n"
    with pytest.raises(InputError) as raised:
        load_catalog(text, source="cat.yaml")
    assert str(raised.value) == (
        "cat.yaml:3:14: YAML syntax error: mapping values are not allowed here\n"
        "      name: SSO: single sign-on\n"
        "  " + " " * 13 + "^"  # under the second ':' (column 14)
    )


def test_duplicate_keys_are_refused_with_position() -> None:
    text = "features:\n  - id: sso\n    name: SSO\n    name: Single sign-on\n    type: boolean\n"
    with pytest.raises(InputError, match=r"cat.yaml:4:5: YAML syntax error: duplicate key 'name'"):
        load_catalog(text, source="cat.yaml")


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such catalog file"):
        load_catalog_file(tmp_path / "nope.yaml")


def test_empty_file_is_an_empty_catalog() -> None:
    assert load_catalog("").features == ()


def test_sample_round_trips_through_yaml() -> None:
    catalog = load_catalog_file(SAMPLE)
    text = dump_catalog(catalog)
    again = load_catalog(text)
    assert again == catalog
    assert dump_catalog(again) == text  # the dump is canonical


def test_dump_writes_plain_numbers() -> None:
    catalog = load_catalog_file(SAMPLE)
    text = dump_catalog(catalog)
    assert "unit_price: 0.001\n" in text
    assert "factor: 1000000000\n" in text
    assert "E+" not in text and "e+" not in text


def test_dump_keeps_every_digit_of_a_38_digit_amount() -> None:
    text = (
        "currencies:\n  - {id: c, name: C, unit_price: 12345678901234567890123456.123456789012}\n"
    )
    dumped = dump_catalog(load_catalog(text))
    assert "unit_price: 12345678901234567890123456.123456789012\n" in dumped
    assert load_catalog(dumped) == load_catalog(text)


def test_the_documented_example_is_a_valid_catalog() -> None:
    text = (EXAMPLES.parent / "docs" / "catalog.md").read_text(encoding="utf-8")
    block = text.split("### A complete example\n\n```yaml\n", 1)[1].split("```", 1)[0]
    catalog = load_catalog(block, source="docs/catalog.md")
    assert [p.id for p in catalog.plans] == ["pro"]
    assert catalog.currency("credits").unit_price == Decimal("0.001")
