"""The agent's wiring stays readable (issue 25): small signatures, no look-ups in ``sys.modules``.

``agent run`` once was one function of 43 parameters that found the MQTT
sink in ``sys.modules``; the assembly replaced it. These checks read the
source with ``ast``, so a new long signature or a module look-up fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_PARAMS = 10
CHECKED = sorted((ROOT / "edgewatch" / "agent").rglob("*.py")) + [ROOT / "edgewatch" / "commands" / "agent_run.py"]


def parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Parameters a caller can pass (``self``/``cls`` of a method not counted; ``*args`` and ``**kw`` one each)."""
    a = fn.args
    names = [p.arg for p in a.posonlyargs + a.args]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def long_signatures(source: str, name: str = "<source>") -> list[str]:
    return [f"{name}:{node.lineno} {node.name} takes {parameters(node)}"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and parameters(node) > MAX_PARAMS]


def module_lookups(source: str, name: str = "<source>") -> list[str]:
    return [f"{name}:{node.lineno}" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and node.attr == "modules"
            and isinstance(node.value, ast.Name) and node.value.id == "sys"]


def test_the_checks_see_what_they_look_for() -> None:
    eleven = "def f(a, b, c, d, e, f, g, h, i, j, k): pass\n"
    ten_method = "class C:\n    def m(self, a, b, c, d, e, f, g, h, i, j): pass\n"
    starred = "async def g(a, *args, b=1, c=2, d=3, e=4, f=5, g=6, h=7, i=8, **kw): pass\n"
    assert long_signatures(eleven) == ["<source>:1 f takes 11"]
    assert long_signatures(ten_method) == []
    assert long_signatures(starred) == ["<source>:1 g takes 11"]
    assert module_lookups("import sys\nm = sys.modules.get('x')\n") == ["<source>:2"]


def test_no_function_of_the_agent_takes_more_than_ten_parameters() -> None:
    found = [hit for path in CHECKED for hit in long_signatures(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "group related parameters into a dataclass (as AgentConfig's sections do):\n" + "\n".join(found)


def test_nothing_in_the_agent_looks_in_sys_modules() -> None:
    found = [hit for path in CHECKED for hit in module_lookups(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "pass the object that is needed instead of finding its module:\n" + "\n".join(found)
