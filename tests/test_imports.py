"""frozenasd's modules import one way: no loop among them, each imports alone, torch only where meant.

The graph is read from the source with ``ast`` (no module is run for it). An edge ``a -> b`` is any
import of ``b`` written in ``a``, at the top or inside a function (a deferred import still ties the
two together), except under ``if TYPE_CHECKING:``; importing ``p.q.r`` also runs the packages ``p.q``
and ``p``, so they are targets too (when they are not ``a``'s own packages, which already run).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import frozenasd

ROOT = Path(frozenasd.__file__).parent
# The EAT exporter's PyTorch corner; nothing else may import torch when it is imported.
TORCH_MODULES = {
    "frozenasd.backbones.eat_export.export",
    "frozenasd.backbones.eat_export.model",
}
# The scoring service needs the serve extra (FastAPI, uvicorn, python-multipart); `pip install .` has none.
SERVE_PACKAGE = "frozenasd.service."
SERVE_EXTRA = ("fastapi", "uvicorn", "starlette", "multipart", "python_multipart", "anyio", "pydantic")


def module_files(root: Path = ROOT, package: str = "frozenasd") -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is a package)}`` of every module under ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(modules: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """``{module: the frozenasd modules it imports}``, parent packages of each target included."""
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            submodules = {f"{source}.{alias.name}" for alias in node.names} & set(modules)
            targets.update(submodules)
            if len(submodules) < len(node.names):  # some names are attributes of the module itself
                targets.add(source)
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        edges = set()
        for target in targets:
            parts = target.split(".")
            edges.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        graph[name] = {t for t in edges if t in modules and t != name and t not in own}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def unit_of(module: str) -> str:
    """The top-level part of frozenasd a module is in: ``frozenasd.embed.encoders.metadata`` -> embed."""
    return ".".join(module.split(".")[:2])


# ------------------------------------------------------------------ the checker itself
def write_package(root: Path, files: dict[str, str]) -> dict[str, tuple[Path, bool]]:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return module_files(root / "pkg", "pkg")


def test_the_checker_sees_deferred_relative_and_package_imports(tmp_path):
    modules = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a/__init__.py": "from pkg.a.x import X\n",
            "pkg/a/x.py": "def f():\n    from pkg.b import y\n",
            "pkg/b/__init__.py": "",
            "pkg/b/y.py": "from ..a import x\nfrom typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import pkg.c\n",
            "pkg/c.py": "import pkg.b.y\n",
        },
    )
    graph = import_graph(modules)
    assert graph["pkg.a.x"] == {"pkg.b", "pkg.b.y"}  # deferred; importing pkg.b.y runs pkg.b too
    assert graph["pkg.b.y"] == {"pkg.a", "pkg.a.x"}  # relative; TYPE_CHECKING ignored
    assert graph["pkg.c"] == {"pkg.b", "pkg.b.y"}
    assert graph["pkg.a"] == {"pkg.a.x"}  # its own package is not an edge
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and {"pkg.a.x", "pkg.b.y"} <= set(cycle)
    del graph["pkg.b.y"]
    assert find_cycle(graph) is None


# ------------------------------------------------------------------ frozenasd
def test_no_import_loop_among_modules():
    graph = import_graph(module_files())
    assert len(graph) > 50 and "frozenasd.backbones.registry" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or ())


# The data flow, first to last: a part of frozenasd imports only parts of earlier layers.
LAYERS = (
    ("errors",),
    ("cores", "hashing", "text", "versions", "zip_limits"),
    ("safe_pickle",),
    ("data",),  # DCASE layout and names, audio, waveforms, data sets, synthetic machines
    ("embed",),  # frontends, ONNX encoders, the cache, the embedding stage and its executors
    ("backbones",),  # the one registry of encoders, the EAT exporter
    ("detectors",),  # detectors, their registry and persistence, the threshold
    ("views",),  # which views and detectors a model combines
    ("settings",),
    ("scoring",),  # ScoringModel: fit, save, load, score
    ("evaluation",),  # DCASE metrics
    ("outputs",),  # every output file name and its writer
    ("report",),
    ("monitor",),  # watch a folder, the score history and its trends
    ("workflows",),  # run, fit/score, evaluate, demo: orchestration only
    ("service",),  # the HTTP scoring service
    ("cli", "compat", "run"),
    ("__main__",),
)


def unit_graph() -> dict[str, set[str]]:
    units: dict[str, set[str]] = {}
    for module, targets in import_graph(module_files()).items():
        units.setdefault(unit_of(module), set()).update(
            unit_of(t) for t in targets if unit_of(t) != unit_of(module)
        )
    return units


def test_no_import_loop_among_subpackages():
    """data/, embed/, backbones/, detectors/ ...: each pair depends one way at most."""
    units = unit_graph()
    assert find_cycle(units) is None, " -> ".join(find_cycle(units) or ())


def test_the_parts_import_in_the_order_data_flows():
    layer = {f"frozenasd.{name}": i for i, names in enumerate(LAYERS) for name in names}
    units = {u: t for u, t in unit_graph().items() if u != "frozenasd"}  # the package root: lazy names
    assert set(units) == set(layer), f"parts not placed in LAYERS: {set(units) ^ set(layer)}"
    against = [(u, t) for u, targets in units.items() for t in targets if layer[t] >= layer[u]]
    assert not against, "imports against the data flow: " + ", ".join(f"{u} -> {t}" for u, t in against)
    assert "frozenasd.backbones" in units["frozenasd.scoring"]  # the graph sees these parts at all


def test_every_module_imports_alone_and_only_the_exporter_imports_torch():
    """Each module in a fresh interpreter of its own (third-party libraries loaded beforehand)."""
    names = sorted(set(module_files()) - {"frozenasd.__main__"})  # running it is `python -m frozenasd`
    script = """
import importlib, os, sys
for lib in ("numpy", "scipy.stats", "sklearn.pipeline", "onnxruntime", "soundfile", "onnx"):
    try:
        importlib.import_module(lib)
    except ImportError:
        pass
assert "torch" not in sys.modules
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            importlib.import_module(name)
            code = 3 if "torch" in sys.modules else 0
        except ImportError as exc:
            missing = (getattr(exc, "name", None) or "").split(".")[0]
            code = 4 if missing == "torch" else 5 if missing in SERVE_EXTRA else 1
            if code == 1:
                print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        except BaseException as exc:
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(name, os.waitstatus_to_exitcode(status))
"""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = script.replace("SERVE_EXTRA", repr(SERVE_EXTRA))
    done = subprocess.run(
        [sys.executable, "-c", script, *names],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT.parent)},
    )
    assert done.returncode == 0, done.stderr
    codes = dict(line.rsplit(" ", 1) for line in done.stdout.splitlines())
    assert set(codes) == set(names), done.stderr
    # 5: a module of the service without the serve extra installed
    failed = {
        n: c
        for n, c in codes.items()
        if c not in ("0", "3", "4", "5") or (c == "5" and not n.startswith(SERVE_PACKAGE))
    }
    assert not failed, done.stderr
    with_torch = {n for n, c in codes.items() if c in ("3", "4")}  # 4: torch is not installed
    assert with_torch <= TORCH_MODULES, f"imported torch: {sorted(with_torch - TORCH_MODULES)}"
