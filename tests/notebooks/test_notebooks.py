"""Every notebook under notebooks/ runs top to bottom in a fresh kernel and shows its key results.

Each notebook runs with the current interpreter's ipykernel, in a temporary working directory (so
its outputs land there), with `PRICING_LAB_EXAMPLES` pointing at the repository's examples. A cell
error fails the test with the cell's traceback; then a few outputs an analyst reads are checked,
and that no output needs the network (no chart loads Vega from a CDN). The notebooks' sources are
Jupytext percent scripts (`notebooks/*.py`): each `.ipynb` must hold exactly the script's cells.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_SECONDS = 300

# Texts each notebook must show (in a cell's output), besides running without error.
EXPECTED_OUTPUT: dict[str, tuple[str, ...]] = {
    "01_catalog_and_usage.ipynb": (
        "would apply: 2 changed",
        "v2: pro grants 30000 credits a month; ai_core = llm_chat, image_generation, "
        "summary_images",
        "40,216 rows read: 40,216 accepted, 0 rejected",
        "plan_change",
        "image/svg+xml",
    ),
    "02_replay_credit_burn.ipynb": (
        "invariant 1 (running sums) holds: True; invariant 2 (no negative grant) holds: True",
        "check_invariants: 0 problems",
        "ledger.parquet",
        "image/svg+xml",
    ),
    "03_what_if_formulas.ipynb": (
        "gpt-4o request with 1,200 input and 350 output tokens: 6.5 → 7.2 credits",
        "line 1, column",
        "chat_output_1.2x",
        "chat_all_tokens_1.2x",
        "goal seek: a free allowance of",
        "report written:",
        "customer(s) run out only with the new formula",
        "customers who run out",  # the comparison's headline view
        "image/svg+xml",
    ),
    "04_export_to_snowflake.ipynb": (
        "AuthenticationRefusedError",
        "dry run against",
        "succeeded",
        "nothing new since the last successful export",
    ),
    "05_who_runs_out_next_month.ipynb": (
        "customers with negative margin",
        "may run out by 2024-03-02; 0 flagged with too little history",
        "gross_margin_usd",
        "image/svg+xml",
    ),
}


NETWORK_REFERENCES = ("cdn.jsdelivr.net", "https://cdn", "unpkg.com", "<script src=")


def _output_text(notebook: nbformat.NotebookNode) -> str:
    """Every text a reader sees in the outputs: streams, plain-text and HTML results, and the
    kinds of rich output shown (e.g. `image/svg+xml` for a chart)."""
    parts: list[str] = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                parts.append(str(output["text"]))
            data = output.get("data", {})
            parts.extend(data)
            for mime in ("text/plain", "text/html"):
                value = data.get(mime)
                if value is not None:
                    parts.append(value if isinstance(value, str) else json.dumps(value))
    return "\n".join(parts)


def _network_references(notebook: nbformat.NotebookNode) -> list[str]:
    """(cell, mime type, reference) of every output that would load something from the web."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            for mime, value in output.get("data", {}).items():
                text = value if isinstance(value, str) else json.dumps(value)
                found += [
                    f"cell {index} {mime}: {ref}" for ref in NETWORK_REFERENCES if ref in text
                ]
    return found


@pytest.fixture(scope="module")
def kernel_name() -> str:
    """The ipykernel spec that runs this very interpreter.

    jupyter_client starts a spec whose command is `python` with `sys.executable`, so the
    `python3` spec of the venv's ipykernel runs the interpreter running the tests.
    """
    spec = KernelSpecManager().get_kernel_spec(NATIVE_KERNEL_NAME)
    command = spec.argv[0]
    assert (
        command in ("python", "python3")
        or Path(command).resolve() == Path(sys.executable).resolve()
    ), f"the {NATIVE_KERNEL_NAME} kernel runs {command}, not {sys.executable}"
    return NATIVE_KERNEL_NAME


def test_every_notebook_is_checked() -> None:
    assert [p.name for p in NOTEBOOKS] == sorted(EXPECTED_OUTPUT)


def test_each_notebook_is_its_percent_script() -> None:
    scripts = sorted((ROOT / "notebooks").glob("[0-9]*.py"))
    assert [p.with_suffix(".ipynb") for p in scripts] == NOTEBOOKS
    for script in scripts:
        source = jupytext.read(script)
        paired = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
        assert [(c.cell_type, c.source) for c in paired.cells] == [
            (c.cell_type, c.source) for c in source.cells
        ], f"{script.name} and its .ipynb differ: run `make notebooks`"
        assert paired.metadata["jupytext"]["formats"] == "ipynb,py:percent"


def test_notebooks_are_committed_without_outputs() -> None:
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        with_outputs = [
            i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.get("outputs")
        ]
        assert not with_outputs, f"{path.name}: cells {with_outputs} have outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(
    path: Path, kernel_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRICING_LAB_EXAMPLES", str(ROOT / "examples"))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=kernel_name,
        timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError with the cell and its traceback

    shown = _output_text(notebook)
    missing = [text for text in EXPECTED_OUTPUT[path.name] if text not in shown]
    assert not missing, f"{path.name}: outputs lack {missing}"
    assert (tmp_path / "notebook_out").is_dir()
    assert _network_references(notebook) == []  # charts and views render offline

    if path.name.startswith("03_"):
        # exported to HTML, the charts are SVG images inside the page: no Vega to load
        from nbconvert import HTMLExporter

        page, _ = HTMLExporter().from_notebook_node(notebook)
        assert page.count('src="data:image/svg+xml;base64,') >= 4  # the notebook's charts
        assert "vegaEmbed" not in page and "cdn.jsdelivr.net/npm/vega" not in page
