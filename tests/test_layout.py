"""The layout keeps the architecture (issue 32): no import circle in experiments/ or analysis/, each subpackage of
experiments/ imports only the layers its __init__ docstring allows (the table below), and the ML core imports no
Hydra and nothing of the harness, as a fresh interpreter sees it."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.harness import ROOT

PACKAGES = ("experiments", "analysis", "runformat", "hydra_plugins")
CORE = ("base", "nets", "data", "training", "science")
# layer -> the layers it may import (besides itself and runformat); experiments/__init__.py says the same in words
ALLOWED = {
    "base": set(),
    "nets": {"base"},
    "data": {"base"},
    "training": {"base", "nets", "data"},
    "science": {"base", "nets", "data", "training"},
    "harness": set(CORE),
    "launchers": {*CORE, "harness"},
    "tools": {*CORE, "harness"},
    "commands": {*CORE, "harness", "launchers", "tools"},
    "plugins": {"launchers"},  # hydra_plugins/: Hydra finds the launchers there
    "analysis": set(),
}
COMMANDS = {"run", "inspect", "pretrained", "rename", "bench", "steptime", "inspect_bench"}


def modules(root: Path) -> dict:
    """module name -> its file, for every .py of PACKAGES under root."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known) -> set:
    """The modules of `known` that `name` imports anywhere in its file (in functions too: a circle hidden in a
    function is still a circle), and the third-party top-level names it imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in out if m != name}


def graph(root: Path) -> dict:
    known = modules(root)
    return {name: {m for m in imports(name, path, known) if m in known} for name, path in known.items()}


def cycles(edges: dict) -> list:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on, stack, found = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] == "analysis":
        return "analysis"
    if parts[0] == "hydra_plugins":
        return "plugins"
    if parts[0] != "experiments" or len(parts) == 1:
        return None  # runformat (any may import it), experiments/__init__.py (imports nothing)
    if parts[1] in ("config", "errors", "conf"):
        return "base"
    if parts[1] in COMMANDS:
        return "commands"
    return parts[1]


def test_the_cycle_finder_finds_a_circle_hidden_in_a_function(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "a.py").write_text("from experiments import b\n")
    (tmp_path / "experiments" / "b.py").write_text("def f():\n    from experiments.c import x\n")
    (tmp_path / "experiments" / "c.py").write_text("from .a import y\n")
    (tmp_path / "experiments" / "d.py").write_text("import experiments.a\n")
    assert cycles(graph(tmp_path)) == [["experiments.a", "experiments.b", "experiments.c"]]


def test_no_import_circles_in_experiments_or_analysis():
    found = cycles(graph(ROOT))
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_every_subpackage_of_experiments_has_a_layer_and_says_what_it_may_import():
    subpackages = sorted(p.name for p in (ROOT / "experiments").iterdir() if (p / "__init__.py").exists())
    assert subpackages == sorted(set(ALLOWED) - {"base", "commands", "plugins", "analysis"})
    for name in subpackages:
        doc = ast.get_docstring(ast.parse((ROOT / "experiments" / name / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"experiments/{name}/__init__.py: say what it owns and what it may import"


def test_each_layer_imports_only_the_layers_below_it():
    wrong = [f"{name} ({layer(name)}) imports {dep} ({layer(dep)})"
             for name, deps in graph(ROOT).items() for dep in sorted(deps)
             if layer(name) and layer(dep) and layer(dep) != layer(name) and layer(dep) not in ALLOWED[layer(name)]]
    assert not wrong, "imports against the layout (experiments/__init__.py):\n" + "\n".join(wrong)


def test_the_core_imports_no_hydra_in_its_source():
    known = modules(ROOT)
    wrong = [f"{name} imports {m}" for name, path in known.items() if layer(name) in CORE
             for m in imports(name, path, known) if m.split(".")[0] in ("hydra", "omegaconf")]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("core", [sorted(m for m in modules(ROOT) if layer(m) in CORE)])
def test_importing_the_core_loads_no_hydra_and_nothing_of_the_harness(core):
    """What a user of the models and the loop alone gets: a fresh interpreter imports every core module."""
    code = ("import importlib, json, sys\n"
            f"for m in {core!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout)
    assert "experiments.nets.resnet_cifar" in loaded and "experiments.science.measures" in loaded
    wrong = [m for m in loaded if m.split(".")[0] in ("hydra", "omegaconf", "analysis")
             or layer(m) in ("harness", "launchers", "tools", "commands")]
    assert not wrong, f"the ML core loaded {wrong}"


def test_the_wheel_lists_every_package_and_carries_conf():
    """pyproject names its packages one by one (conf/ goes into the wheel as experiments.conf through package-dir,
    which a `find` could not express): a new subpackage left off the list would be missing from an installed wheel."""
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for package in PACKAGES
               for p in (ROOT / package).rglob("__init__.py") if ".venv" not in p.parts}
    conf = {".".join(("experiments", *d.relative_to(ROOT).parts)) for d in [ROOT / "conf", *(ROOT / "conf").rglob("*")]
            if d.is_dir()}
    assert set(setup["packages"]) == on_disk | conf
    assert all(setup["package-data"].get(c) == ["*.yaml"] for c in conf)  # every folder of conf/ ships its YAMLs
    assert setup["package-dir"] == {"experiments.conf": "conf"} and (ROOT / "conf" / "config.yaml").is_file()
    assert not (ROOT / "experiments" / "conf").exists()  # one home: a checkout composes the top-level conf/
