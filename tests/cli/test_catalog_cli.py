"""`pricing-lab catalog apply|show|diff`: output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from pricing_lab.cli import main
from tests.conftest import EXAMPLES

SAMPLE = str(EXAMPLES / "ai_product.yaml")

INVALID = """\
currencies:
  - {id: credits, name: Credits, unit_price: 0.001}
features:
  - {id: sso, name: SSO, type: boolean}
plans:
  - {id: free, name: Free}
  - {id: pro, name: Pro}
  - {id: enterprise, name: Enterprise, entitlements: [{kind: boolean, feature: sso2}]}
addons:
  - {id: extra, name: Extra, entitlements: [{kind: credit, currency: gems, amount: 0}]}
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pricing_lab", *args], capture_output=True, text=True, check=False
    )


def test_apply_then_apply_again_then_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "out" / "cat.duckdb")  # docs/catalog.md: the folder is made
    assert main(["catalog", "apply", SAMPLE, "--db", db]) == 0
    out = capsys.readouterr().out
    assert "plan                 enterprise" in out and "created" in out
    assert out.strip().endswith("applied: 17 created")

    assert main(["catalog", "apply", SAMPLE, "--db", db, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["applied"] is True
    assert result["counts"]["unchanged"] == 17 and result["counts"]["created"] == 0

    assert main(["catalog", "show", "--db", db]) == 0
    shown = capsys.readouterr().out
    assert "  pro v1: Pro, 20 USD monthly" in shown
    assert "    credit credits: 25000 monthly, no rollover" in shown

    assert main(["catalog", "show", "--db", db, "--json"]) == 0
    data = json.loads(capsys.readouterr().out, parse_float=Decimal)
    assert data["catalog"]["currencies"][0]["unit_price"] == Decimal("0.001")  # a JSON number
    assert {"kind": "plan", "id": "pro", "status": "active", "version": 1} in data["entities"]


def test_diff_shows_a_change_without_applying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "out" / "cat.duckdb")  # docs/catalog.md: the folder is made
    assert main(["catalog", "apply", SAMPLE, "--db", db]) == 0
    capsys.readouterr()
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        Path(SAMPLE).read_text(encoding="utf-8").replace("amount: 25000", "amount: 30000"),
        encoding="utf-8",
    )
    assert main(["catalog", "diff", str(changed), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "plan                 pro                changed" in out
    assert "v1 → v2 (entitlements)" in out
    assert out.strip().endswith("would apply: 1 changed, 16 unchanged")
    assert main(["catalog", "diff", str(changed), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["applied"] is False
    assert main(["catalog", "apply", SAMPLE, "--db", db]) == 0  # still version 1: unchanged
    assert capsys.readouterr().out.strip().endswith("applied: 17 unchanged")


def test_diff_against_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"
    assert main(["catalog", "diff", SAMPLE, "--db", str(db)]) == 0
    assert not db.exists()


def test_invalid_file_lists_every_problem_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID, encoding="utf-8")
    db = tmp_path / "cat.duckdb"
    result = run("catalog", "apply", str(bad), "--db", str(db))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"pricing-lab: {bad}: 3 problems:",
        "  plans[2].entitlements[0].feature: unknown feature 'sso2'",
        "  addons[0].entitlements[0].currency: unknown currency 'gems'",
        "  addons[0].entitlements[0].amount: must be > 0",
    ]


def test_missing_file_and_syntax_error_are_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "cat.duckdb")
    assert main(["catalog", "apply", str(tmp_path / "nope.yaml"), "--db", db]) == 2
    assert "no such catalog file" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("features:\n  - id: [sso\n", encoding="utf-8")
    assert main(["catalog", "diff", str(broken), "--db", db]) == 2
    err = capsys.readouterr().err
    assert f"{broken}:3:1: YAML syntax error" in err and "Traceback" not in err


def test_show_without_a_store_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "show", "--db", str(tmp_path / "none.duckdb")]) == 2
    assert "no catalog store" in capsys.readouterr().err


def test_formula_errors_are_reported_at_the_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad_formula.yaml"
    bad.write_text(
        Path(SAMPLE).read_text(encoding="utf-8")  # the add-on is the last entry
        + "    credit_rates:\n"
        + "      - {feature: summary_emails, mode: formula, formula: '2 * (pages'}\n",
        encoding="utf-8",
    )
    assert main(["catalog", "diff", str(bad), "--db", str(tmp_path / "cat.duckdb")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"pricing-lab: {bad}: 1 problem:"
    assert lines[1].startswith("  addons[0].credit_rates[0].formula: ")
