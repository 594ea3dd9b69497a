"""Invalid catalogs: each one lists every problem, with its path in the file and a clear message."""

from __future__ import annotations

import pytest

from pricing_lab.catalog.validate import validate_catalog
from pricing_lab.catalog.yaml_format import load_catalog, parse_yaml
from pricing_lab.errors import ValidationError

# Two features' worth of catalog; a case appends more feature lines, or further sections.
BASE = """\
currencies:
  - {id: credits, name: Credits, unit_price: 0.001}
features:
  - {id: sso, name: SSO, type: boolean}
  - {id: seats, name: Seats, type: configuration}
  - id: chat
    name: Chat
    type: metered
    meter: {source: events, event_name: llm.request, aggregation: sum, dimension: output_tokens}
"""

TWO_CURRENCIES = """\
currencies:
  - {id: credits, name: Credits, unit_price: 0.001}
  - {id: gems, name: Gems, unit_price: 0.01}
features:
  - id: chat
    name: Chat
    type: metered
    meter: {source: events, event_name: llm.request}
"""

OPERATORS = (
    "equals, not_equals, gt, gte, lt, lte, is_null, is_not_null, contains, starts_with, "
    "ends_with, in"
)

CASES: list[tuple[str, str, list[str]]] = [
    (
        "bad id",
        BASE + '  - {id: "bad id", name: X, type: boolean}\n',
        ["features[3].id: invalid id 'bad id' (must match [A-Za-z0-9][A-Za-z0-9_.:-]*)"],
    ),
    (
        "duplicate feature id, even archived",
        BASE + "  - {id: sso, name: Old SSO, type: boolean, status: archived}\n",
        ["features[3].id: duplicate feature id 'sso' (already used by features[0])"],
    ),
    (
        "duplicate plan id",
        BASE + "plans:\n  - {id: pro, name: Pro}\n  - {id: pro, name: Pro 2}\n",
        ["plans[1].id: duplicate plan id 'pro' (already used by plans[0])"],
    ),
    (
        "unknown feature in the third plan",
        BASE
        + """\
plans:
  - {id: free, name: Free}
  - {id: pro, name: Pro}
  - id: enterprise
    name: Enterprise
    entitlements:
      - {kind: boolean, feature: sso2}
""",
        ["plans[2].entitlements[0].feature: unknown feature 'sso2'"],
    ),
    (
        "unknown feature group",
        BASE + "plans:\n  - {id: pro, name: Pro, entitlements: [{kind: group, group: core}]}\n",
        ["plans[0].entitlements[0].group: unknown feature group 'core'"],
    ),
    (
        "unknown currency in a credit entitlement",
        BASE
        + "addons:\n  - id: extra\n    name: Extra\n    entitlements:\n"
        + "      - {kind: credit, currency: gems, amount: 100}\n",
        ["addons[0].entitlements[0].currency: unknown currency 'gems'"],
    ),
    (
        "unknown feature in a group",
        BASE + "feature_groups:\n  - {id: core, name: Core, features: [sso, chat2]}\n",
        ["feature_groups[0].features[1]: unknown feature 'chat2'"],
    ),
    (
        "wrong type",
        BASE + "  - {id: x, name: 5, type: boolean}\n",
        ["features[3].name: expected a string, got number (quote it to make it a string)"],
    ),
    (
        "a number written in exponent form",
        BASE + "  - {id: x, name: X, type: configuration}\nplans:\n  - {id: p, name: P, "
        "entitlements: [{kind: configuration, feature: x, value: 1e3}]}\n",
        [
            "plans[0].entitlements[0].value: expected a number (a plain decimal, unquoted), "
            "got the text '1e3'"
        ],
    ),
    (
        "unknown key with a suggestion",
        BASE + "  - {id: x, name: X, type: boolean, descripton: typo}\n",
        ["features[3].descripton: unknown key (did you mean 'description'?)"],
    ),
    (
        "unknown top-level section",
        BASE + "promotions: []\n",
        ["promotions: unknown key"],
    ),
    (
        "section that is not a list",
        BASE + "plans: {pro: 1}\n",
        ["plans: expected a list, got mapping"],
    ),
    (
        "missing required field",
        BASE + "  - {id: x, type: boolean}\n",
        ["features[3].name: missing required field"],
    ),
    (
        "unknown filter operator",
        BASE
        + "  - id: docs\n    name: Docs\n    type: metered\n"
        + "    meter:\n      source: events\n      event_name: summary.created\n"
        + "      filters: [{dimension: doc_type, operator: eq, value: document}]\n",
        [f"features[3].meter.filters[0].operator: must be one of {OPERATORS}; got 'eq'"],
    ),
    (
        "null test with a value, 'in' without a list",
        BASE
        + "  - id: docs\n    name: Docs\n    type: metered\n"
        + "    meter:\n      source: events\n      event_name: summary.created\n"
        + "      filters:\n"
        + "        - {dimension: pages, operator: is_null, value: 1}\n"
        + "        - {dimension: doc_type, operator: in, value: document}\n",
        [
            "features[3].meter.filters[0].value: operator 'is_null' takes no value",
            "features[3].meter.filters[1].value: operator 'in' needs a non-empty list of values",
        ],
    ),
    (
        "aggregation without a dimension",
        BASE
        + "  - id: x\n    name: X\n    type: metered\n"
        + "    meter: {source: events, event_name: e, aggregation: sum}\n",
        ["features[3].meter.dimension: aggregation 'sum' needs a dimension"],
    ),
    (
        "events meter without an event name",
        BASE + "  - {id: x, name: X, type: metered, meter: {source: events}}\n",
        ["features[3].meter.event_name: required for an events meter"],
    ),
    (
        "metered feature without a meter, boolean feature with one",
        BASE
        + "  - {id: x, name: X, type: metered}\n"
        + "  - {id: y, name: Y, type: boolean, meter: {source: reported}}\n",
        [
            "features[3].meter: required for a metered feature",
            "features[4].meter: only metered features have a meter",
        ],
    ),
    (
        "display unit factor not positive",
        BASE
        + "  - id: storage\n    name: Storage\n    type: metered\n"
        + "    display_unit: {singular: GB, plural: GB, factor: 0}\n"
        + "    meter: {source: reported, aggregation: max, dimension: quantity}\n",
        ["features[3].display_unit.factor: must be > 0"],
    ),
    (
        "boolean entitlement to a metered feature",
        BASE + "plans:\n  - {id: pro, name: Pro, entitlements: [{kind: boolean, feature: chat}]}\n",
        [
            "plans[0].entitlements[0].feature: feature 'chat' is metered; a boolean "
            "entitlement needs a boolean feature"
        ],
    ),
    (
        "configuration entitlement without a value",
        BASE
        + "plans:\n  - id: pro\n    name: Pro\n"
        + "    entitlements: [{kind: configuration, feature: seats}]\n",
        ["plans[0].entitlements[0].value: missing required field"],
    ),
    (
        "group with a configuration feature and no value for it",
        BASE
        + "feature_groups:\n  - {id: team, name: Team, features: [sso, seats]}\n"
        + "plans:\n  - {id: pro, name: Pro, entitlements: [{kind: group, group: team}]}\n",
        [
            "plans[0].entitlements[0].group: feature group 'team' contains configuration "
            "feature 'seats': add a configuration entitlement with its value"
        ],
    ),
    (
        "credit entitlement of zero credits",
        BASE
        + "plans:\n  - id: pro\n    name: Pro\n    entitlements:\n"
        + "      - {kind: credit, currency: credits, amount: 0}\n",
        ["plans[0].entitlements[0].amount: must be > 0"],
    ),
    (
        "rollover caps out of range, on a plan and an add-on",
        BASE
        + "plans:\n  - id: pro\n    name: Pro\n    entitlements:\n"
        + "      - {kind: credit, currency: credits, amount: 100, rollover: {max_amount: 0,"
        + " max_percent: 101}}\n"
        + "addons:\n  - id: extra\n    name: Extra\n    entitlements:\n"
        + "      - {kind: credit, currency: credits, amount: 100, rollover: {max_amount: 1.005,"
        + " max_percent: 0, cap: 3}}\n",
        [
            "plans[0].entitlements[0].rollover.max_amount: must be > 0",
            "plans[0].entitlements[0].rollover.max_percent: must be <= 100",
            "addons[0].entitlements[0].rollover.cap: unknown key for a rollover",
            "addons[0].entitlements[0].rollover.max_amount: more decimal places than currency "
            "'credits' keeps (2)",
            "addons[0].entitlements[0].rollover.max_percent: must be > 0",
        ],
    ),
    (
        "rollover without a cap",
        BASE
        + "plans:\n  - id: pro\n    name: Pro\n    entitlements:\n"
        + "      - {kind: credit, currency: credits, amount: 100, rollover: {}}\n",
        ["plans[0].entitlements[0].rollover: give max_amount, max_percent or both"],
    ),
    (
        "granting an archived feature",
        BASE
        + "  - {id: legacy, name: Legacy, type: boolean, status: archived}\n"
        + "plans:\n  - {id: pro, name: Pro, entitlements: [{kind: boolean, feature: legacy}]}\n",
        ["plans[0].entitlements[0].feature: feature 'legacy' is archived and cannot be granted"],
    ),
    (
        "per_unit rate without per_unit, formula rate without formula",
        BASE
        + "plans:\n  - id: pro\n    name: Pro\n    credit_rates:\n"
        + "      - {feature: chat, mode: per_unit}\n"
        + "      - {feature: chat, mode: formula, currency: credits}\n",
        [
            "plans[0].credit_rates[0].per_unit: required when mode is per_unit",
            "plans[0].credit_rates[1].formula: required when mode is formula",
        ],
    ),
    (
        "rate for a non-metered feature",
        BASE + "default_credit_rates:\n  - {feature: sso, mode: per_unit, per_unit: 1}\n",
        [
            "default_credit_rates[0].feature: feature 'sso' is boolean; credit rates apply to "
            "metered features"
        ],
    ),
    (
        "rate currency left out with two currencies",
        TWO_CURRENCIES
        + "default_credit_rates:\n  - {feature: chat, mode: per_unit, per_unit: 1}\n",
        ["default_credit_rates[0].currency: required when the catalog has more than one currency"],
    ),
    (
        "a rate in a catalog without currencies",
        "features:\n  - id: chat\n    name: Chat\n    type: metered\n"
        "    meter: {source: events, event_name: llm.request}\n"
        "default_credit_rates:\n  - {feature: chat, mode: per_unit, per_unit: 1}\n",
        ["default_credit_rates[0]: the catalog has no credit currency for this rate to burn"],
    ),
    (
        "currency precision, rounding, unit price",
        """\
currencies:
  - {id: credits, name: Credits, unit_price: -1, precision: 13, rounding: nearest}
""",
        [
            "currencies[0].unit_price: must be >= 0",
            "currencies[0].precision: must be an integer from 0 to 12",
            "currencies[0].rounding: must be one of half_up, up, down; got 'nearest'",
        ],
    ),
    (
        "more decimal places than the store keeps",
        "currencies:\n  - {id: credits, name: Credits, unit_price: 0.0000000000001}\n",
        ["currencies[0].unit_price: at most 12 decimal places"],
    ),
    (
        "more decimal places than the store keeps, more digits than Python's default precision",
        "currencies:\n  - {id: credits, name: Credits, "
        "unit_price: 12345678901234567890.1234567890123}\n",
        ["currencies[0].unit_price: at most 12 decimal places"],
    ),
    (
        "entitlement kind unknown, key of another kind",
        BASE
        + "plans:\n  - id: pro\n    name: Pro\n    entitlements:\n"
        + "      - {kind: feature, feature: sso}\n"
        + "      - {kind: boolean, feature: sso, value: 1}\n",
        [
            "plans[0].entitlements[0].kind: must be one of boolean, configuration, metered, "
            "group, credit; got 'feature'",
            "plans[0].entitlements[1].value: unknown key for a boolean entitlement",
        ],
    ),
    (
        "several problems at once, in file order",
        """\
currencies:
  - {id: credits, name: Credits}
features:
  - {id: sso, name: SSO, type: bool}
plans:
  - {id: pro, name: Pro, status: retired, entitlements: [{kind: boolean, feature: nope}]}
""",
        [
            "currencies[0].unit_price: missing required field",
            "features[0].type: must be one of boolean, configuration, metered; got 'bool'",
            "plans[0].status: must be one of active, archived; got 'retired'",
            "plans[0].entitlements[0].feature: unknown feature 'nope'",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_catalog_lists_every_problem(text: str, expected: list[str]) -> None:
    problems = [str(p) for p in validate_catalog(parse_yaml(text))]
    assert problems == expected
    with pytest.raises(ValidationError) as raised:
        load_catalog(text, source="bad.yaml")
    assert [str(p) for p in raised.value.problems] == expected
    assert str(raised.value).startswith(f"bad.yaml: {len(expected)} problem")


def test_the_base_catalog_is_valid() -> None:
    assert validate_catalog(parse_yaml(BASE)) == []
    assert validate_catalog(parse_yaml(TWO_CURRENCIES)) == []


def test_formula_text_is_checked_by_the_given_checker() -> None:
    text = (
        BASE
        + """\
plans:
  - {id: free, name: Free}
  - id: pro
    name: Pro
    credit_rates:
      - {feature: chat, mode: formula, formula: "(1.1 * output_tokens"}
"""
    )

    def check(formula: str) -> str | None:
        return "missing ')'" if formula.count("(") != formula.count(")") else None

    problems = validate_catalog(parse_yaml(text), check_formula=check)
    assert [str(p) for p in problems] == ["plans[1].credit_rates[0].formula: missing ')'"]
    # Without a checker the formula module's parser checks it, as `load_catalog_file` and
    # `store.apply` from Python do: a bad formula is never stored to fail only in a replay.
    (problem,) = validate_catalog(parse_yaml(text))
    assert problem.path == "plans[1].credit_rates[0].formula"
    assert problem.message.startswith("line 1, column 21: expected ')'")


def test_a_float_amount_from_python_is_refused_with_the_exact_spelling() -> None:
    from pricing_lab.catalog.model import Catalog, CreditCurrency

    catalog = Catalog(currencies=(CreditCurrency(id="c", name="C", unit_price=0.1),))  # type: ignore[arg-type]
    assert [str(p) for p in validate_catalog(catalog)] == [
        "currencies[0].unit_price: expected an exact number (int or Decimal), got the float 0.1; "
        "write Decimal('0.1')"
    ]


def test_a_python_catalog_is_validated_with_the_same_paths() -> None:
    from pricing_lab.catalog.model import BooleanEntitlement, Catalog, Feature, Plan

    catalog = Catalog(
        features=(Feature(id="sso", name="SSO", type="boolean"),),
        plans=(
            Plan(id="pro", name="Pro"),
            Plan(id="max", name="Max", entitlements=(BooleanEntitlement(feature="sso2"),)),
        ),
    )
    assert [str(p) for p in validate_catalog(catalog)] == [
        "plans[1].entitlements[0].feature: unknown feature 'sso2'"
    ]
