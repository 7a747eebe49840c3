"""Layers point down only (docs/architecture.md): every import of every package module, parsed with ast."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "opd_bench"
DOC = ROOT / "docs" / "architecture.md"


def _block(text: str, kind: str) -> List[str]:
    m = re.search(rf"```{kind}\n(.*?)```", text, re.S)
    assert m, f"docs/architecture.md has no ```{kind} block"
    return [line for line in m.group(1).splitlines() if line.strip()]


def read_layers(text: str) -> List[Tuple[str, List[str]]]:
    """[(layer, module names)] from the bottom up."""
    rows = [(name.strip(), mods.split()) for name, mods in (line.split(":", 1) for line in _block(text, "layers"))]
    return rows[::-1]


def read_exceptions(text: str) -> Set[Tuple[str, str]]:
    out = set()
    for line in _block(text, "exceptions"):
        edge, _why = line.split(":", 1)
        src, targets = edge.split("->")
        out |= {(src.strip(), t) for t in targets.split()}
    return out


def layer_of(module: str, layers: List[Tuple[str, List[str]]]) -> int:
    """Index (0 = bottom) of the layer whose longest name matches ``module``; -1 when none does."""
    best, best_len = -1, -1
    for i, (_, names) in enumerate(layers):
        for n in names:
            if n.endswith(".__init__"):
                hit = module == n[: -len(".__init__")]
            else:
                hit = module == n or module.startswith(n + ".")
            if hit and len(n) > best_len:
                best, best_len = i, len(n)
    return best


def package_modules(package: Path = PACKAGE) -> Dict[str, Path]:
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(module: str, path: Path, known: Set[str]) -> Set[str]:
    """Every module ``module`` imports (absolute names), at any depth of its code."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:  # `from pkg import submodule` imports the submodule
                found.add(f"{target}.{a.name}" if f"{target}.{a.name}" in known else target)
    return found


def upward_imports(layers, modules: Dict[str, Path]) -> Set[Tuple[str, str]]:
    bad = set()
    for mod, path in modules.items():
        own = layer_of(mod, layers)
        if own < 0:
            continue  # reported by test_every_module_has_a_layer
        for target in imports_of(mod, path, set(modules)):
            if target in modules and layer_of(target, layers) > own:
                bad.add((mod, target))
    return bad


def test_every_module_has_a_layer():
    layers = read_layers(DOC.read_text())
    missing = [m for m in package_modules() if layer_of(m, layers) < 0]
    assert not missing, f"modules in no layer of docs/architecture.md: {missing} (add them to the ```layers table)"


def test_no_module_imports_a_higher_layer():
    text = DOC.read_text()
    layers, allowed = read_layers(text), read_exceptions(text)
    bad = upward_imports(layers, package_modules())
    new = sorted(bad - allowed)
    assert not new, "upward imports (a lower layer importing a higher one; docs/architecture.md):\n" + "\n".join(
        f"  {a} ({layers[layer_of(a, layers)][0]}) imports {b} ({layers[layer_of(b, layers)][0]})" for a, b in new)
    stale = sorted(allowed - bad)
    assert not stale, f"known upward imports that no longer exist; delete them from docs/architecture.md: {stale}"


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The checker itself: a scoring module importing tasks is reported, the reverse is not."""
    pkg = tmp_path / "opd_bench"
    (pkg / "scoring").mkdir(parents=True)
    (pkg / "tasks").mkdir()
    for f in ("__init__.py", "scoring/__init__.py", "tasks/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "scoring" / "rules.py").write_text("def f():\n    from ..tasks import base\n")
    (pkg / "tasks" / "base.py").write_text("from opd_bench.scoring.rules import f\n")
    layers = [("foundation", ["opd_bench.__init__"]), ("scoring", ["opd_bench.scoring"]), ("tasks", ["opd_bench.tasks"])]
    assert upward_imports(layers, package_modules(pkg)) == {("opd_bench.scoring.rules", "opd_bench.tasks.base")}


def test_no_package_module_imports_experiments():
    """experiments/ holds research scripts (experiments/README.md); the package never depends on them."""
    modules = package_modules()
    bad = sorted(m for m, p in modules.items() for t in imports_of(m, p, set(modules))
                 if t == "experiments" or t.startswith("experiments."))
    assert not bad, f"package modules importing experiments/: {bad}"


@pytest.mark.parametrize("module,expected", [("opd_bench", "foundation"), ("opd_bench.world.build.pretrain", "build"),
                                             ("opd_bench.world.scenes", "world"), ("opd_bench.cli", "cli")])
def test_layer_names_resolve_by_longest_match(module, expected):
    layers = read_layers(DOC.read_text())
    assert layers[layer_of(module, layers)][0] == expected
