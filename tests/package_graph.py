"""The import graph between edgewatch's top-level packages, read from the source with ``ast``.

Every ``import`` and ``from ... import`` counts, wherever it stands: at
module top, inside a function (a lazy import still makes the importer
depend on the imported package at run time), under ``if TYPE_CHECKING``
(a type-only arrow is still an arrow a reader must follow), and
``importlib.import_module("edgewatch....")`` with a literal name, and the
``"edgewatch.module:attribute"`` strings of the CLI's lazy subcommand
tables (folded when spelt ``C + "name:attr"`` with a module constant
``C``). Names computed otherwise are not seen: ``models.family_module``
(models -> models) is the one today.

A node is a top-level package (``agent``, ``fleet`` ...) or a top-level
module (``contract``, ``errors`` ...). Run ``python -m tests.package_graph``
for the cycles and forbidden arrows, each with the import lines behind it.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = "edgewatch"
SOURCE = Path(__file__).resolve().parents[1] / ROOT

# The layers, bottom first (docs/architecture.md, "Arrows"): a package imports only packages of lower
# layers; packages of one layer do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("digests", "files", "accuracy"),
    ("contract", "wire"),
    ("mqtt",),
    ("numpy_models",),
    ("agent", "fleet", "data"),
    ("export",),
    ("models",),
    ("train",),
    ("fit",),
    ("drift", "eval"),
    ("bench", "plot"),
    ("commands",),
    ("cli",),
)
LAYER_OF: dict[str, int] = {name: i for i, layer in enumerate(LAYERS) for name in layer}

# (importer, imported): arrows the design forbids by name, whatever the layers say
FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("agent", "train"), ("agent", "export"), ("contract", "agent"), ("data", "agent"), ("fleet", "agent"),
)


_LAZY_TARGET = re.compile(rf"^({ROOT}(?:\.\w+)+):\w+$")  # "edgewatch.commands.simulate:simulate"


@dataclass(frozen=True)
class Import:
    """One import statement that crosses from one top-level package to another."""

    source: str  # importer node
    target: str  # imported node
    path: str  # file, relative to the repository
    line: int
    text: str  # the statement as written
    lazy: bool  # inside a function, or under ``if TYPE_CHECKING``

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}{'  (lazy)' if self.lazy else ''}"


def node_of(module: str) -> str | None:
    """``edgewatch.agent.swap`` -> ``agent``; None for anything outside edgewatch or the root itself."""
    parts = module.split(".")
    if parts[0] != ROOT or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path, source: Path = SOURCE) -> str:
    rel = path.relative_to(source.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments, to fold ``NAME + "text"``."""
    out: dict[str, str] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            out[node.targets[0].id] = node.value.value
    return out


def _text(node: ast.AST, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, constants), _text(node.right, constants)
        return None if left is None or right is None else left + right
    return None


def _targets(node: ast.AST, module: str, is_package: bool, constants: dict[str, str], source: Path) -> list[str]:
    """The modules one statement imports (for ``from edgewatch import x`` the submodule ``edgewatch.x``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = _absolute(node, module, is_package)
        if base == ROOT:
            return [f"{ROOT}.{alias.name}" for alias in node.names
                    if (source / alias.name).is_dir() or (source / f"{alias.name}.py").is_file()]
        return [base]
    if isinstance(node, (ast.Constant, ast.BinOp)):
        m = _LAZY_TARGET.match(_text(node, constants) or "")
        return [m.group(1)] if m else []
    if (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return [node.args[0].value]
    return []


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it runs only later (in a function) or never (under TYPE_CHECKING)."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, lazy = stack.pop()
        yield node, lazy
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack += [(child, True) for child in node.body] + [(child, inner) for child in node.orelse]
            continue
        stack += [(child, inner) for child in ast.iter_child_nodes(node)]


def imports_of(path: Path, source: Path = SOURCE) -> list[Import]:
    """The imports in one file that reach another top-level node of edgewatch."""
    module = module_name(path, source)
    here = node_of(module) if module != ROOT else None
    if here is None:
        return []
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    constants = _constants(tree)
    out: list[Import] = []
    for node, lazy in _walk(tree):
        for target in _targets(node, module, path.name == "__init__.py", constants, source):
            there = node_of(target)
            if there is None or there == here:
                continue
            statement = " ".join((ast.get_source_segment(text, node) or "").split())
            out.append(Import(here, there, str(path.relative_to(source.parent)), node.lineno,  # type: ignore[attr-defined]
                              statement.replace("( ", "(").replace(" )", ")"), lazy))
    return sorted(out, key=lambda i: (i.path, i.line, i.target))


def all_imports(source: Path = SOURCE) -> list[Import]:
    return [imp for path in sorted(source.rglob("*.py")) for imp in imports_of(path, source)]


def graph(imports: Iterable[Import]) -> dict[str, dict[str, list[Import]]]:
    """source -> target -> the imports that make the arrow."""
    out: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for imp in imports:
        out[imp.source][imp.target].append(imp)
    return out


def strongly_connected(edges: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """Tarjan's components with more than one node: each is a set of packages that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    nodes = sorted(set(edges) | {t for targets in edges.values() for t in targets})

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return sorted(found)


def mutual_pairs(edges: dict[str, dict[str, list[Import]]]) -> list[tuple[str, str]]:
    """Pairs that import each other directly (the two-node cycles, the easiest to name and to break)."""
    return sorted((a, b) for a in edges for b in edges[a] if a < b and a in edges.get(b, {}))


def forbidden_arrows(edges: dict[str, dict[str, list[Import]]]) -> list[Import]:
    return [imp for a, b in FORBIDDEN for imp in edges.get(a, {}).get(b, [])]


def against_layers(edges: dict[str, dict[str, list[Import]]]) -> dict[tuple[str, str], list[Import]]:
    """Arrows to a node of the same or a higher layer (nodes without a layer are :func:`unplaced`)."""
    return {(a, b): imps for a in sorted(edges) for b, imps in sorted(edges[a].items())
            if a in LAYER_OF and b in LAYER_OF and LAYER_OF[b] >= LAYER_OF[a]}


def unplaced(source: Path = SOURCE) -> list[str]:
    """Top-level packages and modules of edgewatch that no layer names."""
    names = {p.stem for p in source.glob("*.py") if p.stem != "__init__"}
    names |= {p.parent.name for p in source.glob("*/__init__.py")}
    return sorted(names - set(LAYER_OF))


def report(edges: dict[str, dict[str, list[Import]]]) -> str:
    """Cycles (with the imports of every arrow inside each) and forbidden arrows, as text; empty when clean."""
    out: list[str] = []
    for component in strongly_connected(edges):
        out.append("cycle between " + ", ".join(component) + ":")
        members = set(component)
        for a in component:
            for b in sorted(edges[a]):
                if b in members:
                    out.append(f"  {a} -> {b}")
                    out += [f"    {imp}" for imp in edges[a][b]]
    bad = forbidden_arrows(edges)
    if bad:
        out.append("forbidden arrows:")
        out += [f"  {imp.source} -> {imp.target}: {imp}" for imp in bad]
    return "\n".join(out)


if __name__ == "__main__":
    edges = graph(all_imports())
    print("mutual pairs: " + ", ".join(f"{a}<->{b}" for a, b in mutual_pairs(edges)))
    print("against the layers: " + (", ".join(f"{a}->{b}" for a, b in against_layers(edges)) or "none"))
    print(report(edges) or "no cycle, no forbidden arrow")
