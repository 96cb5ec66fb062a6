"""The import graph between edgewatch's top-level packages (tests/package_graph.py, built with ast).

``test_no_cycle_and_no_forbidden_arrow`` is the rule of docs/architecture.md;
``test_no_new_arrow_against_the_layers`` holds the line on the arrows still
listed against the layer order: a new one fails, and so does one that is
gone but still listed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import package_graph as pg

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# arrows still against the layers, each with why it exists and how it goes (docs/architecture.md)
TODAY_AGAINST_LAYERS: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def edges() -> dict:
    return pg.graph(pg.all_imports())


def _listing(arrows: dict) -> str:
    return "\n".join(f"{a} -> {b}:\n" + "\n".join(f"    {imp}" for imp in imps) for (a, b), imps in arrows.items())


def test_no_cycle_and_no_forbidden_arrow(edges: dict) -> None:
    """No cycle between packages and no forbidden arrow, with the arrows still listed above set aside.

    None is listed today: the last, fit -> eval (the univariate detector's
    card), went when its builder moved to numpy_models/univariate.py.
    """
    kept = {a: {b: imps for b, imps in targets.items() if (a, b) not in TODAY_AGAINST_LAYERS}
            for a, targets in edges.items()}
    found = pg.report(kept)
    assert not found, "\n" + found


def test_no_new_arrow_against_the_layers(edges: dict) -> None:
    against = pg.against_layers(edges)
    new = {k: v for k, v in against.items() if k not in TODAY_AGAINST_LAYERS}
    assert not new, ("imports against the layer order (docs/architecture.md, 'Arrows'); import downwards, or move "
                     "the code to the layer that may hold it:\n" + _listing(new))
    gone = sorted(set(TODAY_AGAINST_LAYERS) - set(against))
    assert not gone, f"{gone} no longer import against the layers: take them out of TODAY_AGAINST_LAYERS"


def test_every_package_has_a_layer() -> None:
    assert pg.unplaced() == [], "give each new top-level package a layer in tests/package_graph.py LAYERS " \
                                "and docs/architecture.md"


def test_the_documented_layers_are_the_tested_ones() -> None:
    block = DOC.read_text().split("<!-- layers -->")[1]
    rows = re.findall(r"^\s*(\d+)\.\s+(.+)$", block, flags=re.M)
    documented = tuple(tuple(n.strip("` ") for n in names.split("—")[0].split(",")) for _, names in rows)
    assert documented == pg.LAYERS


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "edgewatch" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "edgewatch"


def test_the_tool_sees_every_kind_of_import(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "cli.py": 'C = "edgewatch.commands."\nLAZY = {"run": C + "run:command"}\n',
        "commands/__init__.py": "",
        "commands/run.py": "from edgewatch.cli import C\n",
        "agent/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edgewatch.fleet import x\n",
        "agent/learn.py": "def fit():\n    from ..train import pca\n",
        "agent/runtime.py": "from . import learn\nfrom edgewatch import errors\nfrom edgewatch import __version__\n",
        "fleet/__init__.py": "import importlib\nimportlib.import_module('edgewatch.agent.runtime')\n",
        "train/__init__.py": "",
        "train/pca.py": "import edgewatch.errors\n",
    })
    imports = pg.all_imports(src)
    got = {(i.source, i.target, i.path, i.line, i.lazy) for i in imports}
    assert got == {
        ("cli", "commands", "edgewatch/cli.py", 2, False),
        ("commands", "cli", "edgewatch/commands/run.py", 1, False),
        ("agent", "fleet", "edgewatch/agent/__init__.py", 3, True),
        ("agent", "train", "edgewatch/agent/learn.py", 2, True),
        ("agent", "errors", "edgewatch/agent/runtime.py", 2, False),
        ("fleet", "agent", "edgewatch/fleet/__init__.py", 2, False),
        ("train", "errors", "edgewatch/train/pca.py", 1, False),
    }
    edges = pg.graph(imports)
    assert pg.strongly_connected(edges) == [["agent", "fleet"], ["cli", "commands"]]
    assert pg.mutual_pairs(edges) == [("agent", "fleet"), ("cli", "commands")]
    text = pg.report(edges)
    assert "edgewatch/agent/learn.py:2: from ..train import pca  (lazy)" in text  # forbidden agent -> train
    assert "fleet -> agent: edgewatch/fleet/__init__.py:2: importlib.import_module('edgewatch.agent.runtime')" in text
    assert pg.report(pg.graph([i for i in imports if i.target in ("errors", "commands")])) == ""
