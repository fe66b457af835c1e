"""pytest plugin for nbval runs: skip cells whose tagged resource is not available.

A code cell tagged ``chameleon`` runs only when LAB_HAS_CHAMELEON=1, one tagged
``cluster`` only when LAB_HAS_CLUSTER=1; otherwise it is reported as skipped with
the reason. Load it with ``-p tests.nbval_gate``.
"""

from __future__ import annotations

import os

import pytest

RESOURCES = {"chameleon": "LAB_HAS_CHAMELEON", "cluster": "LAB_HAS_CLUSTER"}


def missing_resources(tags: list[str]) -> list[str]:
    """Return the tagged resources that are not declared available."""
    return [tag for tag, env in RESOURCES.items() if tag in tags and os.environ.get(env) != "1"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark nbval cell items as skipped when they need an unavailable resource."""
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None:
            continue
        missing = missing_resources(cell.get("metadata", {}).get("tags", []))
        if missing:
            needs = ", ".join(f"{tag} (set {RESOURCES[tag]}=1)" for tag in missing)
            item.add_marker(pytest.mark.skip(reason=f"cell needs {needs}"))


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --nbval-save-dir: where to write the notebooks with the outputs nbval saw."""
    parser.addoption("--nbval-save-dir", default=None, help="write executed notebooks here")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write each executed notebook, outputs included, when --nbval-save-dir is given."""
    out = session.config.getoption("--nbval-save-dir")
    if not out:
        return
    from pathlib import Path

    import nbformat

    notebooks = {}
    for item in session.items:
        cell, outputs = getattr(item, "cell", None), getattr(item, "test_outputs", None)
        if cell is not None and outputs is not None:
            cell.outputs = outputs
            notebooks[item.parent.path.name] = item.parent.nb
    Path(out).mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, Path(out) / name)
