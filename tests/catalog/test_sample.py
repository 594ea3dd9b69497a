"""The sample AI product catalog: valid, realistic, and shipped unchanged inside the package."""

from __future__ import annotations

from pricing_lab.catalog.model import CreditEntitlement
from pricing_lab.catalog.yaml_format import load_catalog_file
from pricing_lab.simulation.demo import SAMPLE_CATALOG, package_text
from tests.conftest import EXAMPLES, REPO


def test_packaged_copy_is_identical_to_the_example() -> None:
    example = (EXAMPLES / "ai_product.yaml").read_text(encoding="utf-8")
    assert (REPO / "pricing_lab" / "data" / "ai_product.yaml").read_text(
        encoding="utf-8"
    ) == example
    assert package_text(SAMPLE_CATALOG) == example


def test_sample_has_what_the_issue_asks_for() -> None:
    catalog = load_catalog_file(EXAMPLES / "ai_product.yaml")
    types = {f.id: f.type for f in catalog.features}
    assert {"boolean", "configuration", "metered"} <= set(types.values())
    assert [g.id for g in catalog.feature_groups] == ["ai_core", "document_tools"]
    assert [p.id for p in catalog.plans] == ["free", "pro", "enterprise"]
    assert [c.id for c in catalog.currencies] == ["credits"]
    for plan in catalog.plans:
        grants = [e for e in plan.entitlements if isinstance(e, CreditEntitlement)]
        assert [(g.currency, g.cadence) for g in grants] == [("credits", "monthly")]
    assert any(isinstance(e, CreditEntitlement) for e in catalog.addons[0].entitlements)
    chat = catalog.feature("llm_chat").meter
    assert chat is not None and chat.event_name == "llm.request"
    summaries = [
        f.meter for f in catalog.features if f.meter and f.meter.event_name == "summary.created"
    ]
    assert sorted(str(m.filters[0].value) for m in summaries) == ["document", "email", "image"]
    rates = {r.feature: r for r in catalog.plan("pro").credit_rates}
    formula = rates["llm_chat"].formula
    assert formula is not None and "model == 'gpt-4o'" in formula
    assert "input_tokens" in formula and "output_tokens" in formula
