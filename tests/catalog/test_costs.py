"""Unit costs (cost to serve) in the catalog: YAML, validation with paths, store versions, show."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pricing_lab.catalog.model import UnitCost
from pricing_lab.catalog.store import open_store
from pricing_lab.catalog.validate import validate_catalog
from pricing_lab.catalog.yaml_format import dump_catalog, load_catalog, parse_yaml
from pricing_lab.cli import main
from pricing_lab.errors import ValidationError
from pricing_lab.formula import check_formula

COSTED = """\
currencies:
  - {id: credits, name: Credits, unit_price: 0.001}
features:
  - id: chat
    name: Chat
    type: metered
    meter: {source: events, event_name: llm.request, aggregation: sum, dimension: output_tokens}
    cost:
      - formula: if(model == 'gpt-4o', 0.0000025, 0.00000015) * input_tokens
      - from: 2024-03-01
        formula: 0.7 * if(model == 'gpt-4o', 0.0000025, 0.00000015) * input_tokens
      - from: "2024-06-15T12:00:00+02:00"
        formula: 0.000001 * input_tokens
"""


def problems_of(text: str) -> list[str]:
    return [str(p) for p in validate_catalog(parse_yaml(text), check_formula=check_formula)]


def test_costs_are_read_as_dated_entries_in_utc_and_written_back_the_same() -> None:
    catalog = load_catalog(COSTED, check_formula=check_formula)
    assert catalog.feature("chat").cost == (
        UnitCost(formula="if(model == 'gpt-4o', 0.0000025, 0.00000015) * input_tokens"),
        UnitCost(
            formula="0.7 * if(model == 'gpt-4o', 0.0000025, 0.00000015) * input_tokens",
            valid_from=datetime(2024, 3, 1, tzinfo=UTC),
        ),
        UnitCost(
            formula="0.000001 * input_tokens", valid_from=datetime(2024, 6, 15, 10, tzinfo=UTC)
        ),
    )
    text = dump_catalog(catalog)
    assert "from: '2024-06-15T10:00:00Z'" in text
    assert load_catalog(text) == catalog


def test_every_cost_problem_is_listed_with_its_path() -> None:
    text = """\
currencies:
  - {id: credits, name: Credits, unit_price: 0.001}
features:
  - id: chat
    name: Chat
    type: metered
    meter: {source: events, event_name: llm.request}
    cost:
      - {from: 2024-03-01, formula: 0.000002 * input_tokens}
      - {from: 2024-03-01, formula: 0.000001 * input_tokens}
      - {from: 2024-02-01, formula: "1 +"}
      - {formula: "1"}
      - {from: March, formula: "", unit: usd}
  - id: storage
    name: Storage
    type: metered
    meter: {source: reported, aggregation: max, dimension: quantity}
    cost: [{formula: 0.02 * gigabytes}]
  - id: sso
    name: SSO
    type: boolean
    cost: [{formula: "1"}]
  - id: images
    name: Images
    type: metered
    meter: {source: events, event_name: image.generated}
    cost: {formula: "0.04"}
"""
    assert problems_of(text) == [
        "features[0].cost[1].from: duplicate: the same instant as cost[0].from",
        "features[0].cost[2].formula: line 1, column 4: unexpected end of formula: expected a "
        "number, a name or '('\n  1 +\n     ^",
        "features[0].cost[2].from: must be after cost[1].from: cost entries are in time order",
        "features[0].cost[3].from: required after the first cost entry",
        "features[0].cost[4].unit: unknown key",
        "features[0].cost[4].formula: must not be empty",
        "features[0].cost[4].from: expected a timestamp (e.g. 2024-03-01 or "
        "2024-03-01T00:00:00Z), got 'March'",
        "features[1].cost[0].formula: unknown dimension 'gigabytes': a reported meter's only "
        "dimension is 'quantity'",
        "features[2].cost: only metered features have a cost to serve",
        "features[3].cost: expected a list, got mapping",
    ]


def test_costs_need_one_money_currency() -> None:
    text = COSTED.replace(
        "  - {id: credits, name: Credits, unit_price: 0.001}\n",
        "  - {id: credits, name: Credits, unit_price: 0.001}\n"
        "  - {id: gems, name: Gems, unit_price: 0.01, price_currency: EUR}\n",
    )
    assert problems_of(text) == [
        "features[0].cost: a cost to serve is money in the credit currencies' price currency, "
        "but they are priced in EUR, USD"
    ]
    with pytest.raises(ValidationError):
        load_catalog(text, check_formula=check_formula)


def test_a_cost_change_is_a_new_feature_version_and_every_version_is_kept() -> None:
    catalog = load_catalog(COSTED, check_formula=check_formula)
    store = open_store()
    t1, t2, t3 = (datetime(2024, month, 1, tzinfo=UTC) for month in (1, 2, 3))
    store.apply(catalog, at=t1)
    assert not store.apply(catalog, at=t2).has_changes  # the same costs: nothing new
    chat = catalog.feature("chat")
    cheaper = dataclasses.replace(
        chat,
        cost=(
            *chat.cost,
            UnitCost(formula="0.0000005 * input_tokens", valid_from=datetime(2024, 9, 1)),
        ),
    )
    diff = store.apply(dataclasses.replace(catalog, features=(cheaper,)), at=t3)
    [change] = [c for c in diff.changes if c.kind == "feature"]
    assert (change.change, change.version_after, change.fields) == ("changed", 2, ("cost",))
    assert store.current().feature("chat").cost[-1] == UnitCost(
        formula="0.0000005 * input_tokens", valid_from=datetime(2024, 9, 1, tzinfo=UTC)
    )
    assert store.feature_version("chat", 1).cost == chat.cost
    assert store.version_at("feature", "chat", datetime(2024, 2, 15, tzinfo=UTC)) == 1
    rows = store.tables()["feature_costs"]
    versions = [(1, position) for position in range(3)] + [(2, p) for p in range(4)]
    assert rows.select("version", "position").rows() == versions
    assert rows["valid_from"][0] is None
    assert rows["valid_from"][-1] == datetime(2024, 9, 1)  # stored as naive UTC


def test_catalog_show_lists_the_costs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "costed.yaml"
    file.write_text(COSTED, encoding="utf-8")
    db = str(tmp_path / "cat.duckdb")
    assert main(["catalog", "apply", str(file), "--db", db]) == 0
    capsys.readouterr()
    assert main(["catalog", "show", "--db", db]) == 0
    out = capsys.readouterr().out
    assert (
        "    cost to serve from always: if(model == 'gpt-4o', 0.0000025, 0.00000015) * "
        "input_tokens per event\n"
        "    cost to serve from 2024-03-01T00:00:00+00:00: 0.7 * if(model == 'gpt-4o', "
        "0.0000025, 0.00000015) * input_tokens per event\n"
        "    cost to serve from 2024-06-15T10:00:00+00:00: 0.000001 * input_tokens per event\n"
    ) in out
