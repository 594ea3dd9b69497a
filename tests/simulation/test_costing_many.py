"""Costing several rate sets at once: each result equals its own `cost_events`, rate sets costing
the same rows share one pass, rejections stay in the rate set that rejects."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from polars.testing import assert_frame_equal

from pricing_lab.catalog.model import Catalog
from pricing_lab.ledger.model import Subscription
from pricing_lab.simulation import costing as costing_module
from pricing_lab.simulation.costing import (
    Costing,
    CustomerSpan,
    cost_events,
    cost_events_many,
    costed_events,
)
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.scenarios import RateChange, Scenario
from tests.simulation.helpers import CATALOG_YAML, at, catalog, ev, load_events, naive

SUBSCRIPTIONS = (
    Subscription(subscription_id="s1", customer_id="b", plan_id="basic", start=at(1), end=at(5)),
    Subscription(subscription_id="s2", customer_id="b", plan_id="pro", start=at(5)),
    Subscription(
        subscription_id="s3", customer_id="p", plan_id="pro", start=at(1), addons=("imgpack",)
    ),
)

ROWS = [
    ev("n1", "nosub", "chat", naive(3), tokens=3, x="1"),
    ev("n2", "nosub", "img", naive(3)),
    ev("n3", "nosub", "other", naive(4)),
    ev("b1", "b", "chat", naive(2), tokens=7, x="2.5"),
    ev("b2", "b", "chat", naive(6), tokens=2),
    ev("b3", "b", "img", naive(6, 1)),
    ev("p1", "p", "chat", naive(2), tokens=11, x="0.125"),
    ev("p2", "p", "img", naive(2, 3)),
    ev("p3", "p", "chat", naive(9), tokens=1, x="4"),
]


def changed(scenario: Scenario, base: Catalog | None = None) -> Catalog:
    changed_catalog, _ = scenario.apply(base or catalog(), CustomerInputs())
    return changed_catalog


def assert_same_as_separate(
    con: duckdb.DuckDBPyConnection,
    catalogs: Sequence[Catalog],
    subscriptions: Sequence[Sequence[Subscription]],
) -> list[Costing]:
    together = cost_events_many(con, catalogs, subscriptions)
    assert len(together) == len(catalogs)
    for one, (cat, subs) in zip(together, zip(catalogs, subscriptions)):
        alone = cost_events(con, cat, subs)
        assert_frame_equal(one.consumptions, alone.consumptions, check_exact=True)
        assert_frame_equal(one.rejected, alone.rejected, check_exact=True)
    return together


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rate sets each costing pass over the events computed."""
    seen: list[int] = []
    shared = costing_module._build_costed

    def counting(con, rate_sets, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(len(rate_sets))
        return shared(con, rate_sets, *args, **kwargs)

    monkeypatch.setattr(costing_module, "_build_costed", counting)
    return seen


def test_multipliers_and_formula_changes_share_one_pass_and_equal_separate_costings(
    passes: list[int],
) -> None:
    con, _ = load_events(ROWS)
    catalogs = [
        catalog(),
        changed(Scenario(name="x", rate_multipliers={"chat": Decimal("1.5")})),
        changed(Scenario(name="y", rate_multipliers={"chat": Decimal("0.3"), "img": Decimal(7)})),
        changed(Scenario(name="z", rates=(RateChange(feature="chat", formula="tokens * 0.07"),))),
        changed(
            Scenario(name="w", rates=(RateChange(feature="chat", per_unit=Decimal(2), plan="pro"),))
        ),
    ]
    passes.clear()
    results = assert_same_as_separate(con, catalogs, [SUBSCRIPTIONS] * len(catalogs))
    assert passes[0] == len(catalogs)  # the first call: one pass for all five
    base, scaled = results[0].consumptions, results[1].consumptions
    chat = base["feature_id"] == "chat"
    assert (scaled.filter(chat)["cost"] != base.filter(chat)["cost"]).any()
    assert scaled.select("event_id", "feature_id").equals(base.select("event_id", "feature_id"))


def test_a_feature_rated_in_one_set_only_is_costed_there_and_null_feature_elsewhere(
    passes: list[int],
) -> None:
    con, _ = load_events(ROWS)
    # `img` has a rate only in the imgpack add-on; here it gets a default rate too, and in the
    # other direction chat_requests loses its rates.
    base = catalog()
    img_everywhere = catalog(
        CATALOG_YAML.replace(
            "  - {feature: chat_requests, mode: per_unit, per_unit: 1}\n",
            "  - {feature: chat_requests, mode: per_unit, per_unit: 1}\n"
            "  - {feature: img, mode: per_unit, per_unit: 3}\n",
        )
    )
    no_requests = catalog(
        CATALOG_YAML.replace(
            "  - {feature: chat_requests, mode: per_unit, per_unit: 1}\n", ""
        ).replace("      - {feature: chat_requests, mode: per_unit, per_unit: 0.25}\n", "")
    )
    scaled = changed(Scenario(name="x", rate_multipliers={"chat": Decimal(2)}), base)
    passes.clear()
    results = assert_same_as_separate(
        con, [base, img_everywhere, scaled, no_requests], [SUBSCRIPTIONS] * 4
    )
    assert passes[:3] == [2, 1, 1]  # base and scaled together, the others alone
    uncosted = results[0].consumptions.filter(results[0].consumptions["feature_id"].is_null())
    assert set(uncosted["event_id"]) == {"n2", "n3", "b3"}
    costed = results[1].consumptions.filter(results[1].consumptions["feature_id"] == "img")
    assert set(costed["event_id"]) == {"n2", "p2"}  # b3: b's plan has no img rate


def test_events_rejected_in_one_rate_set_are_removed_from_that_set_only(
    passes: list[int],
) -> None:
    con, _ = load_events(ROWS)
    negative = changed(
        Scenario(name="neg", rates=(RateChange(feature="chat", formula="tokens - 5"),))
    )
    # null (x missing) for b2, negative for tokens < 5: n1, p3 rejected in both sets
    null_too = changed(
        Scenario(name="null", rates=(RateChange(feature="chat", formula="x * (tokens - 5)"),))
    )
    catalogs = [catalog(), negative, null_too, catalog()]
    passes.clear()
    results = assert_same_as_separate(con, catalogs, [SUBSCRIPTIONS] * 4)
    assert passes[0] == 4  # one pass (the same catalog twice gets two columns)
    base, neg, nul, again = results
    assert base.rejected.is_empty() and again.rejected.is_empty()
    assert_frame_equal(base.consumptions, again.consumptions, check_exact=True)
    assert set(base.consumptions["event_id"]) == {e["event_id"] for e in ROWS}
    assert neg.rejected.select("event_id", "reason").rows() == [
        ("b2", "formula_negative"),
        ("n1", "formula_negative"),
        ("p3", "formula_negative"),
    ]
    assert nul.rejected.select("event_id", "reason").rows() == [
        ("b2", "formula_null"),
        ("n1", "formula_negative"),
        ("p3", "formula_negative"),
    ]
    assert "chat costs -3" in neg.rejected.filter(neg.rejected["event_id"] == "b2")["detail"][0]
    for result in (neg, nul):
        assert set(result.consumptions["event_id"]).isdisjoint(result.rejected["event_id"])


def test_only_the_other_set_rejects_an_event() -> None:
    con, _ = load_events(ROWS)
    negative = changed(
        Scenario(name="neg", rates=(RateChange(feature="chat", formula="tokens - 10"),))
    )
    together = assert_same_as_separate(con, [catalog(), negative], [SUBSCRIPTIONS] * 2)
    assert together[0].rejected.is_empty()
    assert set(together[1].rejected["event_id"]) == {"n1", "b1", "b2", "p3"}
    # rejected in both sets (n1, b2, p3) and in one of them only (b1)
    less = changed(Scenario(name="less", rates=(RateChange(feature="chat", formula="tokens - 5"),)))
    both = assert_same_as_separate(con, [less, negative], [SUBSCRIPTIONS] * 2)
    assert set(both[0].rejected["event_id"]) == {"n1", "b2", "p3"}
    assert "b1" in set(both[0].consumptions["event_id"])
    assert "b1" not in set(both[1].consumptions["event_id"])


TWO_CURRENCIES = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.01, precision: 2, rounding: half_up}
  - {id: TK, name: Tokens, unit_price: 0.001, precision: 0, rounding: up}
features:
  - id: chat
    name: Chat
    type: metered
    meter: {source: events, event_name: chat, aggregation: sum, dimension: tokens}
default_credit_rates:
  - {feature: chat, mode: formula, formula: "tokens * 0.333", currency: CR}
"""


def test_rate_sets_charging_different_currencies_are_costed_in_their_own(
    passes: list[int],
) -> None:
    con, _ = load_events(ROWS)
    in_tokens = catalog(TWO_CURRENCIES.replace("currency: CR}", "currency: TK}"))
    passes.clear()
    results = assert_same_as_separate(con, [catalog(TWO_CURRENCIES), in_tokens], [()] * 2)
    assert passes[0] == 2
    assert set(results[0].consumptions["currency_id"].drop_nulls()) == {"CR"}
    assert set(results[1].consumptions["currency_id"].drop_nulls()) == {"TK"}
    by_event = dict(results[1].consumptions.select("event_id", "cost").iter_rows())
    assert by_event["b1"] == Decimal(3)  # 7 × 0.333 = 2.331, rounded up to whole tokens


def test_different_subscriptions_are_costed_in_separate_passes(passes: list[int]) -> None:
    con, _ = load_events(ROWS)
    fewer = SUBSCRIPTIONS[:2]
    passes.clear()
    assert_same_as_separate(con, [catalog(), catalog()], [SUBSCRIPTIONS, fewer])
    assert passes[:2] == [1, 1]


def test_no_catalogs_cost_nothing() -> None:
    con, _ = load_events(ROWS)
    assert cost_events_many(con, [], []) == []


@pytest.mark.parametrize("first_set", ["tokens", "tokens - 5"])
def test_costings_split_by_span_are_those_read_span_by_span(tmp_path: Path, first_set: str) -> None:
    """Spans given up front: the costed rows are streamed once into a file per span; each
    span's costings are those of the span's own query over the stored rows, for every rate
    set (events rejected in one set, or with `tokens - 5` in both: n1, b2, p3), and a customer
    in no span (nosub) is in neither."""
    con, _ = load_events(ROWS)
    negative = changed(
        Scenario(name="neg", rates=(RateChange(feature="chat", formula="tokens - 10"),))
    )
    first = changed(Scenario(name="first", rates=(RateChange(feature="chat", formula=first_set),)))
    catalogs = [first, negative]
    spans = [CustomerSpan(first="a", last="b"), CustomerSpan(first="p", last="z")]
    with costed_events(con, catalogs, [SUBSCRIPTIONS] * 2) as one_by_one:
        expected = [one_by_one(span) for span in spans]
    with costed_events(con, catalogs, [SUBSCRIPTIONS] * 2, spans=spans, scratch=tmp_path) as split:
        with pytest.raises(ValueError, match="not one of the spans"):
            split(CustomerSpan(first="c", last="o"))
        for span, wanted in zip(spans, expected, strict=True):
            for got, want in zip(split(span), wanted, strict=True):
                assert_frame_equal(got.consumptions, want.consumptions, check_exact=True)
                assert_frame_equal(got.rejected, want.rejected, check_exact=True)
    assert [set(costing.consumptions["customer_id"]) for costing in expected[0]] == [{"b"}] * 2
    assert set(expected[1][1].rejected["event_id"]) == {"p3"}
    assert set(expected[0][1].rejected["event_id"]) == {"b1", "b2"}  # b1 in the second set only
    assert list(tmp_path.iterdir()) == []  # the split files are gone
    overlapping = [CustomerSpan(first="a", last="o"), CustomerSpan(first="n", last="z")]
    with (
        pytest.raises(ValueError, match="disjoint"),
        costed_events(con, catalogs, [SUBSCRIPTIONS] * 2, spans=overlapping),
    ):
        pass
