"""The architecture, checked: no module imports a layer above its own, and the decision and
scoring code runs without PyMC.

The layers, bottom to top (README, "Layout"): laws (the math, importing nothing of the package)
-> data -> leastsq -> bayes -> decision -> evaluation -> report -> proxy -> cli. A module may
import its own layer and the layers below.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bimix_bayes"
LAYERS = ["laws", "data", "leastsq", "bayes", "decision", "evaluation", "report", "proxy", "cli"]
RANK = {name: i for i, name in enumerate(LAYERS)}


def _layer(module: str) -> str | None:
    """``bimix_bayes.bayes.model`` -> ``bayes``; top-level private modules belong to none."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every ``bimix_bayes`` module imported anywhere in the file (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("bimix_bayes"):
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("bimix_bayes")]
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "conftest.py")


def test_every_module_belongs_to_a_layer():
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1:  # the package's __init__ and _version only
            assert rel.name in {"__init__.py", "_version.py"}, f"{rel}: put it in a layer"
        else:
            assert rel.parts[0] in RANK, f"{rel}: {rel.parts[0]}/ is not a known layer"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_points_up_a_layer(path):
    rel = path.relative_to(PACKAGE)
    if len(rel.parts) == 1:
        return  # the package root re-exports the public API
    own = RANK[rel.parts[0]]
    upward = [
        f"line {line}: {name}"
        for line, name in _imports(path)
        if (layer := _layer(name)) is not None and RANK[layer] > own
    ]
    assert not upward, f"{rel} ({rel.parts[0]}/) imports a layer above it: {upward}"


def test_decision_and_scoring_run_without_pymc():
    """Deciding from saved draws and scoring forecasts must not load the sampler stack."""
    code = (
        "import sys\n"
        "import bimix_bayes.decision.solver, bimix_bayes.decision.objectives\n"
        "import bimix_bayes.decision.constraints, bimix_bayes.evaluation.metrics\n"
        "import bimix_bayes.data.loaders, bimix_bayes.laws.bimix\n"
        "bad = sorted(m for m in ('pymc', 'pytensor', 'nutpie') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported without need: {out.stdout.strip()}"
