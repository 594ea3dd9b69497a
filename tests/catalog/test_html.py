"""Catalog objects render as readable, escaped HTML tables in Jupyter."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

from pricing_lab.catalog.model import CreditEntitlement, Feature, FeatureGroup, Rollover
from pricing_lab.catalog.store import open_store
from pricing_lab.catalog.yaml_format import load_catalog_file
from tests.conftest import EXAMPLES


def test_catalog_plan_feature_and_diff_show_their_names() -> None:
    catalog = load_catalog_file(EXAMPLES / "ai_product.yaml")
    html = catalog._repr_html_()
    assert html.startswith("<div>") and "<table" in html
    for name in ("AI credits", "LLM chat", "Document tools", "Enterprise", "Extra credits"):
        assert name in html
    assert "0.001 USD" in html
    plan = catalog.plan("pro")._repr_html_()
    assert "Pro" in plan and "25000 monthly, no rollover" in plan and "ai_core" in plan
    feature = catalog.feature("summary_emails")._repr_html_()
    assert "count of summary.created where doc_type equals &#x27;email&#x27;" in feature
    diff = open_store().apply(catalog, at=datetime(2024, 1, 1, tzinfo=UTC))._repr_html_()
    assert "extra_credits" in diff and "created" in diff and "applied" in diff


def test_text_is_escaped() -> None:
    feature = Feature(id="x", name="<script>alert(1)</script>", type="boolean")
    html = feature._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    group = FeatureGroup(id="g", name="A & B", features=("x",))
    assert "A &amp; B" in group._repr_html_()


def test_a_plan_shows_its_rollover_caps() -> None:
    catalog = load_catalog_file(EXAMPLES / "ai_product.yaml")
    pro = catalog.plan("pro")
    credit = next(e for e in pro.entitlements if isinstance(e, CreditEntitlement))
    rolled = dataclasses.replace(
        credit, rollover=Rollover(max_amount=Decimal(5000), max_percent=Decimal(20))
    )
    others = tuple(e for e in pro.entitlements if e is not credit)
    html = dataclasses.replace(pro, entitlements=(*others, rolled))._repr_html_()
    assert "25000 monthly, rollover up to 5000 and 20%" in html
    assert "no rollover" not in html
